"""The client under faults scoped by rules to one key, batch or prompt, while other traffic is untouched: it
keeps its promises (one submit per job, retries that honour Retry-After, polls spaced out, no cut-off image
saved), checked with the mock's verification helpers over its journal."""

from __future__ import annotations

import pytest
from PIL import Image

from sd35_twin.client import ConnectionLostError, JobFailedError, RetryPolicy

pytestmark = pytest.mark.mock_only

KEY, OTHER = "rules-client-key", "rules-other-key"
REQ = dict(prompt="a red fox in snow", negative_prompt="blurry", samples=1, width=256, height=256)


@pytest.fixture
def client_on_mock_time(mock, clock):
    """A client whose sleeps move the mock's clock on as well: the journal's times are the ones it waited."""
    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        mock.control.advance(seconds)

    return lambda key=KEY: mock.client(clock, api_key=key, sleep=sleep)


def test_a_submit_refused_for_one_key_is_retried_after_its_retry_after_and_billed_once(mock, client_on_mock_time):
    ctl = mock.control
    rule = ctl.add_rule({"api_key": KEY}, fault={"type": "status", "status": 429, "retry_after": 4,
                                                 "endpoint": "submit"}, times=1)
    job = client_on_mock_time().submit(**REQ, batch_id="b-429")
    other = client_on_mock_time(OTHER).submit(**REQ, batch_id="b-other")
    ctl.assert_submits(2, key=KEY)
    ctl.assert_submits(1, key=OTHER)
    assert len(ctl.requests(rule=rule["id"])) == 1
    ctl.assert_retry_after_honoured(kind="submit", key=KEY)
    ctl.assert_no_duplicate_submit(status=200)  # one accepted submit per batch_id: one job, billed once
    assert sorted(j["id"] for j in ctl.jobs()) == sorted([job.id, other.id])


def test_a_lost_submit_answer_for_one_batch_is_reported_not_repeated(mock, client_on_mock_time):
    ctl = mock.control
    ctl.add_rule({"batch_id": "b-lost"}, fault={"type": "drop", "phase": "after", "endpoint": "submit"})
    with pytest.raises(ConnectionLostError):
        client_on_mock_time().submit(**REQ, batch_id="b-lost")
    client_on_mock_time().submit(**REQ, batch_id="b-fine")
    ctl.assert_submits(1, batch_id="b-lost")  # the job exists: a second POST would bill it twice
    ctl.assert_no_duplicate_submit()
    assert len(ctl.jobs(batch_id="b-lost")) == 1


def test_status_reads_refused_for_one_prompt_honour_retry_after(mock, client_on_mock_time):
    ctl = mock.control
    rule = ctl.add_rule({"prompt_contains": "flaky"}, fault={"type": "status", "status": 503, "retry_after": 2,
                                                             "endpoint": "status"}, times=2)
    api = client_on_mock_time()
    job = api.submit(**dict(REQ, prompt="a flaky fox"))
    assert api.status(job.id).id == job.id
    assert [e["status"] for e in ctl.requests(kind="status", job_id=job.id)] == [503, 503, 200]
    assert len(ctl.requests(rule=rule["id"])) == 2
    ctl.assert_retry_after_honoured(kind="status", key=KEY)


def test_polls_are_spaced_out(mock, client_on_mock_time):
    ctl = mock.control
    ctl.add_rule({"api_key": KEY}, pending_polls=4)
    api = client_on_mock_time()
    job = api.submit(**REQ)
    if job.is_terminal:
        pytest.skip("this variant finishes every job before the POST answers: nothing to poll")
    assert api.wait(job).status == "SUCCESS"
    assert len(ctl.requests(kind="status", job_id=job.id)) == 4
    ctl.assert_poll_interval(job.id, at_least=0.7)  # the client's first backoff, less its 30 % jitter


def test_a_rules_failure_reaches_the_client_and_only_for_its_key(mock, client_on_mock_time):
    mock.control.add_rule({"api_key": KEY}, outcome="FAILURE", error="refused by the rule")
    with pytest.raises(JobFailedError) as info:
        client_on_mock_time().generate(**REQ)
    assert "refused by the rule" in str(info.value)
    assert client_on_mock_time(OTHER).generate(**REQ).status == "SUCCESS"
    mock.control.assert_submits(1, key=KEY)


def test_a_download_cut_once_for_one_prompt_is_retried_and_saved_whole(mock, client_on_mock_time, tmp_path):
    ctl = mock.control
    rule = ctl.add_rule({"prompt_contains": "fragile"}, fault={"type": "truncate", "endpoint": "download"},
                        times=1)
    api = client_on_mock_time()
    [path] = api.download(api.generate(**dict(REQ, prompt="a fragile fox")), tmp_path)
    with Image.open(path) as img:
        img.load()
        assert img.size == (256, 256)
    assert [e.get("rule") for e in ctl.requests(kind="download")] == [rule["id"], None]


def test_a_download_cut_every_time_is_reported_and_nothing_is_saved(mock, client_on_mock_time, tmp_path):
    ctl = mock.control
    # a download URL carries no API key: its job's batch_id or prompt say whose it is
    rule = ctl.add_rule({"batch_id": "b-reset"}, fault={"type": "reset", "bytes": 100, "endpoint": "download"})
    api = client_on_mock_time()
    done = api.generate(**REQ, batch_id="b-reset")
    with pytest.raises(ConnectionLostError) as info:
        api.download(done, tmp_path)
    assert info.value.job_id == done.id and list(tmp_path.iterdir()) == []
    assert len(ctl.requests(kind="download", rule=rule["id"])) == RetryPolicy().status_attempts
    ctl.assert_submits(1, key=KEY)
