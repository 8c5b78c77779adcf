"""Lifecycle ``polls_and_seconds``: a job stays PENDING for its first read(s) and until a short time has passed, so
an app meets PENDING whatever its polling interval (issue 21; the matrix's mocks use it)."""

import subprocess
import sys

import pytest

from sd35_twin.mockserver.backend import MockBackend
from sd35_twin.mockserver.cli import build_parser, config_from_args
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.errors import ImageNotReady, InvalidRequest
from sd35_twin.mockserver.jobs import Clock
from sd35_twin.mockserver.rules import parse_rule

BASE = "http://mock.test/"
REQ = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0,
       "width": 256, "height": 256}


@pytest.fixture
def backend():
    made = MockBackend(MockConfig(lifecycle="polls_and_seconds", pending_seconds=5, pending_polls=2,
                                  webhook_backoff=0.0), clock=Clock(lambda: 1_000_000.0))  # only advance moves it
    yield made
    made.close()


def statuses(backend, job_id, reads):
    return [backend.status("k", job_id).status for _ in range(reads)]


def test_a_slow_poller_meets_pending_on_its_first_read_however_late(backend):
    job = backend.submit("k", REQ, BASE)
    assert job.status == "PENDING"
    backend.advance_clock(3600)  # an hour before the first read: the job is still PENDING for it
    assert statuses(backend, job.id, 2) == ["PENDING", "SUCCESS"]


def test_a_fast_poller_meets_pending_until_the_seconds_have_passed(backend):
    job = backend.submit("k", REQ, BASE)
    assert statuses(backend, job.id, 5) == ["PENDING"] * 5  # many reads, but not 5 s yet
    backend.advance_clock(4.9)
    assert statuses(backend, job.id, 1) == ["PENDING"]
    backend.advance_clock(0.1)
    assert statuses(backend, job.id, 1) == ["SUCCESS"]


def test_a_download_is_a_read_too(backend):
    job = backend.submit("k", dict(REQ, queued_image_urls=True), BASE)
    token = job.download_urls[0].rsplit("/", 1)[1]
    backend.advance_clock(10)
    with pytest.raises(ImageNotReady):  # the first read of the job: PENDING, so the image is not ready
        backend.image(token, friendly=False)
    assert backend.image(token, friendly=False).data  # the second


def test_a_job_with_a_webhook_is_done_by_the_clock_alone(backend):
    job = backend.submit("k", dict(REQ, webhook="http://127.0.0.1:9/hook"), BASE)
    backend.advance_clock(4)
    assert backend.job(job.id).status == "PENDING"
    backend.advance_clock(1)  # nobody reads it: its app learns from the webhook
    assert backend.job(job.id).status == "SUCCESS"


def test_a_rule_given_both_timings_takes_this_lifecycle():
    rule = parse_rule("r1", {"pending_seconds": 1, "pending_polls": 3})
    assert (rule.lifecycle, rule.pending_seconds, rule.pending_polls) == ("polls_and_seconds", 1, 3)
    assert parse_rule("r2", {"lifecycle": "polls_and_seconds", "pending_seconds": 2}).lifecycle == "polls_and_seconds"
    with pytest.raises(InvalidRequest):
        parse_rule("r3", {"lifecycle": "polls", "pending_seconds": 2})


def test_the_command_line_combines_both_timings():
    config = config_from_args(build_parser().parse_args(["--pending-seconds", "0.5", "--pending-polls", "2"]))
    assert (config.lifecycle, config.pending_seconds, config.pending_polls) == ("polls_and_seconds", 0.5, 2)
    assert config_from_args(build_parser().parse_args(["--pending-polls", "3"])).lifecycle == "polls"
    done = subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", "--pending-seconds", "0", "--pending-polls",
                           "2"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert "--pending-seconds" in done.stderr and "--pending-polls" in done.stderr
