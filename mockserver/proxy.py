"""``sd35-mock proxy``: a shadow proxy between an app and the live API. The app's own calls go upstream as sent
and come back unchanged; each exchange is read for the ledger's rows (``evidence``: held, drifted, not seen),
recorded redacted, and learned into a profile the twin can load.

    sd35-mock proxy --record calls.jsonl --report live.json --max-jobs 10
    # point the app at http://127.0.0.1:8090 instead of https://api.imagepipeline.io

Never an open proxy: only the API's two paths go upstream, only to ``--upstream``'s host, redirects are never
followed, and a download goes out only to a URL the upstream itself answered (``--proxy-downloads``). Everything
else is a 404 FAILURE. An upstream that fails (unreachable, slow, reset, an HTML page, a body too large, not
JSON, a redirect) is a 502 or 504 FAILURE naming ``upstream``; the proxy keeps serving. The key is never written:
the recording redacts it (headers and any echo), the log and the report never show it, files are owner-only.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

import requests
import urllib3
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .cli import _host, _Parser, _whole
from .config import is_origin, load_profile
from .errors import FieldError, MockError
from .evidence import Evidence, Redactor, exchange_from_entry, format_rows, key_fingerprint, summarise_body
from .http.answers import failure_body
from .http.guard import _host_name
from .webhooks import is_loopback_host

DEFAULT_UPSTREAM = "https://api.imagepipeline.io"
DEFAULT_PORT = 8090
DEFAULT_MAX_JOBS = 20          # submits forwarded at most: a handful of real jobs, so a runaway loop costs little
DEFAULT_TIMEOUT = 120.0        # seconds an upstream answer may take in all (a live submit can be slow)
MAX_REQUEST_BYTES = 4 * 1024 * 1024     # what the proxy takes from the app (the API refuses over 1 MiB: L26)
MAX_ANSWER_BYTES = 1024 * 1024          # a JSON answer of the API is a few hundred bytes
MAX_IMAGE_BYTES = 16 * 1024 * 1024      # a 1536x1536 PNG is well under this
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_TOKENS = 40_000                     # download URLs remembered for --proxy-downloads
DRIFT_HEADER = "X-Sd35-Drift"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length", "content-encoding", "accept-encoding", "expect"}
ID_PATTERN = re.compile(r"^(?!\.+$)[A-Za-z0-9._:-]{1,200}$")   # not "." or "..": a URL library would resolve them
NAME_PATTERN = re.compile(r"[^A-Za-z0-9._-]")

log = logging.getLogger("sd35_twin.proxy")


class UpstreamError(Exception):
    """The upstream did not give an answer the app can have: a 502 or 504 FAILURE naming ``upstream``."""

    def __init__(self, status: int, rule: str, message: str, answer: dict | None = None):
        super().__init__(message)
        self.status, self.rule, self.message, self.answer = status, rule, message, answer


@dataclass
class ProxySettings:
    upstream: str = DEFAULT_UPSTREAM
    profile: dict | None = None
    record: str | None = None
    report: str | None = None
    max_jobs: int = DEFAULT_MAX_JOBS
    strict: bool = False
    proxy_downloads: bool = False
    timeout: float = DEFAULT_TIMEOUT


def private_file(path: str | Path, *, append: bool) -> io.TextIOWrapper:
    """A file only its owner may read (0600, also when it existed), opened for text."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "a" if append else "w", encoding="utf-8")


class Recording:
    """The exchanges as JSON lines, redacted, streamed to disk (nothing kept in memory)."""

    def __init__(self, path: str | Path, redactor: Redactor):
        self.path = Path(path)
        self.redactor = redactor
        self._file = private_file(self.path, append=True)
        self._lock = threading.Lock()
        self.count = 0

    def write(self, entry: dict) -> None:
        line = self.redactor.text(json.dumps(entry, default=str, ensure_ascii=False))  # nothing secret, however it got in
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()


