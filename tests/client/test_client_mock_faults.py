"""The client under the mock's injected faults, and across its lifecycles, on a real server.

Each fault is injected through the control plane (``POST /__mock__/faults``); the journal and the
job list tell how many POSTs reached the mock and how many jobs it made.
"""

from __future__ import annotations

import time

import pytest
from PIL import Image

from sd35_twin.client import (
    AuthenticationError,
    ConnectionLostError,
    ImageUnavailableError,
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TimeoutError,
    UnexpectedResponseError,
    WaitTimeoutError,
)

pytestmark = pytest.mark.mock_only

REQ = dict(prompt="a red fox in snow", negative_prompt="blurry", samples=1, width=256, height=256)


def _gets(ctl) -> int:
    return sum(1 for e in ctl.journal() if e["method"] == "GET" and e["path"].startswith("/sd3_5/v1/status/"))


# --- submit: recover only where the job surely does not exist -------------------------------------

def test_submit_429_with_retry_after_is_retried_once_and_bills_once(mock, clock):
    ctl = mock.control
    ctl.fault(type="status", status=429, retry_after=2, endpoint="submit")
    first = mock.client(clock).submit(**REQ)
    assert first.id and clock.sleeps == [2.0]  # Retry-After, to the second
    assert mock.posts() == 2 and [j["id"] for j in ctl.jobs()] == [first.id]


def test_submit_503_is_retried(mock):
    ctl = mock.control
    ctl.fault(type="status", status=503, endpoint="submit")
    first = mock.client().submit(**REQ)
    assert mock.posts() == 2 and [j["id"] for j in ctl.jobs()] == [first.id]


def test_submit_always_429_gives_up_with_retry_after(mock):
    ctl = mock.control
    ctl.fault(type="status", status=429, retry_after=1, endpoint="submit", rate=1.0)
    with pytest.raises(RateLimitedError) as info:
        mock.client().submit(**REQ)
    assert info.value.retry_after == 1.0
    assert mock.posts() == RetryPolicy().submit_attempts and ctl.jobs() == []


@pytest.mark.parametrize("fault, error", [
    ({"type": "status", "status": 500}, ServerError),
    ({"type": "status", "status": 502}, ServerError),
    ({"type": "drop"}, ConnectionLostError),
    ({"type": "malformed"}, UnexpectedResponseError),
])
@pytest.mark.parametrize("phase", ["before", "after"])
def test_submit_is_not_repeated_when_the_job_may_exist(mock, fault, error, phase):
    """"after": the server made the job and then the answer was lost, the case a retry would bill twice."""
    ctl = mock.control
    ctl.fault(endpoint="submit", phase=phase, **fault)
    with pytest.raises(error):
        mock.client().submit(**REQ)
    assert mock.posts() == 1  # one POST: never a second (billable) job
    assert len(ctl.jobs()) == (1 if phase == "after" else 0)
    assert ctl.faults() == []  # the fault was consumed by that one request


def test_submit_read_timeout_is_not_repeated_and_the_job_exists(mock):
    """Why a timed-out POST must not be retried: the mock (like a real server) still makes the job."""
    ctl = mock.control
    ctl.fault(type="latency", ms=400, endpoint="submit")
    api = mock.client(timeout=(5, 0.1))
    with pytest.raises(TimeoutError):
        api.submit(**REQ)
    deadline = time.monotonic() + 10  # wait for the mock's delayed handler, not for a lifecycle
    while not ctl.jobs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(ctl.jobs()) == 1 and mock.posts() == 1


def test_submit_under_small_latency_just_works(mock):
    mock.control.fault(type="latency", ms=50, endpoint="submit")
    first = mock.client().submit(**REQ)
    assert first.id and not first.is_failure   # PENDING, or already SUCCESS (a variant)


# --- status and download: recover from everything transient ----------------------------------------

@pytest.mark.parametrize("fault", [
    {"type": "status", "status": 500},
    {"type": "status", "status": 503},
    {"type": "status", "status": 429, "retry_after": 3},
    {"type": "drop"},
    {"type": "malformed"},
])
def test_status_recovers(mock, fault, clock):
    ctl = mock.control
    api = mock.client(clock)
    job = api.submit(**REQ).id
    ctl.fault(endpoint="status", **fault)
    got = api.status(job)
    assert got.id == job and got.is_success  # pending_polls=1: done on the first read
    assert _gets(ctl) == 2 and len(clock.sleeps) == 1
    if "retry_after" in fault:
        assert clock.sleeps == [3.0]


def test_status_recovers_from_a_read_timeout(mock):
    ctl = mock.control
    api = mock.client(timeout=(5, 0.2))
    job = api.submit(**REQ).id
    ctl.fault(type="latency", ms=600, endpoint="status")
    assert api.status(job).id == job


def test_status_gives_up_after_its_budget(mock):
    ctl = mock.control
    api = mock.client()
    job = api.submit(**REQ).id
    ctl.fault(type="status", status=500, endpoint="status", times=50)
    with pytest.raises(ServerError) as info:
        api.status(job)
    assert info.value.job_id == job and _gets(ctl) == RetryPolicy().status_attempts


def test_generate_survives_a_flaky_status_endpoint(mock):
    ctl = mock.control
    ctl.configure(lifecycle="polls", pending_polls=4)
    ctl.fault(type="status", status=500, endpoint="status", rate=0.4)
    ctl.fault(type="drop", endpoint="status", rate=0.2)
    done = mock.client().generate(**REQ)
    assert done.is_success and len(ctl.jobs()) == 1 and mock.posts() == 1


