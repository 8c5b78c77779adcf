"""Unit tests of the client against `responses`: every status, every error path, the retry rule."""

from __future__ import annotations

import http.client
import json
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest
import requests
import responses
import urllib3.exceptions
from hypothesis import given, strategies as st

from sd35_twin import client
from sd35_twin.client import (
    APIError,
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    GenerationRequest,
    ImagePipelineClient,
    ImagePipelineError,
    InvalidRequestError,
    JobFailedError,
    JobState,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from sd35_twin.client.api import _retry_after, transport_error
from tests.helpers import refused_port

BASE = "https://api.test"
SUBMIT = BASE + "/sd3_5/v1"


def STATUS(job_id: str = "job1") -> str:
    return f"{BASE}/sd3_5/v1/status/{job_id}"


PENDING = {"status": "PENDING", "id": "job1"}
SUCCESS = {"status": "SUCCESS", "id": "job1", "download_urls": [BASE + "/files/a", BASE + "/files/b"]}
FAILED = {"status": "FAILURE", "id": "job1", "error": "Image generation failed"}


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens on the port (the request was never sent)."""
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/sd3_5/v1", reason))


def dropped() -> requests.ConnectionError:
    """What requests raises when the server closes the connection without answering."""
    return requests.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", http.client.RemoteDisconnected("Remote end closed connection without response")
        )
    )


def calls(rsps, method: str) -> int:
    return sum(1 for c in rsps.calls if c.request.method == method)


# --- submit and status: every answer ------------------------------------------------------------

def test_submit_sends_the_page_fields_and_the_key(api, rsps):
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    got = api.submit(prompt="a waterfall", negative_prompt="blurry", samples=2, guidance_scale=3.5,
                     num_inference_steps=20, width=512, height=768, batch_id="b1")
    assert got.status is JobState.PENDING and got.id == "job1" and not got.is_terminal
    sent = rsps.calls[0].request
    assert sent.headers["API-Key"] == "test-key"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == {
        "prompt": "a waterfall", "negative_prompt": "blurry", "num_inference_steps": 20, "samples": 2,
        "guidance_scale": 3.5, "width": 512, "height": 768, "batch_id": "b1",
    }


def test_submit_accepts_a_request_object_with_overrides(api, rsps):
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    req = GenerationRequest("a cat", samples=2)
    api.submit(req, samples=1)
    assert json.loads(rsps.calls[0].request.body)["samples"] == 1


def test_unknown_keyword_is_a_type_error(api, rsps):
    with pytest.raises(TypeError):
        api.submit(prompt="x", sample=2)
    assert len(rsps.calls) == 0


def test_generate_returns_a_direct_success_without_polling(api, rsps):
    rsps.add(responses.POST, SUBMIT, json=SUCCESS)
    done = api.generate(prompt="x", samples=2)
    assert done.is_success and done.id == "job1" and len(done.download_urls) == 2
    assert len(rsps.calls) == 1


def test_generate_polls_until_success(api, rsps, clock):
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    rsps.add(responses.GET, STATUS(), json=PENDING)
    rsps.add(responses.GET, STATUS(), json={"status": "SUCCESS", "download_urls": [BASE + "/files/a"]})
    seen = []
    done = api.generate(prompt="x", on_update=seen.append)
    assert done.is_success and done.id == "job1"  # a status answer need not repeat the id
    assert [s.status.value for s in seen] == ["PENDING", "PENDING", "SUCCESS"]
    assert clock.sleeps == [1.0]  # the first poll is immediate, then the poll schedule


def test_status_failure_is_returned_and_wait_raises_it(api, rsps):
    rsps.add(responses.GET, STATUS(), json=FAILED)
    got = api.status("job1")
    assert got.is_failure and got.is_terminal and got.error == "Image generation failed"
    with pytest.raises(JobFailedError) as info:
        api.wait("job1")
    assert info.value.job_id == "job1" and info.value.error == "Image generation failed"
    assert info.value.status.is_failure


def test_failure_on_submit_without_an_id(api, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "FAILURE", "error": "out of credits"})
    first = api.submit(prompt="x")
    assert first.is_failure and first.id is None and first.error == "out of credits"
    rsps.add(responses.POST, SUBMIT, json={"status": "FAILURE", "error": "out of credits"})
    with pytest.raises(JobFailedError, match="out of credits") as info:
        api.generate(prompt="x")
    assert info.value.job_id is None


def test_failure_without_error_text_still_says_something(api, rsps):
    rsps.add(responses.GET, STATUS(), json={"status": "FAILURE", "id": "job1"})
    assert api.status("job1").error


def test_batch_id_is_read_back(api, rsps):
    rsps.add(responses.POST, SUBMIT, json={**PENDING, "batch_id": "b7"})
    assert api.submit(prompt="x", batch_id="b7").batch_id == "b7"


def test_lowercase_status_is_understood(api, rsps):
    rsps.add(responses.GET, STATUS(), json={"status": "pending", "id": "job1"})
    assert api.status("job1").is_pending


# --- error statuses -----------------------------------------------------------------------------

def test_400_with_errors_list_names_every_field(api, rsps):
    body = {"status": "FAILURE", "error": "samples: must be at most 2; width: must be a multiple of 8",
            "errors": [{"field": "samples", "rule": "maximum", "message": "must be at most 2"},
                       {"field": "width", "rule": "multipleOf", "message": "must be a multiple of 8"}]}
    rsps.add(responses.POST, SUBMIT, json=body, status=400)
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt="x", samples=3, width=1001)
    err = info.value
    assert err.fields == ("samples", "width") and err.status_code == 400 and err.body == body
    assert not err.client_side and "samples" in str(err)
    assert calls(rsps, "POST") == 1


def test_400_with_only_error_text_still_names_the_fields(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=400,
             json={"status": "FAILURE", "error": "guidance_scale: must be at most 20; prompt: is required"})
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt="x", guidance_scale=21.0)
    assert info.value.fields == ("guidance_scale", "prompt")


def test_400_with_a_body_that_is_not_json(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=400, body="<html>Bad Request</html>")
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt="x")
    assert info.value.fields == () and info.value.body == "<html>Bad Request</html>"


@pytest.mark.parametrize("code", [413, 422])
def test_413_and_422_are_invalid_requests(api, rsps, code):
    rsps.add(responses.POST, SUBMIT, status=code, json={"status": "FAILURE", "error": "body: too large"})
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt="x")
    assert info.value.status_code == code and info.value.fields == ("body",)


@pytest.mark.parametrize("code", [401, 403])
def test_auth_errors(api, rsps, code):
    rsps.add(responses.POST, SUBMIT, status=code, json={"status": "FAILURE", "error": "API-Key: unknown key"})
    rsps.add(responses.GET, STATUS(), status=code, json={"status": "FAILURE", "error": "API-Key: unknown key"})
    with pytest.raises(AuthenticationError) as info:
        api.submit(prompt="x")
    assert info.value.status_code == code and "unknown key" in info.value.message
    with pytest.raises(AuthenticationError):
        api.status("job1")
    assert len(rsps.calls) == 2  # never retried


def test_404_unknown_job(api, rsps):
    rsps.add(responses.GET, STATUS("nope"), status=404, json={"status": "FAILURE", "error": "id: unknown job"})
    with pytest.raises(NotFoundError) as info:
        api.status("nope")
    assert info.value.job_id == "nope" and len(rsps.calls) == 1


def test_other_4xx_is_a_plain_api_error(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=405, json={"status": "FAILURE", "error": "method"})
    with pytest.raises(APIError) as info:
        api.submit(prompt="x")
    assert type(info.value) is APIError and info.value.status_code == 405


def test_redirect_is_not_followed_and_the_key_not_forwarded(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=301, headers={"Location": "https://elsewhere.test/sd3_5/v1"})
    with pytest.raises(APIError, match="elsewhere.test"):
        api.submit(prompt="x")
    assert len(rsps.calls) == 1


# --- unusable 2xx answers -----------------------------------------------------------------------

@pytest.mark.parametrize("body, why", [
    ({"status": "SUCCESS", "id": "job1"}, "download_urls"),
    ({"status": "SUCCESS", "id": "job1", "download_urls": []}, "download_urls"),
    ({"status": "SUCCESS", "id": "job1", "download_urls": [1]}, "download_urls"),
    ({"status": "DONE", "id": "job1"}, "unknown status"),
    ({"status": "PROCESSING", "id": "job1"}, "unknown status"),
    ({"id": "job1"}, "status"),
    (["PENDING"], "JSON object"),
    ({"status": "PENDING", "id": "other"}, "other"),
    ({"status": "PENDING", "id": True}, "id"),
])
def test_unusable_status_answers(api, rsps, body, why):
    rsps.add(responses.GET, STATUS(), json=body)
    with pytest.raises(UnexpectedResponseError, match=why) as info:
        api.status("job1")
    assert info.value.job_id == "job1" and info.value.body == body
    assert len(rsps.calls) == 1  # a contract break is not retried


def test_pending_without_id_on_submit(api, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING"})
    with pytest.raises(UnexpectedResponseError, match="id"):
        api.submit(prompt="x")


def test_success_without_download_urls_on_submit(api, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "SUCCESS", "id": "job1"})
    with pytest.raises(UnexpectedResponseError, match="download_urls"):
        api.generate(prompt="x")
    assert calls(rsps, "POST") == 1


def test_malformed_json_on_submit_is_not_retried(api, rsps):
    rsps.add(responses.POST, SUBMIT, body='{"status": "PEND')
    with pytest.raises(UnexpectedResponseError, match="not JSON"):
        api.submit(prompt="x")
    assert calls(rsps, "POST") == 1  # the job may exist: never submit twice


def test_malformed_json_on_status_is_retried(api, rsps, clock):
    rsps.add(responses.GET, STATUS(), body='{"status": "PEND')
    rsps.add(responses.GET, STATUS(), json=PENDING)
    assert api.status("job1").is_pending
    assert calls(rsps, "GET") == 2 and clock.sleeps == [0.5]


def test_malformed_json_on_status_every_time(api, rsps):
    rsps.add(responses.GET, STATUS(), body="not json")
    with pytest.raises(UnexpectedResponseError):
        api.status("job1")
    assert calls(rsps, "GET") == RetryPolicy().status_attempts


# --- the retry rule: status GET ------------------------------------------------------------------

@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_status_is_retried_on_5xx(api, rsps, clock, code):
    rsps.add(responses.GET, STATUS(), status=code, json={"status": "FAILURE", "error": "boom"})
    rsps.add(responses.GET, STATUS(), json=PENDING)
    assert api.status("job1").is_pending
    assert calls(rsps, "GET") == 2


def test_status_gives_up_after_the_budget_with_capped_backoff(make_client, rsps, clock):
    from sd35_twin.client import Backoff

    api = make_client(retry=RetryPolicy(status_attempts=6, backoff=Backoff(0.5, 2.0, 3.0)))
    rsps.add(responses.GET, STATUS(), status=500, json={"status": "FAILURE", "error": "boom"})
    with pytest.raises(ServerError) as info:
        api.status("job1")
    assert info.value.status_code == 500 and info.value.job_id == "job1"
    assert calls(rsps, "GET") == 6
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_only_shortens_the_delay(make_client, rsps, clock):
    api = make_client(random=lambda: 1.0)  # maximum jitter: half the delay
    rsps.add(responses.GET, STATUS(), status=500)
    with pytest.raises(ServerError):
        api.status("job1")
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0]


def test_status_429_honours_retry_after(api, rsps, clock):
    rsps.add(responses.GET, STATUS(), status=429, headers={"Retry-After": "7"},
             json={"status": "FAILURE", "error": "slow down"})
    rsps.add(responses.GET, STATUS(), json=PENDING)
    assert api.status("job1").is_pending
    assert clock.sleeps == [7.0]


def test_retry_after_as_an_http_date(api, rsps, clock):
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    rsps.add(responses.GET, STATUS(), status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    rsps.add(responses.GET, STATUS(), json=PENDING)
    api.status("job1")
    assert len(clock.sleeps) == 1 and 25 <= clock.sleeps[0] <= 31


def test_429_without_retry_after_uses_the_backoff(api, rsps, clock):
    rsps.add(responses.GET, STATUS(), status=429)
    rsps.add(responses.GET, STATUS(), json=PENDING)
    api.status("job1")
    assert clock.sleeps == [0.5]


def test_429_exhausted_raises_with_retry_after(api, rsps):
    rsps.add(responses.GET, STATUS(), status=429, headers={"Retry-After": "2"})
    with pytest.raises(RateLimitedError) as info:
        api.status("job1")
    assert info.value.retry_after == 2.0 and info.value.status_code == 429


def test_a_retry_after_beyond_the_cap_is_raised_not_slept(make_client, rsps, clock):
    api = make_client(retry=RetryPolicy(max_retry_after=30))
    rsps.add(responses.GET, STATUS(), status=429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimitedError) as info:
        api.status("job1")
    assert info.value.retry_after == 3600 and clock.sleeps == [] and len(rsps.calls) == 1


@pytest.mark.parametrize("exc", [refused, dropped, requests.ReadTimeout, requests.ConnectTimeout,
                                 requests.exceptions.ChunkedEncodingError])
def test_status_is_retried_on_transport_errors(api, rsps, exc):
    rsps.add(responses.GET, STATUS(), body=exc())
    rsps.add(responses.GET, STATUS(), json=PENDING)
    assert api.status("job1").is_pending
    assert calls(rsps, "GET") == 2


def test_tls_failure_is_not_retried(api, rsps):
    rsps.add(responses.GET, STATUS(), body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(TransportError) as info:
        api.status("job1")
    assert type(info.value) is TransportError and len(rsps.calls) == 1


# --- the retry rule: submit POST (never bill twice) ----------------------------------------------

@pytest.mark.parametrize("exc, expected", [
    (refused, ConnectError),
    (requests.ConnectTimeout, ConnectTimeoutError),
])
def test_submit_is_retried_when_the_request_surely_never_left(api, rsps, exc, expected):
    rsps.add(responses.POST, SUBMIT, body=exc())
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    assert api.submit(prompt="x").id == "job1"
    assert calls(rsps, "POST") == 2
    assert issubclass(expected, ConnectError)


def test_submit_gives_up_on_refusal_after_its_budget(api, rsps):
    rsps.add(responses.POST, SUBMIT, body=refused())
    with pytest.raises(ConnectError):
        api.submit(prompt="x")
    assert calls(rsps, "POST") == RetryPolicy().submit_attempts


@pytest.mark.parametrize("code, headers, slept", [(429, {"Retry-After": "3"}, [3.0]), (503, {}, [0.5]),
                                                   (503, {"Retry-After": "1"}, [1.0])])
def test_submit_is_retried_when_the_server_says_so(api, rsps, clock, code, headers, slept):
    rsps.add(responses.POST, SUBMIT, status=code, headers=headers, json={"status": "FAILURE", "error": "later"})
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    assert api.submit(prompt="x").id == "job1"
    assert calls(rsps, "POST") == 2 and clock.sleeps == slept


@pytest.mark.parametrize("exc, expected", [
    (requests.ReadTimeout, client.TimeoutError),
    (dropped, ConnectionLostError),
    (requests.exceptions.ChunkedEncodingError, ConnectionLostError),
    (requests.ConnectionError, ConnectionLostError),  # cause unknown: assume it was sent
])
def test_submit_is_never_retried_once_the_request_may_have_arrived(api, rsps, clock, exc, expected):
    rsps.add(responses.POST, SUBMIT, body=exc())
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    with pytest.raises(expected):
        api.submit(prompt="x")
    assert calls(rsps, "POST") == 1 and clock.sleeps == []


@pytest.mark.parametrize("code", [500, 502, 504])
def test_submit_is_never_retried_on_other_5xx(api, rsps, code):
    rsps.add(responses.POST, SUBMIT, status=code, json={"status": "FAILURE", "error": "boom"})
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    with pytest.raises(ServerError):
        api.submit(prompt="x")
    assert calls(rsps, "POST") == 1


def test_a_real_refused_connection_is_a_connect_error_and_is_retried(make_client, clock):
    with refused_port() as port:
        api = make_client(base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(ConnectError):
            api.submit(prompt="x")
    assert len(clock.sleeps) == RetryPolicy().submit_attempts - 1


REQUESTS_EXCEPTIONS = sorted(
    {c for c in vars(requests.exceptions).values()
     if isinstance(c, type) and issubclass(c, requests.RequestException)
     and not issubclass(c, Warning)}, key=lambda c: c.__name__)


@pytest.mark.parametrize("exc_type", REQUESTS_EXCEPTIONS, ids=lambda c: c.__name__)
def test_no_requests_exception_escapes(api, rsps, exc_type):
    try:
        exc = exc_type("boom")
    except TypeError:  # JSONDecodeError wants (msg, doc, pos)
        exc = exc_type("boom", "doc", 0)
    rsps.add(responses.POST, SUBMIT, body=exc)
    rsps.add(responses.GET, STATUS(), body=exc)
    for call in (lambda: api.submit(prompt="x"), lambda: api.status("job1")):
        with pytest.raises(ImagePipelineError) as info:
            call()
        assert not isinstance(info.value, requests.RequestException)
        assert isinstance(info.value, TransportError)


# --- wait ---------------------------------------------------------------------------------------

def test_wait_times_out_with_the_last_status(api, rsps, clock):
    rsps.add(responses.GET, STATUS(), json=PENDING)
    start = clock.now
    with pytest.raises(WaitTimeoutError) as info:
        api.wait("job1", timeout=20)
    err = info.value
    assert err.last_status.is_pending and err.job_id == "job1" and err.timeout == 20
    assert clock.now - start == pytest.approx(20)  # the last poll is at the deadline, not after
    # 1, 1.5, 2.25, 3.375, 5.06, then the remainder up to the deadline
    assert clock.sleeps[:4] == [1.0, 1.5, 2.25, 3.375]
    assert max(clock.sleeps) <= 10


def test_wait_timeout_zero_polls_once(api, rsps, clock):
    rsps.add(responses.GET, STATUS(), json=PENDING)
    with pytest.raises(WaitTimeoutError):
        api.wait("job1", timeout=0)
    assert len(rsps.calls) == 1 and clock.sleeps == []


def test_wait_poll_interval_is_capped(api, rsps, clock):
    rsps.add(responses.GET, STATUS(), json=PENDING)
    with pytest.raises(WaitTimeoutError):
        api.wait("job1", timeout=120)
    assert max(clock.sleeps) == 10.0


def test_wait_on_a_terminal_status_sends_nothing(api, rsps):
    done = client.JobStatus.from_body(SUCCESS)
    assert api.wait(done) is done
    with pytest.raises(JobFailedError):
        api.wait(client.JobStatus.from_body(FAILED))
    assert len(rsps.calls) == 0


def test_retries_inside_wait_respect_its_deadline(api, rsps, clock):
    rsps.add(responses.GET, STATUS(), status=429, headers={"Retry-After": "50"})
    with pytest.raises(RateLimitedError):
        api.wait("job1", timeout=10)
    assert clock.sleeps == []


def test_generate_tags_errors_after_submit_with_the_job_id(api, rsps):
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    rsps.add(responses.GET, STATUS(), status=500)
    with pytest.raises(ServerError) as info:
        api.generate(prompt="x")
    assert info.value.job_id == "job1"  # so the caller can resume with wait(), not pay again
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    rsps.replace(responses.GET, STATUS(), json=PENDING)
    with pytest.raises(WaitTimeoutError) as info2:
        api.generate(prompt="x", timeout=5)
    assert info2.value.job_id == "job1"


# --- client-side check --------------------------------------------------------------------------

def test_missing_fields_and_wrong_types_are_refused_before_sending(api, rsps):
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt=None, samples="2", width=1024.0, guidance_scale=float("nan"))
    assert info.value.client_side and info.value.status_code is None
    assert set(info.value.fields) == {"prompt", "samples", "width", "guidance_scale"}
    assert len(rsps.calls) == 0


def test_values_past_the_limits_are_sent_as_they_are(api, rsps):
    """The server judges limits; the client does not keep a copy of them."""
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    api.submit(prompt=" ", samples=3, width=1001, guidance_scale=-1, file_prefix=".x", webhook="not a url")
    sent = json.loads(rsps.calls[0].request.body)
    assert sent["prompt"] == " " and sent["samples"] == 3 and sent["width"] == 1001 and sent["webhook"] == "not a url"


def test_the_check_can_be_switched_off(make_client, rsps):
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    make_client(validate=False).submit(prompt="x", samples="3")
    make_client().submit(prompt="x", samples="3", validate=False)
    assert [json.loads(c.request.body)["samples"] for c in rsps.calls] == ["3", "3"]


def test_required_field_set_to_none_is_omitted_when_unchecked(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=400, json={"status": "FAILURE", "error": "prompt: is required"})
    with pytest.raises(InvalidRequestError):
        api.submit(prompt=None, validate=False)
    assert "prompt" not in json.loads(rsps.calls[0].request.body)


@pytest.mark.parametrize("job_id", ["", ".", ".."])
def test_dot_segment_job_ids_are_refused(api, rsps, job_id):
    with pytest.raises(InvalidRequestError) as info:
        api.status(job_id)
    assert info.value.fields == ("id",) and len(rsps.calls) == 0


def test_job_ids_are_one_path_segment(api, rsps):
    rsps.add(responses.GET, f"{BASE}/sd3_5/v1/status/a%2Fb%3Fc", json={"status": "PENDING", "id": "a/b?c"})
    assert api.status("a/b?c").id == "a/b?c"


# --- configuration ------------------------------------------------------------------------------

def test_key_and_base_url_fall_back_to_the_environment(monkeypatch, rsps):
    monkeypatch.setenv("IMAGEPIPELINE_API_KEY", "env-key")
    monkeypatch.setenv("IMAGEPIPELINE_BASE_URL", "http://mock.test:8080/")
    api = ImagePipelineClient()
    assert api.base_url == "http://mock.test:8080"
    rsps.add(responses.GET, "http://mock.test:8080/sd3_5/v1/status/j", json={"status": "PENDING", "id": "j"})
    api.status("j")
    assert rsps.calls[0].request.headers["API-Key"] == "env-key"
    assert "env-key" not in repr(api)
    explicit = ImagePipelineClient(api_key="k2", base_url="https://other.test")
    assert explicit.base_url == "https://other.test" and explicit._api_key == "k2"


def test_default_base_url_is_the_live_api(monkeypatch):
    monkeypatch.delenv("IMAGEPIPELINE_BASE_URL", raising=False)
    assert ImagePipelineClient().base_url == "https://api.imagepipeline.io"


def test_no_key_sends_no_header(monkeypatch, rsps):
    monkeypatch.delenv("IMAGEPIPELINE_API_KEY", raising=False)
    rsps.add(responses.GET, STATUS(), status=401, json={"status": "FAILURE", "error": "API-Key: missing"})
    with pytest.raises(AuthenticationError):
        ImagePipelineClient(base_url=BASE).status("job1")
    assert "API-Key" not in rsps.calls[0].request.headers


@pytest.mark.parametrize("url", ["ftp://x", "api.imagepipeline.io", "http://"])
def test_bad_base_url(url):
    with pytest.raises(ValueError):
        ImagePipelineClient(base_url=url)


def test_injected_session_is_used_and_not_closed(rsps):
    session = requests.Session()
    rsps.add(responses.GET, STATUS(), json=PENDING)
    with ImagePipelineClient(api_key="k", base_url=BASE, session=session) as api:
        api.status("job1")
    assert api.session is session
    session.get(STATUS())  # still usable


# --- download -----------------------------------------------------------------------------------

def test_download_names_files_by_content_type(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/files/tok1", body=b"\x89PNG1", content_type="image/png")
    rsps.add(responses.GET, BASE + "/images/pre-job1-2.png", body=b"\xff\xd8JPEG", content_type="image/jpeg; q=1")
    done = client.JobStatus.from_body({"status": "SUCCESS", "id": "job1",
                                       "download_urls": [BASE + "/files/tok1", BASE + "/images/pre-job1-2.png"]})
    paths = api.download(done, tmp_path / "out")
    assert [p.name for p in paths] == ["tok1.png", "pre-job1-2.jpg"]
    assert paths[0].read_bytes() == b"\x89PNG1" and paths[1].read_bytes() == b"\xff\xd8JPEG"
    assert all("API-Key" not in c.request.headers for c in rsps.calls)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pre-job1-2.jpg", "tok1.png"]


def test_download_deduplicates_names(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/a/img", body=b"1", content_type="image/png")
    rsps.add(responses.GET, BASE + "/b/img", body=b"2", content_type="image/png")
    paths = api.download([BASE + "/a/img", BASE + "/b/img"], tmp_path)
    assert len({p.name for p in paths}) == 2 and paths[1].read_bytes() == b"2"


def test_download_refuses_a_non_image(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/files/x", json={"status": "FAILURE", "error": "nope"})
    with pytest.raises(UnexpectedResponseError, match="not an image"):
        api.download([BASE + "/files/x"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_404_and_retry(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/files/gone", status=404, json={"status": "FAILURE", "error": "expired"})
    with pytest.raises(NotFoundError):
        api.download([BASE + "/files/gone"], tmp_path)
    rsps.add(responses.GET, BASE + "/files/flaky", status=502)
    rsps.add(responses.GET, BASE + "/files/flaky", body=b"ok", content_type="image/webp")
    assert api.download([BASE + "/files/flaky"], tmp_path)[0].name == "flaky.webp"


def test_download_needs_urls(api, tmp_path):
    with pytest.raises(ValueError):
        api.download([], tmp_path)


# --- small pieces -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [("3", 3.0), (" 1.5 ", 1.5), ("-4", 0.0), ("soon", None),
                                             (None, None), ("nan", None), ("inf", None)])
def test_retry_after_parsing(value, expected):
    assert _retry_after(value) == expected


def test_retry_after_in_the_past_is_zero():
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@given(attempt=st.integers(0, 200), rand=st.floats(0, 1))
def test_backoff_is_bounded_and_exponential(attempt, rand):
    from sd35_twin.client import Backoff

    b = Backoff(initial=0.5, factor=2.0, maximum=8.0, jitter=0.5)
    d = b.delay(attempt, rand)
    assert 0 <= d <= 8.0
    assert d >= min(8.0, 0.5 * 2 ** min(attempt, 64)) * 0.5
    assert b.delay(attempt + 1, 0) >= b.delay(attempt, 0)


def test_transport_error_keeps_the_url_without_its_query():
    err = transport_error(refused(), "http://h/x?secret=1")
    assert isinstance(err, ConnectError) and "secret" not in str(err) and "http://h/x" in str(err)


def test_a_request_inside_wait_cannot_outlive_the_deadline(make_client, rsps, clock):
    api = make_client(timeout=(10, 120))
    rsps.add(responses.GET, STATUS(), json={"status": "SUCCESS", "download_urls": ["u"]})
    api.wait("job1", timeout=30)
    api.status("job1")
    first, second = (c.request.req_kwargs["timeout"] for c in rsps.calls)
    assert first == (10, 30) and second == (10, 120)


def test_transport_errors_keep_their_cause_for_debugging(api, rsps):
    rsps.add(responses.POST, SUBMIT, body=requests.ReadTimeout("slow"))
    with pytest.raises(client.TimeoutError) as info:
        api.submit(prompt="x")
    assert isinstance(info.value.__cause__, requests.ReadTimeout)


def test_202_accepted_is_a_pending_answer(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=202, json=PENDING)  # one observed client expects 202
    assert api.submit(prompt="x").is_pending


# --- the API's unknowns (the variants of mockserver/profiles/variants.json) ----------------------

@pytest.mark.parametrize("code", [403, 404, 410])
def test_an_expired_or_unready_download_is_image_unavailable(api, rsps, tmp_path, code):
    rsps.add(responses.GET, BASE + "/files/gone", status=code, json={"status": "FAILURE", "error": "expired"})
    with pytest.raises(client.ImageUnavailableError) as info:
        api.download([BASE + "/files/gone"], tmp_path)
    assert info.value.status_code == code and isinstance(info.value, NotFoundError)
    assert not isinstance(info.value, AuthenticationError) and len(rsps.calls) == 1   # not retried
    assert "expired" in str(info.value) and list(tmp_path.iterdir()) == []


def test_download_names_files_by_their_bytes_not_their_claims(api, rsps, tmp_path):
    # whole images, to their end markers (a cut-off one is never saved: test_client_download_faults.py)
    rsps.add(responses.GET, BASE + "/images/a.jpg", body=b"\x89PNG\r\n\x1a\nrest\x00\x00\x00\x00IEND\xaeB`\x82",
             content_type="image/jpeg")
    rsps.add(responses.GET, BASE + "/files/b", body=b"\xff\xd8\xff\xe0rest\xff\xd9", content_type="application/octet-stream")
    paths = api.download([BASE + "/images/a.jpg", BASE + "/files/b"], tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.jpg"]


@pytest.mark.parametrize("code, text", [(402, "Insufficient credits"), (403, "API-Key: has no credits left"),
                                        (429, "out of credits")])
def test_no_credits_is_credits_exhausted_and_never_retried(api, rsps, code, text):
    rsps.add(responses.POST, SUBMIT, status=code, json={"status": "FAILURE", "error": text})
    with pytest.raises(client.CreditsExhaustedError) as info:
        api.submit(prompt="x")
    assert info.value.status_code == code and text in str(info.value) and len(rsps.calls) == 1
    assert isinstance(info.value, client.APIError) and not isinstance(info.value, AuthenticationError)


def test_a_403_or_429_without_credits_in_its_text_keeps_its_meaning(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=403, json={"error": "API-Key: refused"})
    with pytest.raises(AuthenticationError):
        api.submit(prompt="x")


@pytest.mark.parametrize("key", ["error", "message", "detail"])
@pytest.mark.parametrize("code", [400, 422])
def test_a_rejection_names_its_fields_whichever_key_holds_the_text(api, rsps, key, code):
    rsps.add(responses.POST, SUBMIT, status=code, json={"status": "FAILURE", key: "samples: must be at most 2; width: x"})
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt="x")
    assert info.value.fields == ("samples", "width") and info.value.status_code == code
    assert str(info.value) == f"HTTP {code}: samples: must be at most 2; width: x"


def test_a_fastapi_422_names_its_fields(api, rsps):
    rsps.add(responses.POST, SUBMIT, status=422, json={"detail": [
        {"loc": ["body", "samples"], "msg": "must be at most 2", "type": "less_than_equal"}]})
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt="x")
    assert info.value.fields == ("samples",) and info.value.errors[0]["message"] == "must be at most 2"


@pytest.mark.parametrize("code", [200, 202])
def test_pending_with_200_or_202_then_success(api, rsps, code):
    rsps.add(responses.POST, SUBMIT, status=code, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS(), status=code, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS(), json={"status": "SUCCESS", "id": "job1", "download_urls": [BASE + "/i/1"]})
    assert api.generate(prompt="x").download_urls == (BASE + "/i/1",)
    assert len(rsps.calls) == 3


def test_success_straight_from_the_submit_is_not_polled(api, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "SUCCESS", "id": "job1", "download_urls": [BASE + "/i/1"]})
    assert api.generate(prompt="x").is_success and len(rsps.calls) == 1


@pytest.mark.parametrize("body", [{"status": "FAILURE", "error": "boom"}, {"status": "FAILURE", "message": "boom"},
                                  {"status": "FAILURE", "id": "job1", "detail": "boom"}])
def test_a_failure_with_or_without_id_and_its_text_anywhere(api, rsps, body):
    rsps.add(responses.POST, SUBMIT, json=body)
    with pytest.raises(client.JobFailedError) as info:
        api.generate(prompt="x")
    assert info.value.error == "boom" and info.value.job_id == body.get("id")
