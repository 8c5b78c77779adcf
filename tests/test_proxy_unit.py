"""``mockserver.proxy`` in-process, fast: the proxy app through Flask's test client, its upstream answered by
``responses`` (no socket, no sleep), and its parts (recording, report, download map, option types, ``main``) one at
a time. tests/test_proxy.py drives the same behaviours over real HTTP with hostile upstreams; these pin each answer,
record and message exactly, so a changed line in proxy.py is noticed (docs/mutation.md)."""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import random
import signal
import stat
import threading
import urllib.request

import pytest
import requests
import responses
import urllib3
from PIL import Image

from sd35_twin.mockserver import proxy as proxy_module
from sd35_twin.mockserver.evidence import Redactor
from sd35_twin.mockserver.proxy import (DEFAULT_UPSTREAM, DRIFT_HEADER, MAX_ANSWER_BYTES, MAX_REQUEST_BYTES,
                                        ProxySettings, Recording, ShadowProxy, UpstreamError, _chunks, _failure,
                                        _image, _json, _loopback_origin, _page, _reason, _seconds, _upstream,
                                        _writable, build_parser, create_proxy_app, main, private_file, start)

UP = "http://up.test"
KEY = "unit-key-5be1c0ffee"
HEADERS = {"API-Key": KEY, "Content-Type": "application/json"}
BODY = b'{"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1}'
PENDING = {"status": "PENDING", "id": "job-1"}


@pytest.fixture
def up():
    """The upstream, answered by ``responses``: nothing leaves the process."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make(tmp_path=None, **settings):
    """A proxy (recording to ``tmp_path/rec.jsonl`` when given) and a test client of its app."""
    if tmp_path is not None:
        settings.setdefault("record", str(tmp_path / "rec.jsonl"))
    proxy = ShadowProxy(ProxySettings(upstream=UP, **settings))
    proxy.base_url = "http://proxy.test"
    return proxy, create_proxy_app(proxy).test_client()


def recorded(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "rec.jsonl").read_text("utf-8").splitlines()]


def error(resp) -> tuple[int, list[dict], str]:
    body = resp.get_json()
    assert body["status"] == "FAILURE" and resp.headers["Content-Type"] == "application/json"
    return resp.status_code, body["errors"], body["error"]


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


# -- forwarding: what the upstream receives, what the app gets back, what is recorded --------------------------

def test_a_submit_goes_upstream_as_sent_and_its_answer_comes_back_unchanged(up, tmp_path):
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=b'{"status":"PENDING","id":"job-1"}', status=200,
           content_type="application/json; charset=utf-8", headers={"X-Upstream": "yes", "Upgrade": "h2c"})
    proxy, app = make(tmp_path)
    resp = app.post("/sd3_5/v1?trace=1&x=%20", data=BODY,
                    headers={**HEADERS, "X-App": "mine", "Proxy-Authorization": "Basic c2VjcmV0", "TE": "trailers"})
    assert resp.status_code == 200 and resp.data == b'{"status":"PENDING","id":"job-1"}'
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8" and resp.headers["X-Upstream"] == "yes"
    assert "Upgrade" not in resp.headers
    sent = up.calls[0].request
    assert sent.method == "POST" and sent.url == f"{UP}/sd3_5/v1?trace=1&x=%20" and sent.body == BODY
    assert sent.headers["API-Key"] == KEY and sent.headers["X-App"] == "mine"
    assert sent.headers["Content-Type"] == "application/json" and sent.headers["Accept-Encoding"] == "identity"
    assert "Proxy-Authorization" not in sent.headers and "TE" not in sent.headers
    assert (proxy.forwarded_submits, proxy.refused_submits) == (1, 0)
    [entry] = recorded(tmp_path)
    assert entry["kind"] == "submit" and entry["at"] > 0 and entry["elapsed_ms"] >= 0 and "error" not in entry
    assert entry["request"]["method"] == "POST" and entry["request"]["path"] == "/sd3_5/v1?trace=1&x=%20"
    assert entry["request"]["bytes"] == len(BODY) and entry["request"]["body"]["prompt"] == "a fox"
    assert entry["request"]["headers"]["Api-Key"] == "[REDACTED]" and entry["request"]["headers"]["X-App"] == "mine"
    assert entry["response"]["status"] == 200 and entry["response"]["body"] == PENDING
    assert entry["response"]["headers"]["X-Upstream"] == "yes"
    assert {"row": "L15", "held": True, "text": entry["readings"][0]["text"]} in entry["readings"]
    assert KEY not in (tmp_path / "rec.jsonl").read_text("utf-8")


def test_a_status_read_and_another_method_go_upstream_and_are_recorded_by_kind(up, tmp_path):
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json={"status": "SUCCESS", "id": "job-1",
                                                                "download_urls": ["https://cdn.example/a.png"]})
    up.add(responses.GET, f"{UP}/sd3_5/v1", json={"detail": "Method Not Allowed"}, status=405)
    proxy, app = make(tmp_path, max_jobs=0)
    status = app.get("/sd3_5/v1/status/job-1", headers={"API-Key": KEY})
    assert status.status_code == 200 and status.get_json()["download_urls"] == ["https://cdn.example/a.png"]
    other = app.get("/sd3_5/v1", headers={"API-Key": KEY})     # not a submit: the guard (0 jobs) lets it through
    assert other.status_code == 405 and other.get_json() == {"detail": "Method Not Allowed"}
    assert [c.request.body for c in up.calls] == [None, None]
    kinds = [(e["kind"], e["request"]["path"], e["request"]["bytes"], e["request"]["body"]) for e in recorded(tmp_path)]
    assert kinds == [("status", "/sd3_5/v1/status/job-1", 0, None), ("other", "/sd3_5/v1", 0, None)]
    assert (proxy.forwarded_submits, proxy.refused_submits) == (0, 0)


def test_a_job_id_is_quoted_into_the_upstream_path_and_an_id_it_refuses_never_leaves(up):
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/a%3Ab.c", json={"status": "PENDING", "id": "a:b.c"})
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/{'x' * 200}", json={"status": "PENDING", "id": "x" * 200})
    _, app = make()
    assert app.get("/sd3_5/v1/status/a:b.c", headers={"API-Key": KEY}).status_code == 200
    assert up.calls[0].request.url == f"{UP}/sd3_5/v1/status/a%3Ab.c"
    assert app.get(f"/sd3_5/v1/status/{'x' * 200}").status_code == 200
    for job_id in ("..", ".", "a%20b", "x" * 201):
        refused = app.get(f"/sd3_5/v1/status/{job_id}")
        assert error(refused) == (404, [{"field": "id", "rule": "pattern", "message": "is not a job id this proxy "
                                         "forwards (letters, digits, . _ : -, not dots alone)"}],
                                  "id: is not a job id this proxy forwards (letters, digits, . _ : -, not dots alone)")
    assert len(up.calls) == 2


def test_a_head_request_with_an_empty_answer_is_no_json_failure(up, tmp_path):
    up.add(responses.HEAD, f"{UP}/sd3_5/v1/status/job-1", body=b"", status=200, content_type="application/json")
    _, app = make(tmp_path)
    resp = app.head("/sd3_5/v1/status/job-1")
    assert resp.status_code == 200 and resp.data == b""
    assert recorded(tmp_path)[0]["response"]["body"] is None


def test_an_answer_without_a_content_type_is_sent_as_octet_stream(up):
    up.add(responses.HEAD, f"{UP}/sd3_5/v1/status/job-1", body=b"", status=204, content_type=None)
    _, app = make()
    resp = app.head("/sd3_5/v1/status/job-1")
    assert resp.status_code == 204 and resp.headers["Content-Type"] == "application/octet-stream"


# -- the spend guard ---------------------------------------------------------------------------------------------

def test_the_spend_guard_refuses_the_submit_after_n_with_a_402_that_never_reaches_the_upstream(up):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING)
    proxy, app = make(max_jobs=2)
    answers = [app.post("/sd3_5/v1", data=BODY, headers=HEADERS).status_code for _ in range(2)]
    refused = app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    message = ("the proxy's spend guard: 2 submits were forwarded already (sd35-mock proxy --max-jobs); this one "
               "did not reach the upstream")
    assert answers == [200, 200] and error(refused) == (402, [{"field": "--max-jobs", "rule": "spend",
                                                                 "message": message}], f"--max-jobs: {message}")
    assert len(up.calls) == 2 and (proxy.forwarded_submits, proxy.refused_submits) == (2, 1)
    assert proxy.take_submit() is False and proxy.refused_submits == 2


# -- a failing upstream: 502 or 504 naming upstream, recorded --------------------------------------------------

def upstream_error(resp, status, rule, message):
    assert error(resp) == (status, [{"field": "upstream", "rule": rule, "message": f"{UP} {message}"}],
                           f"upstream: {UP} {message}")


def test_a_redirect_is_never_followed(up, tmp_path):
    up.add(responses.POST, f"{UP}/sd3_5/v1", status=302, body=b"", headers={"Location": "http://evil.invalid/x?k=1"})
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", status=301, body=b"moved")
    _, app = make(tmp_path)
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 502, "redirect",
                   "redirected to evil.invalid: not followed")
    upstream_error(app.get("/sd3_5/v1/status/job-1"), 502, "redirect", "redirected to (no Location): not followed")
    assert len(up.calls) == 2
    first, second = recorded(tmp_path)
    assert first["error"] == "upstream: redirected to evil.invalid: not followed"
    assert first["response"]["status"] == 302
    assert first["response"]["headers"]["Location"] == "http://evil.invalid/x?k=1"
    assert second["response"]["body"] == "moved" and "readings" not in second


@pytest.mark.parametrize("content_type, body, shown, kept", [
    ("text/html; charset=utf-8", b"<html>502 Bad Gateway</html>", "text/html", "<html>502 Bad Gateway</html>"),
    ("application/json", b'{"status": ', "application/json", '{"status": '),
    (None, b"plain words", "no content type", "plain words"),
    ("application/json", b'"a string"', "application/json", "a string"),
])
def test_an_answer_that_is_no_json_object_is_a_502(up, tmp_path, content_type, body, shown, kept):
    up.add(responses.POST, f"{UP}/sd3_5/v1", status=503, body=body, content_type=content_type)
    _, app = make(tmp_path)
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 502, "json",
                   f"answered HTTP 503 {shown}, not JSON")
    [entry] = recorded(tmp_path)
    assert entry["response"]["status"] == 503 and entry["response"]["body"] == kept     # what it sent is kept


def test_a_list_is_an_answer_the_app_gets(up):
    up.add(responses.POST, f"{UP}/sd3_5/v1", status=200, json=[1, 2])
    _, app = make()
    assert app.post("/sd3_5/v1", data=BODY, headers=HEADERS).get_json() == [1, 2]


@pytest.mark.parametrize("raised, status, rule, message", [
    (requests.ConnectTimeout("slow"), 504, "timeout", "did not answer within 2.5 s"),
    (requests.ReadTimeout("slow"), 504, "timeout", "did not answer within 2.5 s"),
    (requests.ConnectionError("refused"), 502, "reachable",
     "could not be reached, or closed the connection (ConnectionError)"),
    (requests.ConnectionError(urllib3.exceptions.NewConnectionError(None, "refused")), 502, "reachable",
     "could not be reached, or closed the connection (ConnectionError: NewConnectionError)"),
])
def test_an_upstream_that_cannot_be_reached_or_does_not_answer(up, tmp_path, raised, status, rule, message):
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", body=raised)
    _, app = make(tmp_path, timeout=2.5)
    upstream_error(app.get("/sd3_5/v1/status/job-1", headers={"API-Key": KEY}), status, rule, message)
    [entry] = recorded(tmp_path)
    assert entry["error"] == f"upstream: {message}" and "response" not in entry


def test_the_connect_timeout_is_at_most_ten_seconds_and_the_read_timeout_the_whole(up, monkeypatch):
    seen = []
    real = requests.Session.request

    def spy(self, *args, **kwargs):
        seen.append(kwargs["timeout"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json=PENDING)
    for timeout in (2.5, 60.0):
        _, app = make(timeout=timeout)
        app.get("/sd3_5/v1/status/job-1")
    assert seen == [(2.5, 2.5), (10.0, 60.0)]


def test_an_answer_of_exactly_the_limit_is_taken_and_one_byte_more_is_a_502(up, tmp_path):
    exact = b'["' + b"x" * (MAX_ANSWER_BYTES - 4) + b'"]'
    assert len(exact) == MAX_ANSWER_BYTES and isinstance(json.loads(exact), list)
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=exact, content_type="application/json")
    _, app = make(tmp_path)
    assert app.post("/sd3_5/v1", data=BODY, headers=HEADERS).data == exact
    up.replace(responses.POST, f"{UP}/sd3_5/v1", body=exact + b" ", content_type="application/json")
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 502, "maxLength",
                   f"answered more than {MAX_ANSWER_BYTES} bytes")
    entry = recorded(tmp_path)[-1]
    assert entry["response"]["status"] == 200 and entry["response"]["body"] == exact[:4096].decode()
    assert entry["response"]["headers"]["Content-Type"] == "application/json"


class Clock:
    """``time`` as proxy.py reads it, moved only by the upstream's reads."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return 1_700_000_000.12345