@dataclass
class _Answer:
    status: int
    headers: list[tuple[str, str]]
    content: bytes
    content_type: str = ""
    extra: dict = field(default_factory=dict)


class ShadowProxy:
    """The proxy's state: the upstream session, the evidence, the recording, the spend guard, the download map."""

    def __init__(self, settings: ProxySettings):
        self.settings = settings
        parts = urlsplit(settings.upstream)
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.evidence = Evidence(settings.profile)
        self.redactor = Redactor()
        self.recording = Recording(settings.record, self.redactor) if settings.record else None
        self.session = requests.Session()
        self.session.trust_env = False   # no proxy variables, no .netrc credentials added to a request
        self.started_at = time.time()
        self.base_url = ""               # the proxy's own URL, set once it is bound (download URLs)
        self.bound_host = ""             # the address it is bound to (its report's Host may name it)
        self._lock = threading.Lock()
        self.forwarded_submits = 0
        self.refused_submits = 0
        self._tokens: OrderedDict[str, tuple[str, str]] = OrderedDict()   # token -> (url, name)
        self._token_of: dict[str, str] = {}

    # -- the spend guard -------------------------------------------------------------------------

    def take_submit(self) -> bool:
        with self._lock:
            if self.forwarded_submits >= self.settings.max_jobs:
                self.refused_submits += 1
                return False
            self.forwarded_submits += 1
            return True

    # -- upstream --------------------------------------------------------------------------------

    def call(self, method: str, url: str, headers: dict, data: bytes | None, limit: int) -> _Answer:
        """One upstream request: no redirect followed, at most ``limit`` bytes, ``timeout`` seconds in all."""
        timeout = self.settings.timeout
        deadline = time.monotonic() + timeout
        headers = {**headers, "Accept-Encoding": "identity"}   # the body's bytes as the upstream wrote them
        try:
            resp = self.session.request(method, url, headers=headers, data=data, allow_redirects=False, stream=True,
                                        timeout=(min(10.0, timeout), timeout))
        except requests.Timeout:
            raise UpstreamError(504, "timeout", f"did not answer within {timeout:g} s") from None
        except requests.RequestException as exc:
            raise UpstreamError(502, "reachable", f"could not be reached, or closed the connection ({_reason(exc)})") from None
        try:
            chunks, size = [], 0
            seen = {"status": resp.status_code, "headers": dict(resp.headers)}
            try:
                for chunk in _chunks(resp.raw):
                    size += len(chunk)
                    if size > limit:
                        raise UpstreamError(502, "maxLength", f"answered more than {limit} bytes",
                                            {**seen, "body": b"".join(chunks)[:4096]})
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise UpstreamError(504, "timeout", f"did not finish its answer within {timeout:g} s",
                                            {**seen, "body": b"".join(chunks)[:4096]})
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                timed_out = "timed out" in str(exc).lower() or time.monotonic() > deadline
                raise UpstreamError(504 if timed_out else 502, "timeout" if timed_out else "complete",
                                    f"did not finish its answer within {timeout:g} s" if timed_out
                                    else f"broke off its answer ({_reason(exc)})",
                                    {**seen, "body": b"".join(chunks)[:4096]}) from None
            headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP]
            return _Answer(resp.status_code, headers, b"".join(chunks), resp.headers.get("Content-Type", ""),
                           {"location": resp.headers.get("Location")})
        finally:
            resp.close()

    # -- download URLs ---------------------------------------------------------------------------

    def rewrite(self, body: dict) -> dict:
        """A job body whose download URLs pass through the proxy (the originals stay in the recording)."""
        urls = body.get("download_urls")
        if not isinstance(urls, list):
            return body
        out = []
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                out.append(url)
                continue
            with self._lock:
                token = self._token_of.get(url)
                if token is None:
                    token = os.urandom(12).hex()
                    name = NAME_PATTERN.sub("_", url.rsplit("/", 1)[-1].split("?")[0])[:100] or "image"
                    self._tokens[token] = (url, name)
                    self._token_of[url] = token
                    while len(self._tokens) > MAX_TOKENS:
                        old, (old_url, _) = self._tokens.popitem(last=False)
                        self._token_of.pop(old_url, None)
                name = self._tokens[token][1]
            out.append(f"{self.base_url}/__proxy__/download/{token}/{name}")
        return {**body, "download_urls": out}

    def original(self, token: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(token)
            return entry[0] if entry else None

    # -- recording and evidence ------------------------------------------------------------------

    def record(self, entry: dict) -> None:
        """Append to the recording; a failed write (a full disk) is logged, and the app still gets its answer:
        the upstream has answered, maybe created a job, and the app must know."""
        if self.recording is not None:
            try:
                self.recording.write(entry)
            except (OSError, ValueError) as exc:
                log.error("recording to %s failed: %s", self.recording.path, type(exc).__name__)

    def report(self) -> dict:
        summary = self.evidence.summary()
        with self._lock:
            summary["spend"] = {"max_jobs": self.settings.max_jobs, "forwarded_submits": self.forwarded_submits,
                                "refused_submits": self.refused_submits}
        summary["upstream"] = self.upstream
        summary["profile_hint"] = self.evidence.learned()
        return json.loads(self.redactor.text(json.dumps(summary, default=str)))   # no key, however it got in

    def target(self) -> dict:
        kind = "live" if self.upstream == DEFAULT_UPSTREAM else "proxy"
        return {"kind": kind, "base_url": self.upstream, "via": "sd35-mock proxy"}

    def write_report(self) -> Path | None:
        if not self.settings.report:
            return None
        data = self.evidence.contracts_report(self.target(), started_at=self.started_at)
        with self._lock:
            data["live_jobs"] = {"cap": self.settings.max_jobs, "created": self.forwarded_submits,
                                 "blocked": self.refused_submits}
        with private_file(self.settings.report, append=False) as fh:
            fh.write(self.redactor.text(json.dumps(data, indent=2, default=str)) + "\n")
        return Path(self.settings.report)

    def close(self) -> None:
        self.session.close()
        if self.recording is not None:
            self.recording.close()


def _chunks(raw) -> Iterator[bytes]:
    """An answer's body as it arrives: each read returns what one socket read gave (``read1``), so the deadline
    is checked between reads even against an upstream that trickles a byte at a time (``iter_content`` would
    wait for a whole chunk, and a trickle restarts the read timeout with every byte)."""
    read1 = getattr(raw, "read1", None)
    while True:
        chunk = read1(64 * 1024, decode_content=True) if read1 is not None else raw.read(1024, decode_content=True)
        if not chunk:
            return
        yield chunk


def _reason(exc: BaseException) -> str:
    text = type(exc).__name__
    inner = getattr(exc, "args", ())
    if inner and isinstance(inner[0], BaseException):
        text += f": {type(inner[0]).__name__}"
    return text


def _failure(field_name: str, rule: str, message: str, status: int, extra: dict | None = None) -> Response:
    body = failure_body([FieldError(field_name, rule, message)])
    resp = Response(json.dumps(body, separators=(",", ":")) + "\n", status=status, mimetype="application/json")
    for name, value in (extra or {}).items():
        resp.headers[name] = value
    return resp


def _loopback_origin(origin: str) -> bool:
    scheme, separator, authority = origin.partition("://")
    name = _host_name(authority)
    return scheme.lower() in ("http", "https") and bool(separator) and name is not None and is_loopback_host(name)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _image(raw: bytes) -> dict:
    """Type, dimensions and whether it decodes (Pillow), for a download; the bytes are never kept."""
    from PIL import Image

    info: dict[str, Any] = {"type": None, "width": None, "height": None, "decodable": False}
    try:
        with Image.open(io.BytesIO(raw)) as img:
            info.update(type=(img.format or "").lower() or None, width=img.width, height=img.height)
            if img.width * img.height <= MAX_IMAGE_PIXELS:
                img.load()
                info["decodable"] = True
    except Exception:   # noqa: BLE001 - any decoding error means "not decodable", which is the finding
        pass
    return info


# --- the app -------------------------------------------------------------------------------------------------

def create_proxy_app(proxy: ShadowProxy) -> Flask:
    """The proxy as a WSGI app: the API's two paths, the downloads it handed out, and its report."""
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    css = Path(__file__).parent / "http" / "static" / "dashboard.css"

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {404: ("path", "exists", "is not an API path: this proxy forwards only POST /sd3_5/v1 and "
                                            "GET /sd3_5/v1/status/{id}"),
                    413: ("body", "maxLength", f"is too large: at most {MAX_REQUEST_BYTES} bytes"),
                    405: ("method", "allowed", "is not allowed here")}
        name, rule, message = messages.get(exc.code or 500, ("request", "valid", exc.description or "is invalid"))
        return _failure(name, rule, message, exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.error("proxy error: %s", proxy.redactor.text(f"{type(exc).__name__}: {exc}"))   # no traceback, no key
        return _failure("proxy", "internal", "internal error in the proxy (see its log)", 500)

    @app.before_request
    def only_this_machine():
        """A web page open in the user's browser may not use the proxy (a cross-site POST spends the guard's
        jobs) nor read its report (DNS rebinding): an Origin must be loopback, and the report's Host must be."""
        origin = request.headers.get("Origin")
        if origin is not None and not _loopback_origin(origin):
            return _failure("Origin", "allowed", f"{origin!r} is another site: a web page may not use the proxy", 403)
        if request.path.startswith("/__proxy__") and not request.path.startswith("/__proxy__/download/"):
            name = _host_name(request.headers.get("Host", ""))
            if name is None or not (is_loopback_host(name) or name == proxy.bound_host):
                return _failure("Host", "allowed", "is not this proxy's address: use a loopback name", 403)
        return None

    @app.route("/sd3_5/v1", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def submit():
        request.get_data()   # read (and size-checked: 413) before the guard counts it as forwarded
        if request.method == "POST" and not proxy.take_submit():
            return _failure("--max-jobs", "spend", f"the proxy's spend guard: {proxy.settings.max_jobs} submits were "
                            f"forwarded already (sd35-mock proxy --max-jobs); this one did not reach the upstream", 402)
        return forward("submit" if request.method == "POST" else "other", "/sd3_5/v1")

    @app.route("/sd3_5/v1/status/<job_id>", methods=["GET", "HEAD"])
    def status(job_id: str):
        if not ID_PATTERN.match(job_id):
            return _failure("id", "pattern", "is not a job id this proxy forwards (letters, digits, . _ : -, not dots alone)", 404)
        return forward("status", f"/sd3_5/v1/status/{quote(job_id, safe='')}", job_id=job_id)

    @app.route("/__proxy__/download/<token>/<name>", methods=["GET"])
    def download(token: str, name: str):
        url = proxy.original(token)
        if url is None:
            return _failure("path", "exists", "is not a download URL this proxy handed out", 404)
        return fetch_download(url)

    @app.route("/__proxy__/report", methods=["GET"])
    def report_json():
        return Response(json.dumps(proxy.report(), default=str) + "\n", mimetype="application/json")

    @app.route("/__proxy__/", methods=["GET"])
    @app.route("/__proxy__", methods=["GET"])
    def report_page():
        resp = Response(_page(proxy.report()), mimetype="text/html")
        resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'self'; img-src 'self'"
        return resp

    @app.route("/__proxy__/dashboard.css", methods=["GET"])
    def stylesheet():
        return Response(css.read_bytes(), mimetype="text/css")

    def forward(kind: str, path: str, job_id: str | None = None) -> Response:
        key = request.headers.get("API-Key")
        proxy.redactor.add(key)
        data = request.get_data() if request.method not in ("GET", "HEAD") else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        query = request.query_string.decode("latin-1")
        url = proxy.upstream + path + (f"?{query}" if query else "")
        started = time.monotonic()
        entry: dict[str, Any] = {"at": round(time.time(), 3), "kind": kind, "request": {
            "method": request.method, "path": path + (f"?{query}" if query else ""),
            "headers": proxy.redactor.headers(headers), "bytes": len(data or b""),
            "body": summarise_body(data, headers.get("Content-Type", ""), proxy.redactor)}}
        try:
            answer = proxy.call(request.method, url, headers, data, MAX_ANSWER_BYTES)
            if 300 <= answer.status < 400:
                where = urlsplit(answer.extra.get("location") or "").netloc or "(no Location)"
                raise UpstreamError(502, "redirect", f"redirected to {where}: not followed",
                                    {"status": answer.status, "headers": dict(answer.headers), "body": answer.content})
            body = _json(answer.content) if answer.content else None
            if request.method != "HEAD" and not isinstance(body, (dict, list)):
                ctype = answer.content_type.split(";")[0] or "no content type"
                raise UpstreamError(502, "json", f"answered HTTP {answer.status} {ctype}, not JSON",
                                    {"status": answer.status, "headers": dict(answer.headers), "body": answer.content})
        except UpstreamError as err:
            return upstream_failed(entry, err, started)
        entry["response"] = {"status": answer.status, "headers": proxy.redactor.headers(dict(answer.headers)),
                             "body": summarise_body(answer.content, answer.content_type, proxy.redactor)}
        exchange = exchange_from_entry(entry, proxy.evidence, who=key_fingerprint(key))
        readings = proxy.evidence.read(exchange) if exchange is not None else []
        content = answer.content
        if proxy.settings.proxy_downloads and isinstance(body, dict) and "download_urls" in body:
            content = json.dumps(proxy.rewrite(body), ensure_ascii=False).encode("utf-8")
        return finish(entry, readings, answer, content, started)

    def fetch_download(url: str) -> Response:
        started = time.monotonic()
        entry: dict[str, Any] = {"at": round(time.time(), 3), "kind": "download",
                                 "request": {"method": "GET", "url": url}}
        try:
            answer = proxy.call("GET", url, {"Accept": request.headers.get("Accept", "*/*")}, None, MAX_IMAGE_BYTES)
            if 300 <= answer.status < 400:
                where = urlsplit(answer.extra.get("location") or "").netloc or "(no Location)"
                raise UpstreamError(502, "redirect", f"the download redirected to {where}: not followed",
                                    {"status": answer.status, "headers": dict(answer.headers), "body": b""})
        except UpstreamError as err:
            return upstream_failed(entry, err, started)
        ok = 200 <= answer.status < 300
        image = _image(answer.content) if ok else None
        entry["response"] = {"status": answer.status, "headers": proxy.redactor.headers(dict(answer.headers)),
                             "body": summarise_body(answer.content, answer.content_type, proxy.redactor)}
        if image is not None:
            entry["response"]["image"] = image
        exchange = exchange_from_entry(entry, proxy.evidence)
        readings = proxy.evidence.read(exchange) if exchange is not None else []
        return finish(entry, readings, answer, answer.content, started)

    def finish(entry: dict, readings: list, answer: _Answer, content: bytes, started: float) -> Response:
        drifted = sorted({r.row for r in readings if not r.held})
        entry["readings"] = [{"row": r.row, "held": r.held, "text": r.text} for r in readings]
        entry["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
        proxy.record(entry)
        log.info("%s %s -> %s%s", entry["request"]["method"],
                 proxy.redactor.text(entry["request"].get("path") or entry["kind"]), answer.status,
                 f" drift {','.join(drifted)}" if drifted else "")
        resp = Response(content, status=answer.status)
        for name, value in answer.headers:
            if name.lower() != "content-type":
                resp.headers.add(name, value)
        resp.headers["Content-Type"] = answer.content_type or "application/octet-stream"
        if proxy.settings.strict and drifted:
            resp.headers[DRIFT_HEADER] = ",".join(drifted)
        return resp

    def upstream_failed(entry: dict, err: UpstreamError, started: float) -> Response:
        seen = err.answer or {}
        if seen:
            entry["response"] = {"status": seen.get("status"), "headers": proxy.redactor.headers(seen.get("headers")),
                                 "body": summarise_body(seen.get("body"), (seen.get("headers") or {}).get(
                                     "Content-Type", ""), proxy.redactor)}
        entry["error"] = f"upstream: {err.message}"
        entry["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
        proxy.record(entry)
        log.warning("%s %s -> %s upstream %s", entry["request"]["method"],
                    proxy.redactor.text(entry["request"].get("path") or entry["kind"]), err.status, err.message)
        return _failure("upstream", err.rule, f"{proxy.upstream} {err.message}", err.status)

    return app


def _page(report: dict) -> str:
    """The report as a page in the dashboard's style (its stylesheet; no script, no inline style)."""
    esc = html.escape
    pills = {"held": "pill-success", "drifted": "pill-failure", "not_seen": "pill-pending"}
    rows = []
    for row in report["rows"]:
        learned = json.dumps(row["profile_hint"], sort_keys=True) if row.get("profile_hint") else ""
        example = (row.get("examples") or [""])[-1]
        rows.append(f"<tr><td>{esc(row['id'])}</td><td><span class=\"pill {pills[row['result']]}\">"
                    f"{esc(row['result'].replace('_', ' '))}</span></td><td>{row.get('held', 0)}</td>"
                    f"<td>{row.get('drifted', 0)}</td><td>{esc(row['behaviour'])}</td><td>{esc(example)}</td>"
                    f"<td><code>{esc(learned)}</code></td></tr>")
    spend = report["spend"]
    learned = json.dumps(report["profile_hint"], indent=2, sort_keys=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sd35 proxy: evidence</title>
<link rel="stylesheet" href="/__proxy__/dashboard.css"></head>
<body><header class="top"><span class="brand"><span class="logo" aria-hidden="true"></span>SD3.5 <span>proxy</span></span>
<div class="facts"><span class="fact">upstream {esc(report['upstream'])}</span>
<span class="fact">{report['exchanges']} exchanges</span>
<span class="fact">{spend['forwarded_submits']} of {spend['max_jobs']} submits forwarded</span></div></header>
<main><div class="bar"><h1>What the live API did, row by row</h1>
<p class="muted">{report['held']} rows held, {report['drifted']} drifted, {report['not_seen']} not seen.
JSON: <a href="/__proxy__/report">/__proxy__/report</a></p></div>
<div class="card"><table><thead><tr><th>row</th><th>result</th><th>held</th><th>drifted</th><th>behaviour</th>
<th>example</th><th>learned</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table></div>
<div class="card"><h2>Learned profile</h2><p class="muted small">sd35-mock --profile FILE answers as the API was seen
to.</p><pre>{esc(learned)}</pre></div></main></body></html>
"""


# --- serving -------------------------------------------------------------------------------------------------

@dataclass
class RunningProxy:
    url: str
    proxy: ShadowProxy
    running: Any     # server.RunningServer, with no backend of its own

    def close(self) -> None:
        """Stop serving, then write the report and close the recording."""
        self.running.close()
        self.proxy.write_report()
        self.proxy.close()


class _NoBackend:
    """The proxy holds no twin: ``RunningServer.close()`` has nothing of a backend to stop."""

    def close(self) -> None:
        pass


def start(settings: ProxySettings, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> RunningProxy:
    """The proxy in a daemon thread on a free port (tests); the caller closes it, which writes the report."""
    from .server import RunningServer, make_server, server_url

    proxy = ShadowProxy(settings)
    app = create_proxy_app(proxy)
    server = make_server(app, host, port, threads, MAX_REQUEST_BYTES)
    proxy.base_url, proxy.bound_host = server_url(server, host), host.strip("[]").lower()
    thread = threading.Thread(target=server.run, name="sd35-proxy", daemon=True)
    thread.start()
    return RunningProxy(proxy.base_url, proxy, RunningServer(proxy.base_url, _NoBackend(), app, server, thread))


def _upstream(text: str) -> str:
    """An argparse type: http(s)://host[:port], nothing else (the proxy never goes anywhere but that host)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: {exc}") from None
    if not is_origin(text):
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: must be http:// or https:// and a host (and port), "
                                         f"no path, query, fragment or credentials")
    return text.rstrip("/")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a number of seconds above 0, at most 3600")
    return value


def _writable(text: str) -> str:
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"invalid path {text!r}: must be a file, not a directory")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"invalid path {text!r}: its directory {str(path.parent)!r} does not exist")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sd35-mock proxy", description="A shadow proxy: the app's own calls to the live API, checked "
                "against the twin's ledger, recorded (keys removed) and learned into a profile.")
    p.add_argument("--upstream", type=_upstream, default=DEFAULT_UPSTREAM,
                   help=f"the API to forward to (default {DEFAULT_UPSTREAM}); only its host is ever contacted")
    p.add_argument("--host", type=_host, default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_whole(0, 65535), default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--record", type=_writable, metavar="FILE",
                   help="append every exchange, keys removed and images summarised, as JSON lines (mode 0600)")
    p.add_argument("--report", type=_writable, metavar="FILE",
                   help="on exit, write the evidence as a contracts report (python -m sd35_twin.contracts drift)")
    p.add_argument("--max-jobs", type=_whole(0, 1_000_000), default=DEFAULT_MAX_JOBS, metavar="N",
                   help=f"forward at most N submits (default {DEFAULT_MAX_JOBS}); later ones get a FAILURE and never "
                        f"reach the upstream")
    p.add_argument("--strict", action="store_true",
                   help=f"an answer that drifted carries {DRIFT_HEADER}: the rows, so an app's tests can fail on it")
    p.add_argument("--proxy-downloads", action="store_true",
                   help="rewrite download URLs to pass through the proxy, so images are checked too")
    p.add_argument("--profile", metavar="FILE", help="the twin's profile to check against (default: the default one)")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"an upstream answer's time in all (default {DEFAULT_TIMEOUT:g}); then 504")
    p.add_argument("--threads", type=_whole(1, 256), default=8, help="threads serving requests (default 8)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile)
    except MockError as exc:
        parser.error("; ".join(f"argument --profile: {e.field.partition('.')[2] or e.field}: {e.message}"
                               for e in exc.errors))
    except OSError as exc:
        parser.error(f"argument --profile: cannot read {args.profile!r}: {exc.strerror}")
    for option, path in (("--record", args.record), ("--report", args.report)):
        if path:
            try:
                private_file(path, append=True).close()
            except OSError as exc:
                parser.error(f"argument {option}: cannot write {path!r}: {exc.strerror}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .server import make_server, server_url, tune_serving_process

    tune_serving_process()
    proxy = ShadowProxy(ProxySettings(upstream=args.upstream, profile=profile, record=args.record,
                                      report=args.report, max_jobs=args.max_jobs, strict=args.strict,
                                      proxy_downloads=args.proxy_downloads, timeout=args.timeout))
    try:
        server = make_server(create_proxy_app(proxy), args.host, args.port, args.threads, MAX_REQUEST_BYTES)
    except OSError as exc:
        print(f"sd35-mock proxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    proxy.base_url, proxy.bound_host = server_url(server, args.host), args.host.strip("[]").lower()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if not is_loopback_host(args.host):
            print(f"sd35-mock proxy: warning: --host {args.host} can be reached from other machines: anyone who "
                  f"reaches the proxy can send the API requests with their own key and use up --max-jobs",
                  file=sys.stderr, flush=True)
        print(f"sd35-mock proxy listening on {proxy.base_url} (upstream {proxy.upstream}, at most "
              f"{args.max_jobs} submits)", flush=True)
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            written = proxy.write_report()
            print(format_rows(proxy.report()), file=sys.stderr)
            if written:
                print(f"report written to {written}", file=sys.stderr)
        finally:
            proxy.close()
    return 0


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt
