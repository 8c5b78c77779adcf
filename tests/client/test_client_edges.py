"""The client's arguments and names, stated exactly: what generate() passes on, wait() with a plain number,
how download() names files (fallbacks, clashes, dotfiles) and tells an image by its bytes. Written against the
survivors of a mutation run (docs/mutation.md)."""

from __future__ import annotations

import json

import pytest
import requests
import responses
import urllib3.exceptions

from sd35_twin import client
from sd35_twin.client.api import _never_sent, transport_error
from sd35_twin.client import (InvalidRequestError, JobFailedError, RetryPolicy, UnexpectedResponseError,
                              WaitTimeoutError)

BASE = "https://api.test"
SUBMIT = BASE + "/sd3_5/v1"
STATUS = BASE + "/sd3_5/v1/status/job1"
PENDING = {"status": "PENDING", "id": "job1"}
PNG = b"\x89PNG\r\n\x1a\nbody\x00\x00\x00\x00IEND\xaeB`\x82"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8 \x0e\x00\x00\x00body"


# --- generate() and wait(): the arguments they pass on ------------------------------------------------

def test_generate_waits_for_its_own_timeout_not_the_clients(make_client, rsps, clock):
    api = make_client(wait_timeout=600)
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    rsps.add(responses.GET, STATUS, json=PENDING)
    start = clock.now
    with pytest.raises(WaitTimeoutError) as info:
        api.generate(prompt="x", timeout=7)
    assert (info.value.timeout, info.value.job_id, clock.now - start) == (7, "job1", 7)


def test_generate_passes_validate_on_both_ways(make_client, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "SUCCESS", "id": "job1", "download_urls": ["u"]})
    assert make_client().generate(prompt="x", samples="3", validate=False).is_success
    assert json.loads(rsps.calls[0].request.body)["samples"] == "3"
    with pytest.raises(InvalidRequestError) as info:
        make_client(validate=False).generate(prompt="x", samples="3", validate=True)
    assert info.value.client_side and len(rsps.calls) == 1


def test_generate_shows_every_status_and_raises_a_failure_from_the_submit(api, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "FAILURE", "id": "job1", "error": "nsfw"})
    seen = []
    with pytest.raises(JobFailedError) as info:
        api.generate(prompt="x", on_update=seen.append)
    assert [s.status.value for s in seen] == ["FAILURE"] and info.value.job_id == "job1"
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("timeout", [3, 3.0, 2.5])
def test_wait_takes_a_plain_number_of_seconds(api, rsps, clock, timeout):
    rsps.add(responses.GET, STATUS, json=PENDING)
    start = clock.now
    with pytest.raises(WaitTimeoutError) as info:
        api.wait("job1", timeout)
    assert info.value.timeout == timeout and clock.now - start == timeout
    assert isinstance(info.value.timeout, float)


def test_wait_without_a_timeout_takes_the_clients(make_client, rsps, clock):
    rsps.add(responses.GET, STATUS, json=PENDING)
    start = clock.now
    with pytest.raises(WaitTimeoutError) as info:
        make_client(wait_timeout=12).wait(client.JobStatus.from_body(PENDING))
    assert info.value.timeout == 12 and clock.now - start == 12


@pytest.mark.parametrize("job", ["", client.JobStatus.from_body({"status": "PENDING", "id": ""})])
def test_wait_needs_a_job_id(api, rsps, job):
    with pytest.raises(ValueError, match=r"^wait\(\) needs a job id$"):
        api.wait(job)
    assert len(rsps.calls) == 0


# --- download(): names -----------------------------------------------------------------------------------

def done(*urls: str, job_id: str = "job1") -> client.JobStatus:
    return client.JobStatus.from_body({"status": "SUCCESS", "id": job_id, "download_urls": list(urls)})


def serve(rsps, *paths: str, body: bytes = PNG) -> list[str]:
    urls = [BASE + p for p in paths]
    for url in urls:
        rsps.add(responses.GET, url, body=body, content_type="image/png")
    return urls


def test_a_url_without_a_name_falls_back_to_the_job_id_and_its_place(api, rsps, tmp_path):
    urls = serve(rsps, "/files/", "/files/?x=1")
    assert [p.name for p in api.download(done(*urls), tmp_path)] == ["job1-1.png", "job1-2.png"]


def test_without_a_job_the_fallback_is_image_n(api, rsps, tmp_path):
    urls = serve(rsps, "/a/", "/b/")
    assert [p.name for p in api.download(urls, tmp_path / "n")] == ["image-1.png", "image-2.png"]
    assert [p.name for p in api.download(done(*urls, job_id=".."), tmp_path / "d")] == ["image-1.png", "image-2.png"]
    assert [p.name for p in api.download(done(*urls, job_id="a/b c"), tmp_path / "u")] == ["a_b_c-1.png",
                                                                                          "a_b_c-2.png"]


def test_clashing_names_never_overwrite_an_earlier_file(api, rsps, tmp_path):
    urls = [BASE + p for p in ("/a/image-3", "/b/image-3_", "/c/image-3", "/d/IMAGE-3")]
    bodies = [PNG[:8] + bytes([n]) + PNG[8:] for n in range(len(urls))]  # each its own image
    for url, body in zip(urls, bodies):
        rsps.add(responses.GET, url, body=body, content_type="image/png")
    paths = api.download(urls, tmp_path)
    assert [p.name for p in paths] == ["image-3.png", "image-3_.png", "image-3__.png", "image-4.png"]
    assert [p.read_bytes() for p in paths] == bodies and len(list(tmp_path.iterdir())) == 4


def test_a_dotfile_name_is_saved_visible_and_unsafe_characters_replaced(api, rsps, tmp_path):
    urls = serve(rsps, "/files/.hidden.png", "/files/..x.png", "/files/a%20b c.jpeg", "/files/tok?sig=1")
    names = [p.name for p in api.download(urls, tmp_path)]
    assert names == ["hidden.png", "x.png", "a_20b_c.png", "tok.png"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # nor any .part left behind


def test_a_long_name_is_cut_to_120_characters(api, rsps, tmp_path):
    [url] = serve(rsps, "/files/" + "n" * 300 + ".png")
    assert [p.name for p in api.download([url], tmp_path)] == ["n" * 120 + ".png"]


# --- download(): what an image is, by its bytes, then its Content-Type ------------------------------------

@pytest.mark.parametrize("body,ctype,ext", [
    (WEBP, "application/octet-stream", ".webp"),
    (WEBP, "image/png", ".webp"),
    (b"RIFF\x1a\x00\x00\x00WAVEfmt ", "image/png", ".png"),          # RIFF, but not WebP
    (b"WEBP\x1a\x00\x00\x00RIFFVP8 ", "image/jpeg", ".jpg"),          # the marks in the wrong places
    (b"GIF87a....", "application/octet-stream", ".gif"),
    (b"GIF89a....", "text/plain", ".gif"),
    (b"????", "IMAGE/PNG; charset=binary", ".png"),
    (b"????", "image/jpg", ".jpg"),
    (b"????", "image/avif", ".avif"),
    (b"????", "image/svg+xml", ".svg"),
    (b"????", "image/x-made-up-kind", ".x-made-up-"),
])
def test_an_image_is_named_by_its_bytes_else_its_content_type(api, rsps, tmp_path, body, ctype, ext):
    rsps.add(responses.GET, BASE + "/files/f", body=body, content_type=ctype)
    [path] = api.download([BASE + "/files/f"], tmp_path)
    assert (path.name, path.read_bytes()) == ("f" + ext, body)


@pytest.mark.parametrize("ctype,said", [("text/html; charset=utf-8", "text/html"), ("", "no content type")])
def test_a_download_that_is_not_an_image_says_what_it_was(api, rsps, tmp_path, ctype, said):
    rsps.add(responses.GET, BASE + "/files/x?sig=secret", body=b"<html>", content_type=ctype or None)
    with pytest.raises(UnexpectedResponseError) as info:
        api.download(done(BASE + "/files/x?sig=secret"), tmp_path)
    assert str(info.value).startswith(f"download {BASE}/files/x answered {said}, not an image")
    assert info.value.job_id == "job1" and info.value.status_code == 200 and list(tmp_path.iterdir()) == []


# --- what every call sends ----------------------------------------------------------------------------------

def test_the_headers_of_each_kind_of_call(api, rsps, tmp_path):
    rsps.add(responses.POST, SUBMIT, json={"status": "SUCCESS", "id": "job1", "download_urls": [BASE + "/f/a"]})
    rsps.add(responses.GET, STATUS, json=PENDING)
    rsps.add(responses.GET, BASE + "/f/a", body=PNG, content_type="image/png")
    api.download(api.submit(prompt="x"), tmp_path)
    api.status("job1")
    submit, download, status = (c.request.headers for c in rsps.calls)
    mine = ("Accept", "User-Agent", "Content-Type", "API-Key")
    assert {k: submit.get(k) for k in mine} == {"Accept": "application/json", "User-Agent": "sd35-twin-client/0.1",
                                               "Content-Type": "application/json", "API-Key": "test-key"}
    assert {k: status.get(k) for k in mine} == {"Accept": "application/json", "User-Agent": "sd35-twin-client/0.1",
                                               "Content-Type": None, "API-Key": "test-key"}
    assert {k: download.get(k) for k in mine} == {"Accept": "image/*, */*;q=0.5", "User-Agent": "sd35-twin-client/0.1",
                                                 "Content-Type": None, "API-Key": None}
    assert [c.request.req_kwargs["timeout"] for c in rsps.calls] == [(10.0, 120.0)] * 3


def test_a_download_follows_a_redirect_an_api_call_does_not(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/f/signed", status=302, headers={"Location": BASE + "/store/real"})
    rsps.add(responses.GET, BASE + "/store/real", body=PNG, content_type="image/png")
    [path] = api.download([BASE + "/f/signed"], tmp_path)
    assert (path.name, path.read_bytes()) == ("signed.png", PNG)
    rsps.add(responses.GET, STATUS, status=302, headers={"Location": BASE + "/elsewhere"})
    with pytest.raises(client.APIError) as info:
        api.status("job1")
    assert str(info.value) == (f"HTTP 302: redirected to {BASE}/elsewhere; not followed (set base_url to the final "
                               "address)")
    assert info.value.status_code == 302


def test_the_defaults(monkeypatch):
    monkeypatch.delenv("IMAGEPIPELINE_API_KEY", raising=False)
    monkeypatch.delenv("IMAGEPIPELINE_BASE_URL", raising=False)
    with client.ImagePipelineClient() as api:
        assert (api.timeout, api.wait_timeout, api.validate, api.poll) == ((10.0, 120.0), 600.0, True,
                                                                            client.api.DEFAULT_POLL)
        assert api.retry == client.RetryPolicy(status_attempts=5, submit_attempts=3, max_retry_after=60.0)
        assert repr(api) == "ImagePipelineClient(base_url='https://api.imagepipeline.io', key=none)"
    with client.ImagePipelineClient(api_key="secret", base_url="http://h:1/") as api:
        assert repr(api) == "ImagePipelineClient(base_url='http://h:1', key=set)"
    with client.ImagePipelineClient(api_key="", base_url="http://h") as api:
        assert repr(api).endswith("key=none)")


@pytest.mark.parametrize("backoff,attempt,rand,delay", [
    (client.Backoff(), 0, 0.0, 0.5), (client.Backoff(), 1, 0.0, 1.0), (client.Backoff(), 4, 0.0, 8.0),
    (client.Backoff(), 9, 0.0, 8.0), (client.Backoff(), 0, 1.0, 0.25), (client.Backoff(), 500, 0.5, 6.0),
    (client.api.DEFAULT_POLL, 0, 0.0, 1.0), (client.api.DEFAULT_POLL, 1, 0.0, 1.5),
    (client.api.DEFAULT_POLL, 2, 1.0, 2.25 * 0.7), (client.api.DEFAULT_POLL, 9, 0.0, 10.0),
    (client.Backoff(jitter=2.0), 0, 1.0, 0.0),
])
def test_backoff_delays_exactly(backoff, attempt, rand, delay):
    assert backoff.delay(attempt, rand) == pytest.approx(delay)


@pytest.mark.parametrize("timeout,wait,expected", [
    (5, 30, (5, 5)), ((3, None), 30, (3, 30)), ((10, 120), 0.2, (0.5, 0.5)), ((10, 120), 60, (10, 60)),
])
def test_a_request_inside_wait_is_timed_to_its_deadline(make_client, rsps, timeout, wait, expected):
    rsps.add(responses.GET, STATUS, json={"status": "SUCCESS", "id": "job1", "download_urls": ["u"]})
    make_client(timeout=timeout).wait("job1", timeout=wait)
    assert rsps.calls[0].request.req_kwargs["timeout"] == expected


# --- refusals before sending ------------------------------------------------------------------------------

@pytest.mark.parametrize("job_id,message", [("", "must not be empty"), (".", "must not be a dot-segment"),
                                            ("..", "must not be a dot-segment"),
                                            ("\udc00", "must be encodable as UTF-8")])
def test_a_job_id_that_cannot_be_one_path_segment(api, rsps, job_id, message):
    with pytest.raises(InvalidRequestError) as info:
        api.status(job_id)
    assert str(info.value).startswith(f"id: {message}") and info.value.client_side
    assert info.value.errors == [{"field": "id", "rule": "format", "message": message}] and len(rsps.calls) == 0


def test_a_job_id_must_be_a_string(api):
    with pytest.raises(TypeError, match="^job id must be a string, got int$"):
        api.status(5)


def test_a_body_json_cannot_encode_is_refused_before_sending(api, rsps):
    with pytest.raises(InvalidRequestError) as info:
        api.submit(prompt="x", batch_id={1, 2}, validate=False)
    message = str(info.value)
    assert message.startswith("body: cannot be encoded as JSON (") and info.value.client_side
    assert info.value.errors == [{"field": "body", "rule": "json", "message": message[6:]}] and len(rsps.calls) == 0


def test_build_request_says_what_it_needs(api):
    with pytest.raises(TypeError, match=r"^a request object or prompt=\.\.\. is required$"):
        api.build_request(samples=1)
    with pytest.raises(TypeError, match="^expected a GenerationRequest, got dict$"):
        api.build_request({"prompt": "x"})
    base = api.build_request(prompt="x", samples=1)
    assert api.build_request(base) is base
    assert api.build_request(base, samples=2) == client.GenerationRequest(prompt="x", samples=2)


# --- transport errors: which, and what they say ---------------------------------------------------------------

def _refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))