class Stream(io.RawIOBase):
    """An answer's body read a piece at a time; each read moves the clock, and ``fail`` is raised when the pieces
    run out (a connection broken off) if given."""

    def __init__(self, pieces, clock=None, step=0.0, fail=None):
        self.pieces, self.clock, self.step, self.fail = list(pieces), clock, step, fail

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.clock is not None:
            self.clock.now += self.step
        if not self.pieces:
            if self.fail is not None:
                raise self.fail
            return 0
        piece = self.pieces.pop(0)
        buffer[:len(piece)] = piece
        return len(piece)


def stream(*args, **kwargs) -> io.BufferedReader:
    return io.BufferedReader(Stream(*args, **kwargs))   # the body type responses streams as it is


def test_an_answer_still_arriving_at_the_deadline_is_a_504_and_one_done_by_then_is_taken(up, tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(proxy_module, "time", clock)
    _, app = make(tmp_path, timeout=2.0)
    # three reads of 1 s each: the first piece arrives at +1 s, the second at +2 s (the deadline), the end at +3 s
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=stream([b'{"status":"PEND', b'ING","id":"j"}'], clock, 1.0),
           content_type="application/json")
    assert json.loads(app.post("/sd3_5/v1", data=BODY, headers=HEADERS).data) == {"status": "PENDING", "id": "j"}
    # the third piece arrives at +3 s, past the deadline: a 504, though it was the last
    up.replace(responses.POST, f"{UP}/sd3_5/v1", body=stream([b'{"a":', b"1", b"}"], clock, 1.0),
               content_type="application/json")
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 504, "timeout",
                   "did not finish its answer within 2 s")
    entry = recorded(tmp_path)[-1]
    assert entry["response"]["status"] == 200 and entry["response"]["body"] == {"a": 1}
    # what is kept of an answer cut off by the deadline: its first 4096 bytes
    up.replace(responses.POST, f"{UP}/sd3_5/v1", body=stream([b"y" * 3000, b"z" * 3000], clock, 2.0),
               content_type="text/plain")
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 504, "timeout",
                   "did not finish its answer within 2 s")
    assert recorded(tmp_path)[-1]["response"]["body"] == "y" * 3000 + "z" * 1096
    assert [(e["at"], e["elapsed_ms"]) for e in recorded(tmp_path)[:2]] == [(1_700_000_000.123, 3000.0)] * 2


@pytest.mark.parametrize("fail, status, rule, message", [
    (ConnectionResetError("reset by peer"), 502, "complete", "broke off its answer (ProtocolError)"),
    (TimeoutError("timed out"), 504, "timeout", "did not finish its answer within 3 s"),
])
def test_an_answer_broken_off_is_a_502_and_one_that_times_out_a_504(up, tmp_path, fail, status, rule, message):
    sent = b'{"status":' + b" " * 5000
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=stream([sent[:3000], sent[3000:]], fail=fail),
           content_type="application/json", headers={"X-Up": "1"})
    _, app = make(tmp_path, timeout=3.0)
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), status, rule, message)
    entry = recorded(tmp_path)[-1]
    assert entry["response"]["body"] == sent[:4096].decode() and entry["error"] == f"upstream: {message}"
    assert entry["response"]["status"] == 200 and entry["response"]["headers"]["X-Up"] == "1"


def test_an_answer_broken_off_after_the_deadline_is_a_504(up, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(proxy_module, "time", clock)
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=stream([], clock, 5.0, fail=ConnectionResetError("reset")),
           content_type="application/json")
    _, app = make(timeout=3.0)
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 504, "timeout",
                   "did not finish its answer within 3 s")


def test_a_failure_is_logged_with_its_path_and_without_the_key(up, caplog):
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/{KEY}", body=requests.ConnectionError("no"))
    _, app = make()
    with caplog.at_level(logging.INFO, logger="sd35_twin.proxy"):
        app.get(f"/sd3_5/v1/status/{KEY}", headers={"API-Key": KEY})
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "GET /sd3_5/v1/status/[REDACTED] -> 502 upstream could not be reached, or closed the "
                    "connection (ConnectionError)")]


def test_each_answer_is_logged_with_the_rows_that_drifted(up, caplog):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING, status=202)
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json=PENDING)
    _, app = make()
    with caplog.at_level(logging.INFO, logger="sd35_twin.proxy"):
        app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
        app.get("/sd3_5/v1/status/job-1", headers=HEADERS)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "POST /sd3_5/v1 -> 202 drift L15"), ("INFO", "GET /sd3_5/v1/status/job-1 -> 200")]


def test_strict_names_the_drifted_rows_sorted_and_only_then(up):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING, status=202)
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json=PENDING)
    _, strict = make(strict=True)
    _, lax = make()
    assert strict.post("/sd3_5/v1", data=BODY, headers=HEADERS).headers[DRIFT_HEADER] == "L15"
    assert DRIFT_HEADER not in lax.post("/sd3_5/v1", data=BODY, headers=HEADERS).headers
    assert DRIFT_HEADER not in strict.get("/sd3_5/v1/status/job-1", headers=HEADERS).headers


# -- downloads through the proxy ----------------------------------------------------------------------------------

def test_download_urls_are_rewritten_and_a_download_is_fetched_checked_and_recorded(up, tmp_path):
    image = png(8, 4)
    original = f"{UP}/files/out%201.png?sig=abc"
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1",
           json={"status": "SUCCESS", "id": "job-1", "download_urls": [original, 7, "ftp://x/y"]})
    up.add(responses.GET, original, body=image, content_type="image/png", headers={"Cache-Control": "no-store"})
    proxy, app = make(tmp_path, proxy_downloads=True)
    job = app.get("/sd3_5/v1/status/job-1", headers=HEADERS).get_json()
    url, kept_number, kept_ftp = job["download_urls"]
    assert (kept_number, kept_ftp) == (7, "ftp://x/y")
    token = url.split("/")[-2]
    assert url == f"http://proxy.test/__proxy__/download/{token}/out_201.png" and len(token) == 24
    assert proxy.original(token) == original and proxy.original("0" * 24) is None
    got = app.get(url.removeprefix("http://proxy.test"), headers={"Accept": "image/png"})
    assert got.status_code == 200 and got.data == image and got.headers["Content-Type"] == "image/png"
    assert got.headers["Cache-Control"] == "no-store"
    assert up.calls[1].request.url == original and up.calls[1].request.headers["Accept"] == "image/png"
    assert "API-Key" not in up.calls[1].request.headers                       # a CDN is not given the key
    status_entry, download = recorded(tmp_path)
    assert status_entry["response"]["body"]["download_urls"][0] == original  # the recording keeps the original
    assert download["kind"] == "download" and download["request"] == {"method": "GET", "url": original}
    assert download["response"]["image"] == {"type": "png", "width": 8, "height": 4, "decodable": True}
    assert download["response"]["body"]["_binary"] == "image/png" and download["response"]["status"] == 200
    assert any(r["row"] == "L27" for r in download["readings"])


def test_a_download_answer_that_is_no_success_is_passed_on_without_an_image_reading(up, tmp_path):
    original = f"{UP}/files/gone.png"
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1",
           json={"status": "SUCCESS", "id": "job-1", "download_urls": [original]})
    up.add(responses.GET, original, body=b"<Error>expired</Error>", status=403, content_type="application/xml")
    _, app = make(tmp_path, proxy_downloads=True)
    url = app.get("/sd3_5/v1/status/job-1").get_json()["download_urls"][0]
    got = app.get(url.removeprefix("http://proxy.test"))
    assert got.status_code == 403 and got.data == b"<Error>expired</Error>"
    assert up.calls[1].request.headers["Accept"] == "*/*"
    download = recorded(tmp_path)[-1]
    assert "image" not in download["response"] and download["response"]["status"] == 403


def test_a_download_that_redirects_is_not_followed(up, tmp_path):
    original = f"{UP}/files/a.png"
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1",
           json={"status": "SUCCESS", "id": "job-1", "download_urls": [original]})
    up.add(responses.GET, original, status=307, body=b"", headers={"Location": "https://cdn.invalid/a.png"})
    _, app = make(tmp_path, proxy_downloads=True)
    url = app.get("/sd3_5/v1/status/job-1").get_json()["download_urls"][0]
    upstream_error(app.get(url.removeprefix("http://proxy.test")), 502, "redirect",
                   "the download redirected to cdn.invalid: not followed")
    download = recorded(tmp_path)[-1]
    assert download["kind"] == "download" and download["response"]["status"] == 307
    assert download["response"]["body"] is None and download["response"]["headers"]["Location"] == \
        "https://cdn.invalid/a.png"
    up.replace(responses.GET, original, status=302, body=b"")
    upstream_error(app.get(url.removeprefix("http://proxy.test")), 502, "redirect",
                   "the download redirected to (no Location): not followed")


def test_without_proxy_downloads_the_urls_are_left_as_the_upstream_sent_them(up):
    answer = {"status": "SUCCESS", "id": "job-1", "download_urls": [f"{UP}/files/a.png"]}
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json=answer)
    _, app = make()
    assert app.get("/sd3_5/v1/status/job-1").get_json() == answer


def test_a_download_url_it_did_not_hand_out_is_a_404(up):
    _, app = make(proxy_downloads=True)
    assert error(app.get("/__proxy__/download/abc/x.png")) == (
        404, [{"field": "path", "rule": "exists", "message": "is not a download URL this proxy handed out"}],
        "path: is not a download URL this proxy handed out")
    assert len(up.calls) == 0


def test_rewrite_names_each_url_once_and_keeps_what_it_does_not_rewrite():
    proxy = ShadowProxy(ProxySettings(upstream=UP))
    proxy.base_url = "http://p"
    assert proxy.rewrite({"download_urls": "https://a/b.png"}) == {"download_urls": "https://a/b.png"}
    assert proxy.rewrite({"status": "PENDING"}) == {"status": "PENDING"}
    long_name = "n" * 150 + ".png"
    body = {"id": "j", "download_urls": ["https://a/x/y z.png?q=1", "http://a/", "https://a/" + long_name,
                                          "https://a/x/y z.png?q=1", None, "/relative.png"]}
    out = proxy.rewrite(body)
    assert out["id"] == "j" and body["download_urls"][0] == "https://a/x/y z.png?q=1"    # the input is left alone
    first, empty, cut, again, none, relative = out["download_urls"]
    assert (none, relative) == (None, "/relative.png") and again == first
    names = [u.removeprefix("http://p/__proxy__/download/").split("/") for u in (first, empty, cut)]
    assert [n[1] for n in names] == ["y_z.png", "image", "n" * 100]
    assert len({n[0] for n in names}) == 3 and all(len(n[0]) == 24 for n in names)
    assert proxy.original(names[2][0]) == "https://a/" + long_name


def test_the_download_map_forgets_the_oldest_url_past_its_bound(monkeypatch):
    monkeypatch.setattr(proxy_module, "MAX_TOKENS", 2)
    proxy = ShadowProxy(ProxySettings(upstream=UP))
    tokens = [proxy.rewrite({"download_urls": [f"https://a/{i}.png"]})["download_urls"][0].split("/")[-2]
              for i in range(3)]
    assert [proxy.original(t) for t in tokens] == [None, "https://a/1.png", "https://a/2.png"]
    again = proxy.rewrite({"download_urls": ["https://a/0.png"]})["download_urls"][0].split("/")[-2]
    assert again not in tokens and proxy.original(again) == "https://a/0.png" and proxy.original(tokens[1]) is None


def test_redirect_codes_are_300_to_399_and_a_400_is_an_answer(up):
    _, app = make()
    for code, where in ((300, "a.test"), (399, "b.test")):
        up.upsert(responses.POST, f"{UP}/sd3_5/v1", status=code, body=b"", headers={"Location": f"http://{where}/"})
        upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 502, "redirect",
                       f"redirected to {where}: not followed")
    refusal = {"status": "FAILURE", "error": "samples: must be at most 2"}
    up.replace(responses.POST, f"{UP}/sd3_5/v1", status=400, json=refusal, headers={"Location": "http://c.test/"})
    resp = app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    assert resp.status_code == 400 and resp.get_json() == refusal
    up.replace(responses.POST, f"{UP}/sd3_5/v1", status=299, json=PENDING)
    assert app.post("/sd3_5/v1", data=BODY, headers=HEADERS).status_code == 299


def test_an_image_sent_or_answered_is_summarised_never_stored(up, tmp_path):
    image = png(2, 2)
    up.add(responses.POST, f"{UP}/sd3_5/v1", status=200, body=image, content_type="image/png")
    _, app = make(tmp_path)
    upstream_error(app.post("/sd3_5/v1", data=image, headers={"API-Key": KEY, "Content-Type": "image/png"}), 502,
                   "json", "answered HTTP 200 image/png, not JSON")
    [entry] = recorded(tmp_path)
    summary = {"_binary": "image/png", "bytes": len(image), "sha256": __import__("hashlib").sha256(image).hexdigest()}
    assert entry["request"]["body"] == summary and entry["response"]["body"] == summary


def test_rewritten_download_urls_keep_the_rest_of_the_answer_as_utf8_json(up):
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1",
           json={"status": "SUCCESS", "id": "job-1", "note": "café", "download_urls": [f"{UP}/f/a.png"]})
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-2", json=["download_urls"])
    proxy, app = make(proxy_downloads=True)
    resp = app.get("/sd3_5/v1/status/job-1")
    token = proxy.rewrite({"download_urls": [f"{UP}/f/a.png"]})["download_urls"][0].split("/")[-2]
    assert resp.data == ('{"status": "SUCCESS", "id": "job-1", "note": "café", "download_urls": '
                         f'["http://proxy.test/__proxy__/download/{token}/a.png"]}}').encode("utf-8")
    assert app.get("/sd3_5/v1/status/job-2").get_json() == ["download_urls"]     # a list is no job: left alone


def test_before_it_is_bound_a_download_url_is_a_path_of_the_proxy():
    url = ShadowProxy(ProxySettings(upstream=UP)).rewrite({"download_urls": ["https://a/b.png"]})["download_urls"][0]
    assert url.startswith("/__proxy__/download/") and url.endswith("/b.png")


def test_a_job_is_compared_with_its_submit_only_when_the_same_key_reads_it(up, tmp_path):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING)
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json={"status": "SUCCESS", "id": "job-1", "download_urls": [
        f"{UP}/f/1.png", f"{UP}/f/2.png"]})
    _, app = make(tmp_path)
    app.post("/sd3_5/v1", data=BODY, headers=HEADERS)                            # samples: 1
    app.get("/sd3_5/v1/status/job-1", headers={"API-Key": KEY})
    app.get("/sd3_5/v1/status/job-1", headers={"API-Key": "someone-else"})
    _, own, other = recorded(tmp_path)
    l13 = [next(r for r in e["readings"] if r["row"] == "L13") for e in (own, other)]
    assert [r["held"] for r in l13] == [False, True]            # two URLs for samples=1; another key's job: no submit
    assert "samples=1" in l13[0]["text"] and "samples=None" in l13[1]["text"]


def test_two_drifted_rows_are_named_sorted_in_the_header_and_the_log(up, caplog):
    up.add(responses.POST, f"{UP}/sd3_5/v1", status=422, json={"status": "FAILURE", "detail": "bad"})
    _, app = make(strict=True)
    with caplog.at_level(logging.INFO, logger="sd35_twin.proxy"):
        resp = app.post("/sd3_5/v1", data=b'{"prompt": ""}', headers=HEADERS)
    rows = resp.headers[DRIFT_HEADER]
    assert rows.count(",") >= 1 and rows.split(",") == sorted(rows.split(","))
    assert caplog.records[-1].getMessage() == f"POST /sd3_5/v1 -> 422 drift {rows}"


def test_a_download_is_logged_by_its_kind(up, caplog):
    original = f"{UP}/files/a.png"
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1",
           json={"status": "SUCCESS", "id": "job-1", "download_urls": [original]})
    up.add(responses.GET, original, body=png(1, 1), content_type="image/png")
    _, app = make(proxy_downloads=True)
    url = app.get("/sd3_5/v1/status/job-1").get_json()["download_urls"][0]
    with caplog.at_level(logging.INFO, logger="sd35_twin.proxy"):
        app.get(url.removeprefix("http://proxy.test"))
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("GET download -> 200")       # (a 1x1 image drifts rows: its size, its type's name)


def test_the_upstream_is_asked_without_the_environment_s_proxies_or_netrc_credentials(up, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine up.test login someone password secret\n")
    os.chmod(netrc, 0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json=PENDING)
    _, app = make()
    assert app.get("/sd3_5/v1/status/job-1").status_code == 200
    assert "Authorization" not in up.calls[0].request.headers
    trusting = requests.Session()                     # what the session would send if it trusted the environment
    assert trusting.get(f"{UP}/sd3_5/v1/status/job-1").request.headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize("code, passed_on", [(300, False), (399, False), (400, True), (200, True)])
def test_a_download_answered_300_to_399_is_a_redirect_not_followed(up, code, passed_on):
    original = f"{UP}/files/a.png"
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1",
           json={"status": "SUCCESS", "id": "job-1", "download_urls": [original]})
    up.add(responses.GET, original, status=code, body=b"gone", headers={"Location": "https://x.invalid/"})
    _, app = make(proxy_downloads=True)
    url = app.get("/sd3_5/v1/status/job-1").get_json()["download_urls"][0]
    got = app.get(url.removeprefix("http://proxy.test"))
    assert (got.status_code, got.data) == (code, b"gone") if passed_on else got.status_code == 502


def test_a_get_or_head_request_s_body_is_not_forwarded(up, tmp_path):
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json=PENDING)
    up.add(responses.HEAD, f"{UP}/sd3_5/v1/status/job-1", body=b"", content_type="application/json")
    _, app = make(tmp_path)
    app.get("/sd3_5/v1/status/job-1", data=b'{"smuggled": 1}', headers={"Content-Type": "application/json"})
    app.head("/sd3_5/v1/status/job-1", data=b'{"smuggled": 1}', headers={"Content-Type": "application/json"})
    assert [c.request.body for c in up.calls] == [None, None]
    assert [(e["request"]["bytes"], e["request"]["body"]) for e in recorded(tmp_path)] == [(0, None), (0, None)]


def test_bytes_of_no_declared_type_are_summarised_as_octet_stream(up, tmp_path):
    up.add(responses.POST, f"{UP}/sd3_5/v1", status=302, body=b"\x00\x01moved", content_type=None)
    _, app = make(tmp_path)
    app.post("/sd3_5/v1", data=b"\x00\x02raw", headers={"API-Key": KEY})
    [entry] = recorded(tmp_path)
    assert entry["request"]["body"]["_binary"] == "application/octet-stream" and entry["request"]["body"]["bytes"] == 5
    assert entry["response"]["body"]["_binary"] == "application/octet-stream"


def test_an_answer_is_recorded_as_its_content_type_says(up, tmp_path):
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=b'{"status": "PENDING", "id": "j"}', content_type="image/png")
    _, app = make(tmp_path)
    assert json.loads(app.post("/sd3_5/v1", data=BODY, headers=HEADERS).data) == {"status": "PENDING", "id": "j"}
    assert recorded(tmp_path)[0]["response"]["body"]["_binary"] == "image/png"     # an "image" is never stored


STEP = 2 ** -10     # seconds per upstream read: exact in binary, so the elapsed times below are exact


def test_times_are_recorded_to_the_millisecond_and_microsecond(up, tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(proxy_module, "time", clock)
    original = f"{UP}/files/a.png"
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", body=stream([b'{"status": "SUCCESS", "id": "job-1", '
                                                                      b'"download_urls": ["' + original.encode() +
                                                                      b'"]}'], clock, STEP),
           content_type="application/json", headers={"X-Status": "1"})
    up.add(responses.GET, original, body=stream([png(1, 1)], clock, STEP), content_type="image/png",
           headers={"X-Cdn": "hit"})
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=stream([b"{"], clock, STEP, fail=ConnectionResetError("x")),
           content_type="application/json")
    _, app = make(tmp_path, proxy_downloads=True)
    url = app.get("/sd3_5/v1/status/job-1").get_json()["download_urls"][0]
    app.get(url.removeprefix("http://proxy.test"))
    app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    status, download, failed = recorded(tmp_path)
    assert [(e["at"], e["elapsed_ms"]) for e in (status, download, failed)] == [(1_700_000_000.123, 1.953)] * 3
    assert download["response"]["headers"]["X-Cdn"] == "hit" and status["response"]["headers"]["X-Status"] == "1"