@pytest.mark.parametrize("fault", [{"type": "status", "status": 500}, {"type": "drop"}])
def test_download_recovers(mock, tmp_path, fault):
    api = mock.client()
    done = api.generate(**REQ)
    mock.control.fault(endpoint="download", **fault)
    [path] = api.download(done, tmp_path)
    with Image.open(path) as img:
        assert img.size == (256, 256)


# --- lifecycles, keys, URLs ----------------------------------------------------------------------

def _skip_if_the_submit_finishes_jobs(mock) -> None:
    """A variant where every submit answers a finished job leaves nothing PENDING to test."""
    if mock.profile().get("submit", {}).get("finished") == "always":
        pytest.skip(f"{mock.variant.id}: the submit answers every job finished")


def test_immediate_lifecycle_answers_success_on_submit(mock):
    ctl = mock.control
    ctl.configure(lifecycle="immediate")
    done = mock.client().generate(**{**REQ, "samples": 2})
    never = mock.profile().get("submit", {}).get("finished") == "never"   # a variant: the submit says PENDING
    assert done.is_success and len(done.download_urls) == 2 and _gets(ctl) == (1 if never else 0)


def test_seconds_lifecycle_with_the_mocks_clock_advanced_by_the_clients_sleep(mock, clock):
    """The client's injected sleep moves the mock's clock: a 30 s job finishes without waiting."""
    ctl = mock.control

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        ctl.advance(seconds)

    ctl.configure(lifecycle="seconds", pending_seconds=30)
    seen = []
    done = mock.client(clock, sleep=sleep).generate(**REQ, on_update=seen.append)
    assert done.is_success and seen[-1].is_success
    if seen[0].is_success:   # a variant: the submit answers a finished job; nothing to wait for
        assert len(seen) == 1 and clock.sleeps == []
    else:
        assert seen[0].is_pending and 30 <= sum(clock.sleeps) <= 45


def test_manual_lifecycle_times_out_with_the_last_status(mock):
    mock.control.configure(lifecycle="manual")
    _skip_if_the_submit_finishes_jobs(mock)
    with pytest.raises(WaitTimeoutError) as info:
        mock.client().generate(**REQ, timeout=60)
    assert info.value.last_status.is_pending and info.value.job_id
    mock.control.complete(info.value.job_id)
    assert mock.client().wait(info.value.job_id).is_success  # resumed, not resubmitted
    assert mock.posts() == 1


def test_failed_job_raises_with_the_providers_text(mock):
    ctl = mock.control
    ctl.configure(failure_rate=1.0)
    with pytest.raises(JobFailedError) as info:
        mock.client().generate(**REQ)
    assert info.value.job_id and "failed" in info.value.error.lower()


def test_unknown_key_and_other_keys_jobs(mock):
    ctl = mock.control
    ctl.configure(api_keys=["k-one", "k-two"])
    with pytest.raises(AuthenticationError) as info:
        mock.client(api_key="wrong").submit(**REQ)
    assert info.value.status_code == 401
    job = mock.client(api_key="k-one").submit(**REQ).id
    with pytest.raises(NotFoundError):
        mock.client(api_key="k-two").status(job)
    assert mock.posts() == 2 and len(ctl.jobs()) == 1


def test_queued_image_urls_are_not_served_before_success(mock, tmp_path):
    ctl = mock.control
    ctl.configure(lifecycle="manual")
    _skip_if_the_submit_finishes_jobs(mock)
    api = mock.client()
    first = api.submit(**REQ, queued_image_urls=True)
    assert first.is_pending and len(first.download_urls) == 1
    with pytest.raises(NotFoundError):
        api.download(first, tmp_path)
    ctl.complete(first.id)
    done = api.wait(first.id)
    assert done.download_urls == first.download_urls
    assert len(api.download(done, tmp_path)) == 1


def test_download_urls_expire(mock, tmp_path):
    api = mock.client()
    done = api.generate(**REQ, direct_link=True)
    mock.control.advance(86_400 + 1)
    with pytest.raises(ImageUnavailableError) as info:   # 404, or 403/410 (variants): one error
        api.download(done, tmp_path)
    assert info.value.status_code in (403, 404, 410) and isinstance(info.value, NotFoundError)


def test_the_mocks_400_names_every_field_past_its_limits(mock):
    """Type-correct values are sent as they are; the mock's answer is what names the bad fields."""
    with pytest.raises(InvalidRequestError) as info:
        mock.client().submit(prompt="", negative_prompt="", samples=5, guidance_scale=-1,
                             num_inference_steps=0, width=100, height=100)
    assert not info.value.client_side and info.value.status_code in (400, 422)
    assert set(info.value.fields) == {"prompt", "samples", "guidance_scale", "num_inference_steps", "width", "height"}
    assert mock.posts() == 1 and mock.control.jobs() == []


def test_missing_fields_and_unknown_fields(mock):
    """With the check off, the mock's own "required" errors come back; unknown fields are ignored."""
    from sd35_twin.client import GenerationRequest

    api = mock.client(validate=False)
    with pytest.raises(InvalidRequestError) as info:
        api.submit(GenerationRequest(None, negative_prompt=None, num_inference_steps=None, samples=None,
                                     guidance_scale=None))
    assert set(info.value.fields) == {"prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale"}
    try:   # unknown fields (sent only through ``extra``) are ignored, or refused by name (a variant)
        assert not api.submit(**REQ, extra={"seed": 42, "scheduler": "x"}).is_failure
    except InvalidRequestError as exc:
        assert set(exc.fields) == {"seed", "scheduler"}, exc
    assert api.submit(**REQ).id   # what the client sends by itself: only the page's fields
