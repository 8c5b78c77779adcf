"""Rate limits (ledger row 30): per key, requests per sliding minute of the mock's clock (submits and status
reads, one bucket) and PENDING jobs at once; both off (null) by default. Over a limit: 429 (the profile's
``http_status.rate_limited``) with Retry-After, a FAILURE naming API-Key, nothing created, no credit spent."""

import pytest
import requests

from sd35_twin.client import ImagePipelineClient, RateLimitedError, RetryPolicy
from sd35_twin.mockserver.backend import RATE_TRACKED_KEYS, MockBackend
from sd35_twin.mockserver.config import MockConfig, load_profile
from sd35_twin.mockserver.errors import InvalidRequest, RateLimited, Unauthorized
from tests.helpers import race

BASE = "http://mock.test/"
ONE = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0,
       "width": 256, "height": 256}
KEY, OTHER = "key-rate-limited", "another-key-here"


@pytest.fixture
def make_backend():
    made = []

    def make(rate_limits: dict, **config):
        config.setdefault("lifecycle", "immediate")
        backend = MockBackend(MockConfig(profile=load_profile(overrides={"rate_limits": rate_limits}), **config))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


# -- the backend --------------------------------------------------------------------------------------------

def test_off_by_default():
    backend = MockBackend(MockConfig(lifecycle="manual"))
    try:
        assert backend.profile["rate_limits"] == {"requests_per_minute": None, "max_pending": None}
        for _ in range(50):
            backend.submit(KEY, ONE, BASE)
        assert backend.rate_limits()["keys"][0]["pending"] == 50
    finally:
        backend.close()


def test_the_window_counts_submits_and_status_reads_and_slides_with_the_mocks_clock(make_backend):
    backend = make_backend({"requests_per_minute": 3})
    job = backend.submit(KEY, ONE, BASE)                # t=0
    backend.advance_clock(10)
    backend.status(KEY, job.id)                         # t=10
    backend.advance_clock(10)
    backend.status(KEY, job.id)                         # t=20: the window is full
    with pytest.raises(RateLimited) as refused:
        backend.submit(KEY, ONE, BASE)
    assert [(e.field, e.rule) for e in refused.value.errors] == [("API-Key", "rate_limit")]
    assert refused.value.retry_after == 40              # the request of t=0 leaves at t=60
    backend.submit(OTHER, ONE, BASE)                    # another key has its own bucket
    with pytest.raises(RateLimited):                    # a refused request is not counted: still 40 s
        backend.status(KEY, job.id)
    backend.advance_clock(39)
    with pytest.raises(RateLimited) as again:
        backend.status(KEY, job.id)
    assert again.value.retry_after == 1
    backend.advance_clock(1)                            # t=60: one slot free
    backend.submit(KEY, ONE, BASE)
    with pytest.raises(RateLimited) as third:
        backend.submit(KEY, ONE, BASE)
    assert third.value.retry_after == 10                # the next to leave is t=10's
    assert len(backend.list_jobs()) == 3                # KEY's two and OTHER's one


def test_an_invalid_body_counts_but_a_bad_key_does_not(make_backend):
    backend = make_backend({"requests_per_minute": 1}, api_keys=(KEY,))
    with pytest.raises(Unauthorized):
        backend.submit("wrong-key-0000", ONE, BASE)
    with pytest.raises(InvalidRequest):
        backend.submit(KEY, dict(ONE, samples=99), BASE)
    with pytest.raises(RateLimited):
        backend.submit(KEY, ONE, BASE)


def test_max_pending_refuses_a_submit_until_a_job_is_done_and_spends_nothing(make_backend):
    backend = make_backend({"max_pending": 2}, lifecycle="manual", credits={KEY: 10})
    first = backend.submit(KEY, ONE, BASE)
    backend.submit(KEY, ONE, BASE)
    with pytest.raises(RateLimited) as refused:
        backend.submit(KEY, ONE, BASE)
    assert [(e.field, e.rule) for e in refused.value.errors] == [("API-Key", "max_pending")]
    assert refused.value.retry_after == 1
    assert backend.credits()[0]["spent"] == 2 and len(backend.list_jobs()) == 2
    backend.submit(OTHER, ONE, BASE)                    # per key
    backend.status(KEY, first.id)                       # status reads are never refused by max_pending
    backend.force(first.id, "SUCCESS")
    backend.submit(KEY, ONE, BASE)
    assert backend.rate_limits()["keys"] == [{"key": "an…(16 chars)", "requests_in_window": 0, "pending": 1},
                                             {"key": "ke…(16 chars)", "requests_in_window": 0, "pending": 2}]


def test_a_job_due_by_the_clock_no_longer_counts_as_pending(make_backend):
    backend = make_backend({"max_pending": 1}, lifecycle="seconds", pending_seconds=5)
    backend.submit(KEY, ONE, BASE)
    with pytest.raises(RateLimited):
        backend.submit(KEY, ONE, BASE)
    backend.clock.advance(5)                            # due, though no tick has run yet
    backend.submit(KEY, ONE, BASE)


def test_memory_is_bounded_per_key_and_in_keys(make_backend):
    backend = make_backend({"requests_per_minute": 5})
    for n in range(RATE_TRACKED_KEYS + 50):
        backend.submit(f"key-{n:05d}", ONE, BASE)
    assert len(backend._requests) <= RATE_TRACKED_KEYS
    assert all(len(times) <= 5 for times in backend._requests.values())