def test_what_is_kept_of_an_answer_over_the_limit_is_its_first_4096_bytes(up, tmp_path, monkeypatch):
    monkeypatch.setattr(proxy_module, "MAX_ANSWER_BYTES", 7000)
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=stream([b"y" * 3000, b"z" * 3000, b"w" * 3000]),
           content_type="text/plain")
    _, app = make(tmp_path)
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 502, "maxLength", "answered more than 7000 bytes")
    assert recorded(tmp_path)[-1]["response"]["body"] == "y" * 3000 + "z" * 1096


def test_an_answer_broken_off_exactly_at_the_deadline_is_broken_off_not_late(up, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(proxy_module, "time", clock)
    up.add(responses.POST, f"{UP}/sd3_5/v1", body=stream([b"{"], clock, 1.5, fail=ConnectionResetError("x")),
           content_type="application/json")
    _, app = make(timeout=3.0)
    upstream_error(app.post("/sd3_5/v1", data=BODY, headers=HEADERS), 502, "complete",
                   "broke off its answer (ProtocolError)")


# -- the app's own answers ----------------------------------------------------------------------------------------

def test_paths_methods_and_sizes_it_refuses_are_failures_that_say_why(up):
    proxy, app = make()
    assert error(app.get("/openapi.json")) == (404, [{"field": "path", "rule": "exists", "message": (
        "is not an API path: this proxy forwards only POST /sd3_5/v1 and GET /sd3_5/v1/status/{id}")}],
        "path: is not an API path: this proxy forwards only POST /sd3_5/v1 and GET /sd3_5/v1/status/{id}")
    assert error(app.post("/static/dashboard.css"))[0] == 404          # no static folder: nothing else is served
    assert error(app.post("/sd3_5/v1/status/job-1")) == (405, [{"field": "method", "rule": "allowed",
                                                                "message": "is not allowed here"}],
                                                         "method: is not allowed here")
    huge = app.post("/sd3_5/v1", data=b"x" * (MAX_REQUEST_BYTES + 1), headers=HEADERS)
    assert error(huge) == (413, [{"field": "body", "rule": "maxLength",
                                  "message": f"is too large: at most {MAX_REQUEST_BYTES} bytes"}],
                           f"body: is too large: at most {MAX_REQUEST_BYTES} bytes")
    assert len(up.calls) == 0 and proxy.forwarded_submits == 0          # a body refused spends no job


def test_another_http_error_keeps_its_code_and_description():
    from werkzeug.exceptions import abort

    proxy = ShadowProxy(ProxySettings(upstream=UP))
    app = create_proxy_app(proxy)
    app.add_url_rule("/teapot", "teapot", lambda: abort(418, "is a teapot"))
    app.add_url_rule("/bare", "bare", lambda: abort(400, ""))
    assert error(app.test_client().get("/teapot")) == (418, [{"field": "request", "rule": "valid",
                                                               "message": "is a teapot"}], "request: is a teapot")
    assert error(app.test_client().get("/bare"))[1] == [{"field": "request", "rule": "valid", "message": "is invalid"}]


def test_an_error_inside_the_proxy_is_a_500_naming_the_proxy_and_its_log_has_no_key(up, monkeypatch, caplog):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING)
    proxy, app = make()

    def broken(exchange):
        raise RuntimeError(f"reader failed on {KEY}")

    monkeypatch.setattr(proxy.evidence, "read", broken)
    with caplog.at_level(logging.ERROR, logger="sd35_twin.proxy"):
        resp = app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    assert error(resp) == (500, [{"field": "proxy", "rule": "internal",
                                  "message": "internal error in the proxy (see its log)"}],
                           "proxy: internal error in the proxy (see its log)")
    assert [r.getMessage() for r in caplog.records] == ["proxy error: RuntimeError: reader failed on [REDACTED]"]


@pytest.mark.parametrize("origin, allowed", [
    ("http://localhost:3000", True), ("https://127.0.0.1", True), ("HTTP://[::1]:8080", True),
    ("https://evil.example", False), ("null", False), ("localhost:3000", False), ("ftp://localhost", False),
    ("http://", False), ("http://127.0.0.1.evil.example", False),
])
def test_only_a_loopback_origin_may_use_the_proxy(up, origin, allowed):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING)
    proxy, app = make()
    resp = app.post("/sd3_5/v1", data=BODY, headers={**HEADERS, "Origin": origin})
    assert _loopback_origin(origin) is allowed
    if allowed:
        assert resp.status_code == 200
    else:
        message = f"{origin!r} is another site: a web page may not use the proxy"
        assert error(resp) == (403, [{"field": "Origin", "rule": "allowed", "message": message}], f"Origin: {message}")
        assert len(up.calls) == 0 and proxy.forwarded_submits == 0


def test_the_report_is_served_only_to_a_loopback_host_or_the_bound_address():
    proxy, app = make()
    proxy.bound_host = "192.0.2.7"
    message = "is not this proxy's address: use a loopback name"
    for path in ("/__proxy__/report", "/__proxy__/", "/__proxy__", "/__proxy__/dashboard.css"):
        assert error(app.get(path, headers={"Host": "evil.example"})) == (
            403, [{"field": "Host", "rule": "allowed", "message": message}], f"Host: {message}")
        assert error(app.get(path, headers={"Host": ""}))[0] == 403
        for host in ("localhost:8090", "127.0.0.1", "192.0.2.7:8090", "[::1]:1"):
            assert app.get(path, headers={"Host": host}).status_code == 200, (path, host)
    # a download URL is fetched by whatever the app hands it to: no Host check, only the token
    assert error(app.get("/__proxy__/download/t/n", headers={"Host": "cdn.example"}))[0] == 404


def test_the_report_as_json_page_and_stylesheet(up):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING, status=202)
    proxy, app = make(max_jobs=5)
    app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    report = app.get("/__proxy__/report")
    assert report.headers["Content-Type"] == "application/json" and report.data.endswith(b"\n")
    assert report.get_json() == json.loads(json.dumps(proxy.report()))
    page = app.get("/__proxy__/")
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'self'; img-src 'self'"
    assert page.get_data(as_text=True) == _page(proxy.report())
    css = app.get("/__proxy__/dashboard.css")
    assert css.headers["Content-Type"] == "text/css; charset=utf-8" and b".pill" in css.data


# -- the report, the recording, files --------------------------------------------------------------------------

def test_the_report_counts_the_spend_names_the_upstream_and_never_holds_a_key(up, monkeypatch):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json={"status": "PENDING", "id": KEY}, status=202)
    proxy, app = make(max_jobs=1)
    app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    real = proxy.evidence.summary
    monkeypatch.setattr(proxy.evidence, "summary", lambda: {**real(), "note": f"an echo of {KEY}"})
    report = proxy.report()
    assert report["spend"] == {"max_jobs": 1, "forwarded_submits": 1, "refused_submits": 1}
    assert report["upstream"] == UP and report["exchanges"] == 1
    assert report["profile_hint"] == {"http_status": {"submit_pending": 202}}
    assert report["note"] == "an echo of [REDACTED]"           # the key, however it got in, is removed
    assert {r["id"]: r["result"] for r in report["rows"]}["L15"] == "drifted"


def test_the_written_report_is_a_contracts_report_owner_only_without_the_key(up, tmp_path):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json={"status": "PENDING", "id": KEY})
    path = tmp_path / "live.json"
    path.write_text("old content that is longer than nothing" * 100)
    os.chmod(path, 0o644)
    proxy, app = make(report=str(path), max_jobs=3)
    assert make()[0].write_report() is None                   # no --report: nothing written
    app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    assert proxy.write_report() == path
    text = path.read_text("utf-8")
    data = json.loads(text)
    assert text.endswith("}\n") and text.startswith('{\n  "schema"') and KEY not in text
    assert data["schema"] == "sd35-contracts-report/1" and data["live_jobs"] == {"cap": 3, "created": 1, "blocked": 0}
    assert data["target"] == {"kind": "proxy", "base_url": UP, "via": "sd35-mock proxy"}
    assert data["started_at"] == round(proxy.started_at, 3)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    live = ShadowProxy(ProxySettings())
    assert live.upstream == DEFAULT_UPSTREAM and live.target() == {"kind": "live", "base_url": DEFAULT_UPSTREAM,
                                                                   "via": "sd35-mock proxy"}


