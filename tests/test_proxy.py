"""``sd35-mock proxy`` as a server: forwarding as sent, never an open proxy, hostile upstreams, the spend guard,
``--strict``, no key in any file, log line or report, and the command line (ready line, SIGTERM, options)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import re

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sd35_twin.mockserver.proxy import DEFAULT_MAX_JOBS, DRIFT_HEADER, ProxySettings, start
from sd35_twin.mockserver.testing import MockControl
from tests.helpers import refused_port
from tests.proxy_traffic import BASE, KEY, drive, launch_upstream

HEADERS = {"API-Key": KEY, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def upstream():
    with launch_upstream() as mock:
        yield mock


@pytest.fixture
def proxy_for():
    running = []

    def make(url, **settings):
        proxy = start(ProxySettings(upstream=url, **settings))
        running.append(proxy)
        return proxy

    yield make
    for proxy in running:
        proxy.close()


def submits_seen_by(upstream_url: str) -> int:
    return len(MockControl(upstream_url).requests(method="POST"))


# -- forwarding -------------------------------------------------------------------------------------------------

def test_a_request_goes_upstream_as_sent_and_comes_back_unchanged(upstream, proxy_for):
    proxy = proxy_for(upstream.url)
    control = MockControl(upstream.url)
    control.clear_journal()
    raw = b'{"prompt": "as sent",  "negative_prompt": "", "num_inference_steps": 1, "samples": 1, "guidance_scale": 1}'
    via = requests.post(f"{proxy.url}/sd3_5/v1", data=raw, headers={**HEADERS, "X-App": "mine"}, timeout=10)
    assert via.status_code == 200 and via.json()["status"] == "PENDING"     # the upstream accepts only KEY
    entry = control.journal()[-1]
    assert entry["body"] == raw.decode() and entry["headers"]["X-App"] == "mine"
    for path in ("/sd3_5/v1/status/no-such-id", f"/sd3_5/v1/status/{via.json()['id']}"):
        direct = requests.get(f"{upstream.url}{path}", headers={"API-Key": "wrong"}, timeout=10)
        again = requests.get(f"{proxy.url}{path}", headers={"API-Key": "wrong"}, timeout=10)
        assert (again.status_code, again.content) == (direct.status_code, direct.content)
        assert again.headers["Content-Type"] == direct.headers["Content-Type"]
        assert "Transfer-Encoding" not in again.headers


@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("GET", "/openapi.json"), ("GET", "/__mock__/health"), ("POST", "/sd3_5/v2"),
    ("GET", "/files/abc"), ("GET", "/sd3_5/v1/status/a/../../__mock__/health"), ("GET", "/__proxy__/download/x/y"),
])
def test_only_the_api_paths_go_upstream(upstream, proxy_for, method, path):
    proxy = proxy_for(upstream.url)
    control = MockControl(upstream.url)
    control.clear_journal()
    resp = requests.request(method, f"{proxy.url}{path}", headers=HEADERS, timeout=10)
    assert resp.status_code == 404 and resp.json()["status"] == "FAILURE"
    assert control.journal() == []


def test_an_absolute_url_or_connect_never_leaves_for_another_host(upstream, proxy_for):
    """A request line naming another host (as an open proxy would take it) reaches only the path's route."""
    proxy = proxy_for(upstream.url)
    host, port = proxy.url.split("//")[1].split(":")
    for line in (b"GET http://example.invalid/sd3_5/v2 HTTP/1.1", b"CONNECT example.invalid:443 HTTP/1.1"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(line + b"\r\nHost: example.invalid\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.split(b" ", 2)[1] in (b"404", b"405"), answer[:200]


def test_a_web_page_may_neither_use_the_proxy_nor_read_its_report(upstream, proxy_for):
    proxy = proxy_for(upstream.url, max_jobs=1)
    before = submits_seen_by(upstream.url)
    page = requests.post(f"{proxy.url}/sd3_5/v1", data="{}", timeout=10,
                         headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
    assert page.status_code == 403 and page.json()["errors"][0]["field"] == "Origin"
    rebound = requests.get(f"{proxy.url}/__proxy__/report", headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 403 and rebound.json()["errors"][0]["field"] == "Host"
    assert submits_seen_by(upstream.url) == before and proxy.proxy.forwarded_submits == 0
    local_app = requests.post(f"{proxy.url}/sd3_5/v1", json=BASE, timeout=10,
                              headers={**HEADERS, "Origin": "http://localhost:3000"})
    assert local_app.status_code == 200


def test_download_urls_pass_through_the_proxy_and_images_are_checked(upstream, proxy_for, tmp_path):
    proxy = proxy_for(upstream.url, proxy_downloads=True, record=str(tmp_path / "rec.jsonl"))
    job = requests.post(f"{proxy.url}/sd3_5/v1", json=dict(BASE, width=512, height=256), headers=HEADERS,
                        timeout=10).json()
    for _ in range(3):
        job = requests.get(f"{proxy.url}/sd3_5/v1/status/{job['id']}", headers=HEADERS, timeout=10).json()
    url = job["download_urls"][0]
    assert url.startswith(f"{proxy.url}/__proxy__/download/")
    image = requests.get(url, timeout=10)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"
    lines = [json.loads(line) for line in (tmp_path / "rec.jsonl").read_text().splitlines()]
    download = [e for e in lines if e["kind"] == "download"][-1]
    assert download["request"]["url"].startswith(upstream.url + "/files/")        # the original URL is kept
    assert download["response"]["image"] == {"type": "jpeg", "width": 512, "height": 256, "decodable": True}
    assert download["response"]["body"]["_binary"] == "image/jpeg"                # summarised, never stored
    rows = {r["id"]: r for r in proxy.proxy.report()["rows"]}
    assert rows["L27"]["result"] == "held"


# -- hostile upstreams ------------------------------------------------------------------------------------------

class Hostile:
    """A tiny upstream that misbehaves as told: ``mode`` is read per request."""

    def __init__(self):
        self.mode = "ok"
        self.paths: list[str] = []          # every path that reached this upstream
        self.release = threading.Event()
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.answer()

            def do_GET(self):  # noqa: N802
                self.answer()

            def answer(self):
                hostile.paths.append(self.path)
                mode = hostile.mode
                if mode == "hang":
                    hostile.release.wait(30)
                    return
                if mode == "trickle":      # a byte every 50 ms: each read is quick, the whole never ends
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    for _ in range(400):
                        if hostile.release.wait(0.05):
                            return
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                if mode == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.close_connection = True
                    for stream in (self.rfile, self.wfile, self.connection):   # the last close sends the RST
                        stream.close()
                    return
                status, ctype, body, extra = {
                    "ok": (200, "application/json", b'{"status":"PENDING","id":"h1"}', {}),
                    "html502": (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>", {}),
                    "big": (200, "application/json", b"[" + b"0," * (5 * 1024 * 1024) + b"0]", {}),
                    "badjson": (200, "application/json", b'{"status": "PENDING", "id": ', {}),
                    "redirect": (302, "text/plain", b"", {"Location": "http://evil.invalid/steal"}),
                }[mode]
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    server = Hostile()
    yield server
    server.close()


@pytest.mark.parametrize("mode, status, rule, recorded", [
    ("html502", 502, "json", "502 Bad Gateway"),
    ("hang", 504, "timeout", None),
    ("trickle", 504, "timeout", None),
    ("reset", 502, "reachable", None),
    ("big", 502, "maxLength", None),
    ("badjson", 502, "json", '{"status": "PENDING", "id": '),
    ("redirect", 502, "redirect", None),
])
def test_a_hostile_upstream_is_a_failure_naming_upstream_and_the_proxy_keeps_serving(hostile, proxy_for, tmp_path,
                                                                                     mode, status, rule, recorded):
    record = tmp_path / "rec.jsonl"
    proxy = proxy_for(hostile.url, timeout=0.5, record=str(record))
    hostile.mode = mode
    resp = requests.post(f"{proxy.url}/sd3_5/v1", json=BASE, headers=HEADERS, timeout=10)
    body = resp.json()
    assert resp.status_code == status and body["status"] == "FAILURE"
    assert body["errors"] == [{"field": "upstream", "rule": rule, "message": body["errors"][0]["message"]}]
    assert body["error"].startswith("upstream: ") and "evil.invalid/steal" not in body["error"]
    entry = json.loads(record.read_text().splitlines()[-1])
    assert entry["error"].startswith("upstream: ")
    if recorded:
        assert recorded in str(entry["response"]["body"])                       # what the upstream sent is kept
    hostile.mode = "ok"
    again = requests.post(f"{proxy.url}/sd3_5/v1", json=BASE, headers=HEADERS, timeout=10)
    assert again.status_code == 200 and again.json() == {"status": "PENDING", "id": "h1"}
    assert requests.get(f"{proxy.url}/__proxy__/report", timeout=10).status_code == 200


_SEGMENTS = st.sampled_from(["sd3_5", "v1", "status", "..", ".", "%2F", "%2e%2e", "abc", "", "__proxy__", "__mock__",
                             "http:", "evil.invalid", "?x=1", "#f", "%00", "download"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]),
       segments=st.lists(_SEGMENTS, max_size=6))
@example(method="GET", segments=["sd3_5", "v1", "status", ".."])
@example(method="GET", segments=["sd3_5", "v1", "status", "%2e%2e"])
@example(method="GET", segments=["sd3_5", "v1", "status", "."])
@example(method="GET", segments=["sd3_5", "v1", "status", "%2F", "__mock__"])
def test_no_path_but_the_api_s_two_ever_reaches_the_upstream(hostile, proxy_for, method, segments):
    if not hasattr(hostile, "proxy"):
        hostile.proxy = proxy_for(hostile.url, max_jobs=10_000)
    hostile.paths.clear()
    path = "/" + "/".join(segments)
    with socket.create_connection(("127.0.0.1", int(hostile.proxy.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                     f"Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 ")
    for reached in hostile.paths:
        assert reached == "/sd3_5/v1" or re.fullmatch(r"/sd3_5/v1/status/[A-Za-z0-9._:%-]+(\?.*)?", reached) \
            or re.fullmatch(r"/sd3_5/v1\?.*", reached), (path, reached)
        assert ".." not in reached.split("?")[0].split("/"), (path, reached)


def test_an_unreachable_upstream_is_a_502_naming_upstream(proxy_for):
    with refused_port() as port:
        proxy = proxy_for(f"http://127.0.0.1:{port}", timeout=2)
        resp = requests.get(f"{proxy.url}/sd3_5/v1/status/abc", headers=HEADERS, timeout=10)
    assert resp.status_code == 502 and resp.json()["errors"][0]["field"] == "upstream"


# -- the spend guard, --strict ---------------------------------------------------------------------------------

def test_the_spend_guard_forwards_exactly_n_submits_even_at_once(upstream, proxy_for):
    proxy = proxy_for(upstream.url, max_jobs=3)
    before = submits_seen_by(upstream.url)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.post(f"{proxy.url}/sd3_5/v1", json=BASE, headers=HEADERS,
                                                        timeout=10), range(8)))
    assert submits_seen_by(upstream.url) - before == 3
    refused = [a for a in answers if a.status_code == 402]
    assert len(refused) == 5 and all("--max-jobs" in a.json()["error"] for a in refused)
    assert all(a.json()["errors"][0]["field"] == "--max-jobs" for a in refused)
    assert proxy.proxy.report()["spend"] == {"max_jobs": 3, "forwarded_submits": 3, "refused_submits": 5}
    # status reads are free: they still go through
    job = next(a for a in answers if a.status_code == 200).json()["id"]
    assert requests.get(f"{proxy.url}/sd3_5/v1/status/{job}", headers=HEADERS, timeout=10).status_code == 200
    assert DEFAULT_MAX_JOBS == 20


def test_a_body_the_proxy_refuses_spends_no_job_of_the_guard(upstream, proxy_for):
    proxy = proxy_for(upstream.url, max_jobs=1)
    huge = requests.post(f"{proxy.url}/sd3_5/v1", data=b"x" * (5 * 1024 * 1024), headers=HEADERS, timeout=30)
    assert huge.status_code == 413 and huge.json()["errors"][0]["field"] == "body"
    assert requests.post(f"{proxy.url}/sd3_5/v1", json=BASE, headers=HEADERS, timeout=10).status_code == 200
    assert proxy.proxy.forwarded_submits == 1


def test_strict_names_the_drifted_rows_in_a_header(tmp_path, proxy_for):
    with launch_upstream({"http_status": {"submit_pending": 202}}) as up:
        strict = proxy_for(up.url, strict=True)
        lax = proxy_for(up.url)
        answer = requests.post(f"{strict.url}/sd3_5/v1", json=BASE, headers=HEADERS, timeout=10)
        assert answer.status_code == 202 and answer.headers[DRIFT_HEADER] == "L15"
        assert DRIFT_HEADER not in requests.post(f"{lax.url}/sd3_5/v1", json=BASE, headers=HEADERS,
                                                 timeout=10).headers
        held = requests.get(f"{strict.url}/sd3_5/v1/status/{answer.json()['id']}", headers=HEADERS, timeout=10)
        assert DRIFT_HEADER not in held.headers
        row = next(r for r in strict.proxy.report()["rows"] if r["id"] == "L15")
        assert "L15: submit_pending answered HTTP 202, the profile assumes 200" in row["examples"]


def test_the_report_page_is_in_the_dashboards_style(upstream, proxy_for):
    proxy = proxy_for(upstream.url)
    requests.post(f"{proxy.url}/sd3_5/v1", json=BASE, headers=HEADERS, timeout=10)
    page = requests.get(f"{proxy.url}/__proxy__/", timeout=10)
    assert page.status_code == 200 and "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    assert 'href="/__proxy__/dashboard.css"' in page.text and "L15" in page.text and "pill-success" in page.text
    assert requests.get(f"{proxy.url}/__proxy__/dashboard.css", timeout=10).headers["Content-Type"].startswith("text/css")


# -- the command line: ready line, SIGTERM, no key anywhere ------------------------------------------------------

def run_proxy(*args):
    return subprocess.Popen([sys.executable, "-m", "sd35_twin.mockserver", "proxy", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_key_is_in_no_file_log_line_or_report(tmp_path, upstream):
    record, report = tmp_path / "calls.jsonl", tmp_path / "live.json"
    process = run_proxy("--upstream", upstream.url, "--record", str(record), "--report", str(report),
                        "--proxy-downloads", "--strict", "--max-jobs", "100")
    try:
        ready = process.stdout.readline()
        assert ready.startswith("sd35-mock proxy listening on http://127.0.0.1:")
        url = ready.split("listening on ")[1].split()[0]
        drive(url, upstream.url, tmp_path)
        # the key echoed in a body: a batch_id that is the key
        requests.post(f"{url}/sd3_5/v1", json=dict(BASE, batch_id=KEY), headers=HEADERS, timeout=10)
        page = requests.get(f"{url}/__proxy__/", timeout=10).text + requests.get(f"{url}/__proxy__/report",
                                                                                 timeout=10).text
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err[-2000:]
    assert "rows held" in err and "L15" in err and f"report written to {report}" in err   # the table on stderr
    assert "POST /sd3_5/v1 -> 200" in err                                                # the log is there...
    texts = {"record": record.read_text(), "report": report.read_text(), "stdout": ready + out, "stderr": err,
             "page": page}
    assert "[REDACTED]" in texts["record"]
    for name, text in texts.items():
        assert KEY not in text, f"the key is in the {name}"                          # ...and has no key
    for path in (record, report):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(texts["report"])["schema"] == "sd35-contracts-report/1"


@pytest.mark.parametrize("args, option", [
    (["--upstream", "ftp://api.example"], "--upstream"),
    (["--upstream", "https://api.example/sd3_5"], "--upstream"),
    (["--upstream", "https://user:pw@api.example"], "--upstream"),
    (["--port", "70000"], "--port"),
    (["--max-jobs", "-1"], "--max-jobs"),
    (["--max-jobs", "lots"], "--max-jobs"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--record", "/nonexistent-dir/x.jsonl"], "--record"),
    (["--report", "/tmp"], "--report"),
    (["--profile", "/nonexistent-profile.json"], "--profile"),
    (["--host", "999.1.1.1"], "--host"),
    (["--threads", "0"], "--threads"),
    (["--bogus"], "--bogus"),
])
def test_every_option_is_checked(args, option, tmp_path):
    process = run_proxy(*args)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and lines[0].startswith("sd35-mock proxy: error:"), err


def test_a_profile_the_twin_refuses_is_refused_by_name(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"http_status": {"submit_pending": 99}}))
    process = run_proxy("--profile", str(bad))
    _, err = process.communicate(timeout=20)
    assert process.returncode == 2 and "--profile" in err and "submit_pending" in err and len(err.splitlines()) == 1