@pytest.mark.parametrize("exc,kind,says", [
    (requests.exceptions.ConnectTimeout("slow"), client.ConnectTimeoutError, "timed out connecting"),
    (requests.exceptions.SSLError("bad cert"), client.TransportError, "TLS failure"),
    (requests.exceptions.ReadTimeout("slow"), client.TimeoutError, "no answer in time"),
    (_refused(), client.ConnectError, "could not connect"),
    (requests.ConnectionError("reset"), client.ConnectionLostError, "connection lost"),
    (requests.exceptions.ChunkedEncodingError("cut"), client.ConnectionLostError, "answer cut off"),
    (requests.exceptions.ContentDecodingError("gz"), client.ConnectionLostError, "answer cut off"),
    (requests.exceptions.InvalidURL("x"), client.TransportError, "request failed"),
])
def test_each_transport_error_is_its_kind_and_says_where(exc, kind, says):
    err = transport_error(exc, "http://h/p?sig=secret")
    assert type(err) is kind
    assert str(err) == f"{says} (http://h/p): {type(exc).__name__}: {exc}"
    assert str(transport_error(exc)) == f"{says}: {type(exc).__name__}: {exc}"


@pytest.mark.parametrize("cause,never_sent", [
    (urllib3.exceptions.NewConnectionError(None, "x"), True),
    (ConnectionRefusedError(111, "refused"), True),
    (urllib3.exceptions.ConnectTimeoutError("slow"), True),
    (urllib3.exceptions.NameResolutionError("h", None, OSError("no such host")), True),
    (urllib3.exceptions.ProtocolError("aborted", ConnectionRefusedError()), False),  # it had connected
    (OSError("something else"), False),
])
def test_never_sent_reads_the_whole_chain(cause, never_sent):
    as_arg = requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", cause))
    as_cause = requests.ConnectionError("outer")
    as_cause.__cause__ = cause
    as_context = requests.ConnectionError("outer")
    as_context.__context__ = OSError("middle")
    as_context.__context__.__context__ = cause
    assert [_never_sent(e) for e in (as_arg, as_cause, as_context)] == [never_sent] * 3