def test_the_upstream_is_its_scheme_and_host_only():
    assert ShadowProxy(ProxySettings(upstream="https://api.example:8443/")).upstream == "https://api.example:8443"


def test_the_recording_appends_redacted_lines_to_an_owner_only_file(tmp_path):
    path = tmp_path / "calls.jsonl"
    path.write_text('{"earlier": 1}\n')
    os.chmod(path, 0o644)
    recording = Recording(path, Redactor([KEY]))
    recording.write({"key": KEY, "text": "ünïcode", "at": object.__new__(type("T", (), {"__str__": lambda s: "t"}))})
    recording.write({"n": 2})
    assert recording.count == 2
    lines = path.read_text("utf-8").splitlines()      # flushed per line: readable before close
    assert lines == ['{"earlier": 1}', '{"key": "[REDACTED]", "text": "ünïcode", "at": "t"}', '{"n": 2}']
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    recording.close()
    with pytest.raises(ValueError):
        recording.write({"n": 3})


def test_a_private_file_is_created_owner_only_truncated_or_appended(tmp_path):
    path = tmp_path / "f.txt"
    with private_file(path, append=False) as fh:
        fh.write("one\n")
    with private_file(path, append=True) as fh:
        fh.write("two\n")
    assert path.read_text() == "one\ntwo\n" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with private_file(path, append=False) as fh:
        fh.write("ü")
    assert path.read_bytes() == "ü".encode("utf-8")


def test_a_private_file_is_utf8_whatever_the_locale(tmp_path):
    import locale

    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")             # a locale whose encoding is ASCII (unless UTF-8 mode is on)
    try:
        with private_file(tmp_path / "f.txt", append=True) as fh:
            fh.write("ünïcode ✓")
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert (tmp_path / "f.txt").read_bytes() == "ünïcode ✓".encode("utf-8")


def test_a_private_file_is_owner_only_from_the_moment_it_exists(tmp_path, monkeypatch):
    modes, real = [], os.fchmod

    def spy(fd, mode):
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real(fd, mode)

    monkeypatch.setattr(os, "fchmod", spy)
    old = os.umask(0o022)
    try:
        private_file(tmp_path / "new.txt", append=True).close()
    finally:
        os.umask(old)
    assert modes == [0o600]          # created so, not made so afterwards: no moment another user could open it


def test_a_private_file_whose_mode_cannot_be_set_is_an_error_and_leaks_no_descriptor(tmp_path, monkeypatch):
    def refuse(fd, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(PermissionError):
        private_file(tmp_path / "f.txt", append=True)
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_recording_that_fails_is_logged_and_the_app_still_gets_its_answer(up, tmp_path, caplog):
    up.add(responses.POST, f"{UP}/sd3_5/v1", json=PENDING)
    proxy, app = make(tmp_path)
    proxy.recording.close()                 # a write now fails, as on a full disk
    with caplog.at_level(logging.ERROR, logger="sd35_twin.proxy"):
        resp = app.post("/sd3_5/v1", data=BODY, headers=HEADERS)
    assert resp.status_code == 200 and resp.get_json() == PENDING
    assert [r.getMessage() for r in caplog.records] == [f"recording to {tmp_path / 'rec.jsonl'} failed: ValueError"]


def test_close_closes_the_session_and_the_recording(tmp_path):
    proxy, _ = make(tmp_path)
    closed = []
    proxy.session.close = lambda: closed.append("session")
    proxy.close()
    assert closed == ["session"] and proxy.recording._file.closed
    make()[0].close()                       # without a recording: nothing else to close


def test_a_started_proxy_binds_loopback_on_a_free_port_and_takes_bodies_to_4_mib(up):
    up.add_passthru("http://127.0.0.1")
    up.add(responses.PUT, f"{UP}/sd3_5/v1", json={"detail": "Method Not Allowed"}, status=405)
    first, second = start(ProxySettings(upstream=UP)), start(ProxySettings(upstream=UP))
    try:
        ports = {int(p.url.rsplit(":", 1)[1]) for p in (first, second)}
        assert first.url.startswith("http://127.0.0.1:") and len(ports) == 2 and min(ports) > 1024
        big = b"x" * (2 * 1024 * 1024)                 # over the API's 1 MiB, under the proxy's 4 MiB: forwarded
        status, _, body = fetch(f"{first.url}/sd3_5/v1", big, {"Content-Type": "text/plain", "X-Method": "PUT"},
                                method="PUT")
        assert (status, json.loads(body)) == (405, {"detail": "Method Not Allowed"})
        assert len(up.calls[-1].request.body) == len(big)
        answer = too_large(first.url)
        assert answer.startswith(b"HTTP/1.1 413 ") and TOO_LARGE in answer
    finally:
        first.close()
        second.close()


def test_a_started_proxy_writes_its_report_when_closed(tmp_path):
    path = tmp_path / "report.json"
    running = start(ProxySettings(upstream=UP, report=str(path)), host="127.0.0.1")
    assert running.url.startswith("http://127.0.0.1:") and running.proxy.base_url == running.url
    assert running.proxy.bound_host == "127.0.0.1"
    assert running.running.thread.name == "sd35-proxy" and running.running.thread.daemon   # never holds up an exit
    with urllib.request.urlopen(f"{running.url}/__proxy__/report", timeout=10) as resp:
        assert json.loads(resp.read())["upstream"] == UP
    assert not path.exists()
    running.close()
    assert json.loads(path.read_text())["live_jobs"] == {"cap": 20, "created": 0, "blocked": 0}


# -- small parts --------------------------------------------------------------------------------------------------

def test_chunks_reads_what_each_read_gives_and_falls_back_to_read():
    class Raw:
        def __init__(self, pieces, with_read1):
            self.pieces, self.calls = list(pieces), []
            if with_read1:
                self.read1 = self._read1

        def _read1(self, size, decode_content):
            self.calls.append(("read1", size, decode_content))
            return self.pieces.pop(0) if self.pieces else b""

        def read(self, size, decode_content):
            self.calls.append(("read", size, decode_content))
            return self.pieces.pop(0) if self.pieces else b""

    one = Raw([b"ab", b"c"], with_read1=True)
    assert list(_chunks(one)) == [b"ab", b"c"] and one.calls == [("read1", 65536, True)] * 3
    two = Raw([b"ab", b"c"], with_read1=False)
    assert list(_chunks(two)) == [b"ab", b"c"] and two.calls == [("read", 1024, True)] * 3


def test_reason_names_the_exception_and_what_it_wraps():
    assert _reason(ValueError("x")) == "ValueError"
    assert _reason(requests.ConnectionError(OSError("inner"), "more")) == "ConnectionError: OSError"
    assert _reason(requests.ConnectionError("text", OSError())) == "ConnectionError"
    assert _reason(KeyError()) == "KeyError"


def test_a_failure_carries_extra_headers_and_one_error():
    resp = _failure("upstream", "timeout", "slow", 504, {"Retry-After": "3", "X-A": "b"})
    assert resp.status_code == 504 and resp.headers["Retry-After"] == "3" and resp.headers["X-A"] == "b"
    assert resp.get_data(as_text=True) == ('{"status":"FAILURE","error":"upstream: slow","errors":[{"field":"upstream",'
                                           '"rule":"timeout","message":"slow"}]}\n')
    assert "Retry-After" not in _failure("a", "b", "c", 400).headers


def test_json_is_an_answer_s_value_or_none():
    assert _json(b'{"a": [1]}') == {"a": [1]} and _json('"é"'.encode()) == "é"
    assert _json(b"\xff\xfe") is None and _json(b"{") is None and _json(b"[" * 100_000 + b"]" * 100_000) is None


def test_an_image_is_read_for_its_type_size_and_whether_it_decodes(monkeypatch):
    assert _image(png(3, 2)) == {"type": "png", "width": 3, "height": 2, "decodable": True}
    assert _image(b"not an image") == {"type": None, "width": None, "height": None, "decodable": False}
    noisy = Image.frombytes("RGB", (64, 64), random.Random(0).randbytes(64 * 64 * 3))   # does not compress
    whole = io.BytesIO()
    noisy.save(whole, "PNG")
    cut = _image(whole.getvalue()[:-200])                           # truncated: its header reads, its pixels do not
    assert cut == {"type": "png", "width": 64, "height": 64, "decodable": False}
    monkeypatch.setattr(proxy_module, "MAX_IMAGE_PIXELS", 6)
    assert _image(png(3, 2))["decodable"] is True                   # exactly the bound: decoded
    assert _image(png(7, 1)) == {"type": "png", "width": 7, "height": 1, "decodable": False}
    assert _image(png(3, 3))["decodable"] is False                  # 9 pixels: over, however square


def test_the_page_shows_each_row_escaped_with_its_counts_and_the_learned_profile():
    report = {"upstream": "https://<up>", "exchanges": 3, "held": 1, "drifted": 1, "not_seen": 1,
              "spend": {"forwarded_submits": 2, "max_jobs": 9}, "profile_hint": {"b": 1, "a": {"<x>": 2}},
              "rows": [{"id": "L15", "result": "drifted", "held": 4, "drifted": 2, "behaviour": "status <codes>",
                        "examples": ["first", "last & <b>"], "profile_hint": {"z": 1, "y": 2}},
                       {"id": "L05", "result": "held", "held": 1, "behaviour": "samples"},
                       {"id": "L27", "result": "not_seen", "behaviour": "images", "examples": []}]}
    page = _page(report)
    assert "<tr><td>L15</td><td><span class=\"pill pill-failure\">drifted</span></td><td>4</td><td>2</td>" \
           "<td>status &lt;codes&gt;</td><td>last &amp; &lt;b&gt;</td><td><code>{&quot;y&quot;: 2, &quot;z&quot;: 1}" \
           "</code></td></tr>" in page
    assert "</code></td></tr><tr><td>L05</td>" in page and "</code></td></tr><tr><td>L27</td>" in page
    assert "<tr><td>L05</td><td><span class=\"pill pill-success\">held</span></td><td>1</td><td>0</td>" \
           "<td>samples</td><td></td><td><code></code></td></tr>" in page
    assert "<tr><td>L27</td><td><span class=\"pill pill-pending\">not seen</span></td><td>0</td><td>0</td>" \
           "<td>images</td><td></td><td><code></code></td></tr>" in page
    assert "upstream https://&lt;up&gt;</span>" in page and "<span class=\"fact\">3 exchanges</span>" in page
    assert "2 of 9 submits forwarded" in page and "1 rows held, 1 drifted, 1 not seen." in page
    assert '{\n  &quot;a&quot;: {\n    &quot;&lt;x&gt;&quot;: 2\n  },\n  &quot;b&quot;: 1\n}</pre>' in page
    assert "<script" not in page and "style=" not in page


# -- the command line, in this process ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("https://api.example", "https://api.example"), ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("http://BOX/", "http://BOX"),
    ("HTTPS://API.example", "HTTPS://API.example"), ("https://api.example/v1", None), ("https://api.example?q", None),
    ("https://api.example#f", None), ("https://api.example/?", None), ("https://api.example#", None),
    ("https://u@api.example", None), ("https://:p@api.example", None),
    ("https://", None), ("ftp://api.example", None), ("https://api.example:99999", None),
    ("https://api.example:x", None), ("https://api .example", None), ("https://api.example\t", None),
])
def test_upstream_is_a_scheme_and_host_and_nothing_else(text, expected):
    if expected is not None:
        assert _upstream(text) == expected
        return
    with pytest.raises(argparse.ArgumentTypeError) as info:
        _upstream(text)
    message = str(info.value)
    assert message.startswith(f"invalid URL {text!r}: ")
    if "99999" in text or ":x" in text:
        assert "Port" in message and "must be" not in message
    else:
        assert message == (f"invalid URL {text!r}: must be http:// or https:// and a host (and port), no path, "
                           f"query, fragment or credentials")