def test_a_lower_limit_applies_at_once_and_reset_clears_the_counts(make_backend):
    backend = make_backend({"requests_per_minute": 5})
    for _ in range(4):
        backend.submit(KEY, ONE, BASE)
    backend.update_config({"profile": {"rate_limits": {"requests_per_minute": 2}}})
    with pytest.raises(RateLimited):
        backend.submit(KEY, ONE, BASE)
    backend.update_config({"profile": {"rate_limits": {"requests_per_minute": None}}})
    backend.submit(KEY, ONE, BASE)                      # off again
    backend.update_config({"profile": {"rate_limits": {"requests_per_minute": 2}}})
    backend.reset()                                     # back to the start-up profile (limit 5), nothing counted
    assert backend.rate_limits()["keys"] == []
    for _ in range(5):
        backend.submit(KEY, ONE, BASE)


@pytest.mark.parametrize("rate_limits, field", [
    ({"requests_per_minute": 0}, "profile.rate_limits.requests_per_minute"),
    ({"requests_per_minute": 10_001}, "profile.rate_limits.requests_per_minute"),
    ({"max_pending": "2"}, "profile.rate_limits.max_pending"),
    ({"max_pending": 1.5}, "profile.rate_limits.max_pending"),
    ({"per_hour": 5}, "profile.rate_limits.per_hour"),
])
def test_bad_values_are_refused_naming_the_key(rate_limits, field):
    with pytest.raises(InvalidRequest) as refused:
        load_profile(overrides={"rate_limits": rate_limits})
    assert field in [e.field for e in refused.value.errors]
    with pytest.raises(InvalidRequest):
        load_profile(overrides={"http_status": {"rate_limited": 302}})


def test_threads_racing_for_a_limit_get_exactly_that_many(make_backend):
    backend = make_backend({"requests_per_minute": 7, "max_pending": 1_000}, lifecycle="manual")
    accepted, limited = race(lambda: backend.submit(KEY, ONE, BASE), 20, RateLimited)
    assert (len(accepted), limited) == (7, 13)
    assert len(backend.list_jobs()) == 7


def test_threads_racing_for_max_pending_get_exactly_that_many(make_backend):
    backend = make_backend({"max_pending": 3}, lifecycle="manual")
    accepted, limited = race(lambda: backend.submit(KEY, ONE, BASE), 16, RateLimited)
    assert (len(accepted), limited) == (3, 13) and len(backend.list_jobs()) == 3


# -- over HTTP ----------------------------------------------------------------------------------------------

def _post(mock, key: str = KEY) -> requests.Response:
    return requests.post(f"{mock.url}/sd3_5/v1", json=ONE, headers={"API-Key": key}, timeout=10)


def _get(mock, job_id: str, key: str = KEY) -> requests.Response:
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers={"API-Key": key}, timeout=10)


def test_http_429_with_retry_after_and_a_failure_body_naming_the_key(sd35_mock):
    sd35_mock.configure(profile={"rate_limits": {"requests_per_minute": 2}}, credits={KEY: 5})
    job_id = _post(sd35_mock).json()["id"]
    sd35_mock.advance(15)
    assert _get(sd35_mock, job_id).status_code == 200
    refused = _post(sd35_mock)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "45"
    body = refused.json()
    assert body["status"] == "FAILURE" and "API-Key" in body["error"]
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("API-Key", "rate_limit")]
    polled = _get(sd35_mock, job_id)
    assert polled.status_code == 429 and polled.headers["Retry-After"] == "45"
    assert len(sd35_mock.jobs()) == 1 and sd35_mock.credits()[0]["spent"] == 1
    assert sd35_mock.rate_limits() == {
        "limits": {"requests_per_minute": 2, "max_pending": None, "window_seconds": 60.0},
        "keys": [{"key": "ke…(16 chars)", "requests_in_window": 2, "pending": 0}]}
    sd35_mock.advance(45)
    assert _post(sd35_mock).status_code == 200
    sd35_mock.reset()
    assert sd35_mock.rate_limits()["keys"] == [] and sd35_mock.rate_limits()["limits"]["requests_per_minute"] is None


def test_http_max_pending_and_the_profiles_status(sd35_mock):
    sd35_mock.configure(lifecycle="manual", profile={"rate_limits": {"max_pending": 1},
                                                     "http_status": {"rate_limited": 503}})
    first = _post(sd35_mock).json()["id"]
    refused = _post(sd35_mock)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert [(e["field"], e["rule"]) for e in refused.json()["errors"]] == [("API-Key", "max_pending")]
    sd35_mock.complete(first)
    assert _post(sd35_mock).status_code == 200


def test_the_client_honours_retry_after_on_a_submit_and_on_a_status_read(sd35_mock):
    """The client sleeps the Retry-After it is given (here: advancing the mock's clock) and retries: a 429 on
    a submit created nothing, so the retry creates the one job."""
    sd35_mock.configure(profile={"rate_limits": {"requests_per_minute": 1}})
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        sd35_mock.advance(seconds)

    client = ImagePipelineClient(KEY, sd35_mock.url, sleep=sleep, validate=False)
    job = client.submit(**ONE)
    status = client.status(job.id)                     # 429, Retry-After: 60, then SUCCESS
    assert status.id == job.id and slept == [60.0]
    client.submit(**ONE)                                # 429 again: the status read filled the window
    assert slept == [60.0, 60.0] and len(sd35_mock.jobs()) == 2
    patient = ImagePipelineClient(KEY, sd35_mock.url, sleep=sleep, validate=False,
                                  retry=RetryPolicy(max_retry_after=30.0))
    with pytest.raises(RateLimitedError) as raised:     # longer than the client will wait: raised, not slept
        patient.submit(**ONE)
    assert raised.value.retry_after == 60.0 and len(sd35_mock.jobs()) == 2
    client.close()
    patient.close()