def test_never_sent_survives_a_cycle():
    a, b = requests.ConnectionError("a"), OSError("b")
    a.__cause__, b.__context__ = b, a
    assert _never_sent(a) is False


# --- answers that are not what they should be ----------------------------------------------------------------

def test_a_2xx_that_is_not_json_is_quoted_cut_to_200_characters(api, rsps):
    rsps.add(responses.POST, SUBMIT, body="<" + "x" * 300, status=200)
    with pytest.raises(UnexpectedResponseError) as info:
        api.submit(prompt="x")
    assert str(info.value) == "HTTP 200 with a body that is not JSON: " + repr("<" + "x" * 199 + "...")
    assert info.value.body == "<" + "x" * 300 and len(rsps.calls) == 1


@pytest.mark.parametrize("body,problem", [
    (PNG[:-3], "the PNG ends before its IEND chunk: the image is incomplete"),
    (b"\xff\xd8\xff\xe0body", "the JPEG ends before its end-of-image marker: the image is incomplete"),
])
def test_an_image_that_ends_early_is_retried_then_named_and_not_saved(api, rsps, clock, tmp_path, body, problem):
    rsps.add(responses.GET, BASE + "/f/a?sig=1", body=body, content_type="image/png")
    with pytest.raises(UnexpectedResponseError) as info:
        api.download(done(BASE + "/f/a?sig=1"), tmp_path)
    assert str(info.value) == f"download {BASE}/f/a: {problem} ({len(body)} bytes); not saved"
    assert (info.value.status_code, info.value.job_id) == (200, "job1")
    assert len(rsps.calls) == 5 and clock.sleeps == [0.5, 1.0, 2.0, 4.0] and list(tmp_path.iterdir()) == []


def test_a_jpeg_with_padding_after_its_end_marker_is_whole(api, rsps, tmp_path):
    body = b"\xff\xd8\xff\xe0body\xff\xd9\x00\x00\r\n"
    rsps.add(responses.GET, BASE + "/f/a", body=body, content_type="image/jpeg")
    [path] = api.download([BASE + "/f/a"], tmp_path / "new" / "dir")
    assert (path.name, path.read_bytes(), len(rsps.calls)) == ("a.jpg", body, 1)