@pytest.mark.parametrize("text, value", [("0.001", 0.001), ("3600", 3600.0), ("1e3", 1000.0), ("0", None),
                                         ("-1", None), ("3600.0001", None), ("nan", None), ("inf", None),
                                         ("ten", None), ("", None)])
def test_seconds_are_above_zero_and_at_most_an_hour(text, value):
    if value is not None:
        assert _seconds(text) == value
        return
    with pytest.raises(argparse.ArgumentTypeError) as info:
        _seconds(text)
    assert str(info.value) == f"invalid value {text!r}: must be a number of seconds above 0, at most 3600"


def test_a_file_option_is_a_file_in_a_directory_that_exists(tmp_path):
    assert _writable(str(tmp_path / "new.jsonl")) == str(tmp_path / "new.jsonl")
    for text, message in (("", "invalid path '': must be a file, not a directory"),
                          (str(tmp_path), f"invalid path {str(tmp_path)!r}: must be a file, not a directory"),
                          (str(tmp_path / "no" / "x"), f"invalid path {str(tmp_path / 'no' / 'x')!r}: its directory "
                                                       f"{str(tmp_path / 'no')!r} does not exist")):
        with pytest.raises(argparse.ArgumentTypeError) as info:
            _writable(text)
        assert str(info.value) == message


def test_the_options_and_their_defaults():
    args = build_parser().parse_args([])
    assert (args.upstream, args.host, args.port, args.record, args.report, args.max_jobs, args.strict,
            args.proxy_downloads, args.profile, args.timeout, args.threads, args.quiet) == (
        "https://api.imagepipeline.io", "127.0.0.1", 8090, None, None, 20, False, False, None, 120.0, 8, False)
    args = build_parser().parse_args(["--upstream", "http://u.test/", "--port", "0", "--max-jobs", "0", "--strict",
                                      "--proxy-downloads", "--timeout", "1.5", "--threads", "256", "--quiet"])
    assert (args.upstream, args.port, args.max_jobs, args.strict, args.proxy_downloads, args.timeout, args.threads,
            args.quiet) == ("http://u.test", 0, 0, True, True, 1.5, 256, True)
    parser = build_parser()
    assert parser.prog == "sd35-mock proxy"
    assert build_parser().parse_args(["--threads", "1"]).threads == 1
    for option, bad in (("--port", "65536"), ("--max-jobs", "1000001"), ("--threads", "257"), ("--threads", "0"),
                        ("--host", "999.1.1.1"), ("--record", "/"), ("--report", "/nonexistent-dir/r.json")):
        with pytest.raises(SystemExit):
            parser.parse_args([option, bad])
    helps = " ".join(parser.format_help().split())
    for said in ("A shadow proxy: the app's own calls to the live API, checked against the twin's ledger, recorded "
                 "(keys removed) and learned into a profile.",
                 "--upstream UPSTREAM the API to forward to (default https://api.imagepipeline.io); only its host is "
                 "ever contacted", "--host HOST address to bind (default 127.0.0.1)",
                 "--port PORT port (default 8090; 0 picks a free one)",
                 "--record FILE append every exchange, keys removed and images summarised, as JSON lines (mode 0600)",
                 "--report FILE on exit, write the evidence as a contracts report (python -m sd35_twin.contracts "
                 "drift)", "--max-jobs N forward at most N submits (default 20); later ones get a FAILURE and never "
                 "reach the upstream", "--strict an answer that drifted carries X-Sd35-Drift: the rows, so an app's "
                 "tests can fail on it", "--proxy-downloads rewrite download URLs to pass through the proxy, so "
                 "images are checked too", "--profile FILE the twin's profile to check against (default: the default "
                 "one)", "--timeout SECONDS an upstream answer's time in all (default 120); then 504",
                 "--threads THREADS threads serving requests (default 8)", "--quiet log warnings only"):
        assert said in helps, said


@pytest.mark.parametrize("args, message", [
    (["--profile", "/nonexistent-profile.json"], "argument --profile: profile: cannot read /nonexistent-profile.json: "
                                                 "[Errno 2] No such file or directory: '/nonexistent-profile.json'"),
    (["--record", "DANGLING"], "argument --record: cannot write 'DANGLING': No such file or directory"),
    (["--report", "DANGLING"], "argument --report: cannot write 'DANGLING': No such file or directory"),
])
def test_main_refuses_a_profile_or_file_it_cannot_use(args, message, capsys, tmp_path):
    dangling = tmp_path / "link.json"                  # a link into a directory that does not exist: even root
    dangling.symlink_to(tmp_path / "gone" / "x.json")  # cannot create the file it names
    args = [a.replace("DANGLING", str(dangling)) for a in args]
    with pytest.raises(SystemExit) as info:
        main(args)
    message = message.replace("DANGLING", str(dangling))
    assert info.value.code == 2 and capsys.readouterr().err == f"sd35-mock proxy: error: {message} (see --help)\n"