def test_a_failed_write_leaves_no_part_file(api, rsps, tmp_path, monkeypatch):
    rsps.add(responses.GET, BASE + "/f/a", body=PNG, content_type="image/png")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(client.api.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        api.download([BASE + "/f/a"], tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- closing what a first mutation run of api.py left --------------------------------------------------------

def test_generate_tags_a_client_side_refusal_after_the_submit_with_the_job_id(api, rsps):
    """The server answered an id no path can carry: the job exists all the same, so the error names it."""
    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING", "id": ".."})
    with pytest.raises(InvalidRequestError) as info:
        api.generate(prompt="x")
    assert info.value.job_id == ".." and len(rsps.calls) == 1


def test_a_url_without_a_path_falls_back_and_names_starting_with_x_keep_it(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/", body=PNG, content_type="image/png")
    rsps.add(responses.GET, BASE + "/f/Xray.png", body=PNG, content_type="image/png")
    assert [p.name for p in api.download([BASE, BASE + "/f/Xray.png"], tmp_path)] == ["image-1.png", "Xray.png"]


def test_only_padding_may_follow_a_jpegs_end_marker(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/f/a", body=b"\xff\xd8\xff\xe0body\xff\xd9XX", content_type="image/jpeg")
    with pytest.raises(UnexpectedResponseError, match="end-of-image marker"):
        api.download([BASE + "/f/a"], tmp_path)


def test_a_non_image_keeps_the_start_of_its_body(api, rsps, tmp_path):
    rsps.add(responses.GET, BASE + "/f/a", body="<" * 300, content_type="text/html")
    with pytest.raises(UnexpectedResponseError) as info:
        api.download([BASE + "/f/a"], tmp_path)
    assert info.value.body == "<" * 200 + "..."


@pytest.mark.parametrize("body", ["<html>", "<" * 200])
def test_a_short_non_image_body_is_kept_whole(api, rsps, tmp_path, body):
    rsps.add(responses.GET, BASE + "/f/a", body=body, content_type="text/html")
    with pytest.raises(UnexpectedResponseError) as info:
        api.download([BASE + "/f/a"], tmp_path)
    assert info.value.body == body


def test_a_write_that_fails_before_the_part_exists_raises_its_own_error(api, rsps, tmp_path, monkeypatch):
    rsps.add(responses.GET, BASE + "/f/a", body=PNG, content_type="image/png")

    def full_disk(self, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(client.api.Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match="No space left") as info:
        api.download([BASE + "/f/a"], tmp_path)
    assert type(info.value) is OSError and list(tmp_path.iterdir()) == []


def test_nothing_to_download_says_so(api, rsps, tmp_path):
    with pytest.raises(ValueError, match="^nothing to download: no download_urls$"):
        api.download([], tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the retry rule at its edges ------------------------------------------------------------------------------

@pytest.mark.parametrize("code,retried", [(429, True), (500, True), (599, True), (499, False), (404, False)])
def test_which_status_answers_a_status_read_retries(api, rsps, clock, code, retried):
    rsps.add(responses.GET, STATUS, status=code, json={"status": "FAILURE", "error": "x"})
    rsps.add(responses.GET, STATUS, json=PENDING)
    if retried:
        assert api.status("job1").is_pending and clock.sleeps == [0.5]
    else:
        with pytest.raises(client.ImagePipelineError) as info:
            api.status("job1")
        assert info.value.status_code == code and len(rsps.calls) == 1


@pytest.mark.parametrize("code,retried", [(429, True), (503, True), (500, False), (502, False), (504, False)])
def test_which_status_answers_a_submit_retries(api, rsps, clock, code, retried):
    rsps.add(responses.POST, SUBMIT, status=code, json={"status": "FAILURE", "error": "x"})
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    if retried:
        assert api.submit(prompt="x").is_pending and len(rsps.calls) == 2
    else:
        with pytest.raises(client.ImagePipelineError):
            api.submit(prompt="x")
        assert len(rsps.calls) == 1


def test_a_retry_after_equal_to_the_cap_is_slept(make_client, rsps, clock):
    api = make_client(retry=RetryPolicy(max_retry_after=30))
    rsps.add(responses.GET, STATUS, status=429, headers={"Retry-After": "30"})
    rsps.add(responses.GET, STATUS, json=PENDING)
    assert api.status("job1").is_pending and clock.sleeps == [30.0]


def test_a_retry_that_would_end_exactly_at_the_deadline_is_made(api, rsps, clock):
    rsps.add(responses.GET, STATUS, status=429, headers={"Retry-After": "10"})
    rsps.add(responses.GET, STATUS, json={"status": "SUCCESS", "id": "job1", "download_urls": ["u"]})
    assert api.wait("job1", timeout=10).is_success and clock.sleeps == [10.0]


def test_each_try_has_its_own_backoff_step_and_the_budget_is_counted_exactly(make_client, rsps, clock):
    api = make_client(retry=RetryPolicy(status_attempts=3, submit_attempts=2))
    rsps.add(responses.GET, STATUS, status=502)
    with pytest.raises(client.ServerError):
        api.status("job1")
    assert (len(rsps.calls), clock.sleeps) == (3, [0.5, 1.0])
    rsps.add(responses.POST, SUBMIT, status=503)
    with pytest.raises(client.ServerError):
        api.submit(prompt="x")
    assert (len(rsps.calls), clock.sleeps) == (5, [0.5, 1.0, 0.5])


def test_close_closes_the_pooled_sockets_at_once(mock):
    """Session.close() alone only forgets its pools: the keep-alive socket would stay open until a GC."""
    api = client.ImagePipelineClient(api_key="test-key", base_url=mock.url)
    mock.control.health()
    job = api.submit(prompt="x", negative_prompt="", samples=1, width=256, height=256)
    [pool] = [p for p in (api.session.adapters["http://"].poolmanager.pools.get(k)
                          for k in api.session.adapters["http://"].poolmanager.pools.keys()) if p is not None]
    [connection] = [c for c in pool.pool.queue if c is not None]  # the queue holds None for unopened slots
    assert job.id and connection.sock is not None
    api.close()
    assert pool.pool is None and connection.sock is None


def test_never_sent_walks_past_a_cause_it_has_already_seen():
    shared = OSError("seen twice")
    top = requests.ConnectionError(ConnectionRefusedError(111, "refused"))
    top.__cause__ = top.__context__ = shared
    assert _never_sent(top) is True


def test_close_never_fails_on_an_adapter_without_pools_and_still_closes_the_others(mock):
    class Bare(requests.adapters.BaseAdapter):
        def send(self, *args, **kwargs):
            raise NotImplementedError

        def close(self):
            pass

    class PoolLess(requests.adapters.HTTPAdapter):
        def close(self):
            pass
    api = client.ImagePipelineClient(api_key="test-key", base_url=mock.url)
    api.submit(prompt="x", negative_prompt="", samples=1, width=256, height=256)
    manager = api.session.adapters["http://"].poolmanager
    [pool] = [manager.pools.get(k) for k in manager.pools.keys()]
    api.session.mount("bare://", Bare())
    pool_less = PoolLess()
    del pool_less.poolmanager.pools
    api.session.mount("poolless://", pool_less)
    api.close()  # best effort: closing never fails
    assert pool.pool is None


def test_waiting_on_a_failure_built_without_text_raises_it_with_empty_text(api, rsps):
    failed = client.JobStatus(status=client.JobState.FAILURE, id="j9")
    with pytest.raises(JobFailedError) as info:
        api.wait(failed)
    assert (info.value.error, str(info.value), info.value.status) == ("", "job j9 failed: ", failed)
    assert len(rsps.calls) == 0


def test_an_unusable_status_answer_names_its_http_status(api, rsps):
    rsps.add(responses.GET, STATUS, json={"status": "DONE", "id": "job1"}, status=200)
    with pytest.raises(UnexpectedResponseError) as info:
        api.status("job1")
    assert (info.value.status_code, info.value.job_id) == (200, "job1")


@pytest.mark.parametrize("job_id", ["X", "X.X", "x.."])
def test_ids_with_dots_that_are_not_dot_segments_are_sent(api, rsps, job_id):
    rsps.add(responses.GET, f"{BASE}/sd3_5/v1/status/{job_id}", json={"status": "PENDING", "id": job_id})
    assert api.status(job_id).id == job_id