def test_main_names_a_profile_value_the_twin_refuses(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"http_status": {"submit_pending": 99, "submit_success": 98}}))
    with pytest.raises(SystemExit):
        main(["--profile", str(bad)])
    err = capsys.readouterr().err
    assert err.startswith("sd35-mock proxy: error: argument --profile: http_status.submit_")
    assert err.count("; argument --profile: http_status.submit_") == 1          # each error named, one line
    assert "argument --profile: profile." not in err and err.count("\n") == 1


def test_main_reports_a_port_it_cannot_listen_on(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--upstream", UP]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sd35-mock proxy: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1


class Watched(io.StringIO):
    """A stream as a pipe's reader sees it: what was flushed (``flushed``), and an event once a whole line was."""

    def __init__(self):
        super().__init__()
        self.line = threading.Event()
        self.flushed = ""

    def flush(self):
        self.flushed = self.getvalue()
        if "\n" in self.flushed:
            self.line.set()


def run_main(argv, monkeypatch, drive):
    """``main(argv)`` in this thread (its signal handlers need the main thread); ``drive(url)`` in another, once the
    ready line is flushed, then SIGTERM: what a user does. Returns main's code, its stdout and stderr, and what of
    its stderr was flushed when the ready line was."""
    out, err = Watched(), Watched()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr(logging.root, "handlers", [])      # so main's basicConfig is the one that applies
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    thresholds = gc.get_threshold()
    failures, returned, flushed_err = [], threading.Event(), []

    def user():
        ready = out.line.wait(20)
        if returned.is_set():          # main ended on its own (a failure): no signal for a process it left
            return
        try:
            assert ready, f"no ready line flushed: {out.getvalue()!r}"
            flushed_err.append(err.flushed)
            drive(out.flushed.split("listening on ")[1].split()[0])
        except BaseException as exc:   # noqa: BLE001 - reported by the test below
            failures.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=user)
    thread.start()
    try:
        code = main(argv)
    finally:
        returned.set()
        out.line.set()                 # (a user still waiting for a line: main is over)
        thread.join(20)                # before the handlers are restored: a late SIGTERM still meets main's
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        gc.set_threshold(*thresholds)
        logging.getLogger("waitress.queue").setLevel(logging.NOTSET)
    assert failures == []
    return code, out.getvalue(), err.getvalue(), flushed_err[0]


def too_large(url: str) -> bytes:
    """The answer to a body announced at 70 MB (waitress's own cap, 64 MiB, answers it from the headers)."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /sd3_5/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 70000000\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


TOO_LARGE = b'"errors":[{"field":"body","rule":"maxLength","message":"is too large: at most 4194304 bytes"}]'


def fetch(url, data=None, headers=None, method=None):
    try:
        request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_main_serves_with_every_option_it_was_given_and_writes_its_report_on_sigterm(up, tmp_path, monkeypatch):
    up.add_passthru("http://127.0.0.1")
    record, report = tmp_path / "calls.jsonl", tmp_path / "live.json"
    up.add(responses.POST, f"{UP}/sd3_5/v1", json={"status": "PENDING", "id": "job-1"}, status=200)
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1",
           json={"status": "SUCCESS", "id": "job-1", "download_urls": [f"{UP}/files/a.png"]})
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-2", body=requests.ReadTimeout("slow"))
    up.add(responses.PUT, f"{UP}/sd3_5/v1", json={"detail": "Method Not Allowed"}, status=405)
    seen = {}

    def drive(url):
        seen["url"], seen["gc"] = url, gc.get_threshold()
        seen["queue_log"] = logging.getLogger("waitress.queue").level
        seen["submits"] = [fetch(f"{url}/sd3_5/v1", BODY, HEADERS) for _ in range(2)]
        seen["status"] = fetch(f"{url}/sd3_5/v1/status/job-1", headers=HEADERS)
        seen["slow"] = fetch(f"{url}/sd3_5/v1/status/job-2", headers=HEADERS)
        seen["big"] = fetch(f"{url}/sd3_5/v1", b"x" * (2 * 1024 * 1024), {"Content-Type": "text/plain"}, "PUT")[0]
        seen["too_large"] = too_large(url)

    record.write_text('{"earlier": "run"}\n')   # a recording is appended to, never truncated at start
    profile = tmp_path / "profile.json"       # a profile that expects 202: the upstream's 200 drifts from it
    profile.write_text(json.dumps({"http_status": {"submit_pending": 202}}))
    code, out, err, _ = run_main(["--upstream", UP, "--port", "0", "--record", str(record), "--report", str(report),
                               "--max-jobs", "1", "--strict", "--proxy-downloads", "--profile", str(profile),
                               "--timeout", "7", "--threads", "2"], monkeypatch, drive)
    url = seen["url"]
    assert code == 0 and url.startswith("http://127.0.0.1:")
    assert out == f"sd35-mock proxy listening on {url} (upstream {UP}, at most 1 submits)\n"
    (first, headers, body), (second, _, refused) = seen["submits"]
    assert (first, json.loads(body), headers[DRIFT_HEADER]) == (200, {"status": "PENDING", "id": "job-1"}, "L15")
    assert second == 402 and "1 submits were forwarded already" in refused.decode()
    status, _, body = seen["status"]
    assert status == 200 and json.loads(body)["download_urls"][0].startswith(f"{url}/__proxy__/download/")
    status, _, body = seen["slow"]
    assert status == 504 and json.loads(body)["error"] == f"upstream: {UP} did not answer within 7 s"
    assert [c.request.url for c in up.calls][:2] == [f"{UP}/sd3_5/v1", f"{UP}/sd3_5/v1/status/job-1"]
    assert seen["big"] == 405                     # 2 MiB: over the API's 1 MiB, under the proxy's 4 MiB: forwarded
    assert seen["too_large"].startswith(b"HTTP/1.1 413 ") and TOO_LARGE in seen["too_large"]
    lines = record.read_text().splitlines()
    assert len(lines) == 5 and lines[0] == '{"earlier": "run"}' and KEY not in record.read_text()
    assert (seen["gc"], seen["queue_log"]) == ((50_000, 50, 100), logging.ERROR)    # tuned to serve under load
    data = json.loads(report.read_text())
    assert data["live_jobs"] == {"cap": 1, "created": 1, "blocked": 1}
    l15 = next(r for r in data["rows"] if r["id"] == "L15")
    assert l15["result"] == "failed" and l15["observed"][0]["profile"] == {"http_status": {"submit_pending": 200}}
    lines = err.splitlines()
    assert any(line.endswith(" sd35_twin.proxy INFO POST /sd3_5/v1 -> 200 drift L15") and line[:4].isdigit()
               for line in lines)
    assert lines[-1] == f"report written to {report}" and "rows held" in err
    assert "warning:" not in err


def test_main_quiet_logs_warnings_only_and_warns_when_bound_beyond_this_machine(up, monkeypatch):
    up.add_passthru("http://127.0.0.1")
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-1", json=PENDING)
    up.add(responses.GET, f"{UP}/sd3_5/v1/status/job-2", body=requests.ConnectionError("down"))

    seen = {}

    def drive(url):
        port = url.rsplit(":", 1)[1]
        fetch(f"http://127.0.0.1:{port}/sd3_5/v1/status/job-1")
        fetch(f"http://127.0.0.1:{port}/sd3_5/v1/status/job-2")
        seen["bound"] = fetch(f"http://127.0.0.1:{port}/__proxy__/report", headers={"Host": f"0.0.0.0:{port}"})[0]
        seen["other"] = fetch(f"http://127.0.0.1:{port}/__proxy__/report", headers={"Host": f"10.9.8.7:{port}"})[0]

    code, out, err, flushed = run_main(["--upstream", UP, "--port", "0", "--host", "0.0.0.0", "--quiet"], monkeypatch,
                                       drive)
    assert code == 0 and out.startswith("sd35-mock proxy listening on http://127.0.0.1:")
    assert out.endswith(f"(upstream {UP}, at most 20 submits)\n")
    lines = err.splitlines()
    assert lines[0] == ("sd35-mock proxy: warning: --host 0.0.0.0 can be reached from other machines: anyone who "
                        "reaches the proxy can send the API requests with their own key and use up --max-jobs")
    assert flushed.startswith(lines[0] + "\n")              # out before the ready line: a pipe's reader sees it
    assert not any("INFO" in line for line in lines)
    assert any(line.endswith("sd35_twin.proxy WARNING GET /sd3_5/v1/status/job-2 -> 502 upstream could not be "
                             "reached, or closed the connection (ConnectionError)") for line in lines)
    assert "report written" not in err
    assert (seen["bound"], seen["other"]) == (200, 403)      # the report answers the address it is bound to
