"""Carrying out injected faults over HTTP: errors, latency, broken bodies and dropped connections."""

from __future__ import annotations

import json
import logging
import math
import socket
import struct
import threading
import time

from flask import Response, g, request
from werkzeug.exceptions import HTTPException

from ..errors import FieldError
from ..faults import BODY_FAULTS, TRICKLE_MAX_SECONDS, fault_served, plan_of
from ..rules import Facts
from .answers import failure_response

DROP_HEADER = "X-SD35-Mock-Drop"
log = logging.getLogger("mockserver")
INPROCESS_KEY = "sd35.inprocess"  # set in the WSGI environ by mockserver.inprocess: no socket to close


class DropConnection(Exception):
    """Raised through the WSGI server to close the connection without any response."""


def _server_disconnect_error() -> type[BaseException]:
    """waitress closes the socket silently on its ClientDisconnected; other servers get our own."""
    try:
        from waitress.channel import ClientDisconnected
    except ImportError:  # pragma: no cover - waitress is a dependency
        return DropConnection
    return ClientDisconnected


class DropConnectionMiddleware:
    """Turns a response marked with ``DROP_HEADER`` into a connection closed before any byte is sent."""

    def __init__(self, app):
        self.app = app
        self.error = _server_disconnect_error()

    def __call__(self, environ, start_response):
        dropped = []

        def intercept(status, headers, exc_info=None):
            if any(name == DROP_HEADER for name, _ in headers):
                dropped.append(True)
                return lambda data: None
            return start_response(status, headers, exc_info)

        result = self.app(environ, intercept)
        if dropped:
            if hasattr(result, "close"):
                result.close()
            if "waitress.client_disconnected" in environ:
                raise self.error("fault injection: connection dropped")
            if environ.get(INPROCESS_KEY):  # the in-process twin (mockserver.inprocess) raises what a socket would
                raise DropConnection("fault injection: connection dropped")
            # Elsewhere (e.g. Werkzeug's test client) say so plainly rather than pretend.
            start_response("599 Dropped", [("Content-Type", "text/plain")])
            return [b"connection dropped by fault injection"]
        return result


def take_rule(backend, endpoint: str):
    """The rule (``mockserver.rules``) this API request matches, one use spent; None (at once) with no rules."""
    return backend.rules.take(endpoint, lambda with_job: _facts(backend, endpoint, with_job)) if backend.rules else None


def _facts(backend, endpoint: str, with_job: bool) -> Facts:
    """What a rule can match this request on: its key and headers, and (``with_job``) its job's ``batch_id`` and
    prompt: a submit's from its body (read leniently: an invalid one matches what it can), others' from the job."""
    batch_id = prompt = None
    if with_job and endpoint == "submit":
        try:
            body = json.loads(request.get_data(cache=True) or b"null")
        except (ValueError, RecursionError, HTTPException):  # refused later, by the route, naming the problem
            body = None
        if isinstance(body, dict):
            batch_id = body.get("batch_id") if isinstance(body.get("batch_id"), str) else None
            prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else None
    elif with_job:
        args = request.view_args or {}
        if "job_id" in args:
            batch_id, prompt = backend.facts_of(job_id=args["job_id"])
        else:
            batch_id, prompt = backend.facts_of(image=args.get("token") or args.get("name"))
    headers = request.headers  # werkzeug's: looked up by name in any case
    return Facts(api_key=headers.get("API-Key"), headers=headers, batch_id=batch_id, prompt=prompt)


def apply_fault(backend, endpoint: str, rule=None) -> Response | None:
    """Run the "before" part of this request's fault plan; a Response replaces the real answer.
    The "after" part waits in ``g.after_fault`` for ``finish_fault``. A matching ``rule``'s fault takes the place
    of the server-wide ones."""
    own = rule.fault if rule is not None and rule.fault is not None and rule.fault.matches(endpoint) else None
    plan = plan_of(own) if own is not None else backend.faults.pick(endpoint)
    _wait(plan.before_ms)
    rule = plan.action
    if rule is not None and rule.phase == "before" and rule.type not in BODY_FAULTS:
        return fault_response(rule)
    if plan.after_ms or rule is not None:
        g.after_fault = plan
    return None


def finish_fault(response: Response, ctx, req) -> Response:
    """The "after" part: the request was handled (a job may exist); now delay or replace its answer. Then one
    log line says what every fault did to this request. ``ctx`` and ``req``: flask's ``g`` and ``request``, as
    the caller already holds them (each proxy lookup costs, on every request)."""
    plan = ctx.pop("after_fault", None)
    if plan is not None:
        _wait(plan.after_ms)
        if plan.action is not None and plan.action.type in BODY_FAULTS:
            response = body_fault(plan.action, response)
        elif plan.action is not None:
            response = fault_response(plan.action)
    fault = ctx.get("fault")
    if fault:
        if not req.environ.get(INPROCESS_KEY):  # in-process there is no waitress task to end, nor its echoes
            fault_served(fault)
        log.info("injected fault: %s %s: %s", req.method, req.path[:200], fault)
    return response


def _note(what: str) -> None:
    """Add to what the journal (and the log line) says was done to this request."""
    g.fault = ", ".join(filter(None, [g.get("fault"), what]))


def _wait(ms: int) -> None:
    if ms:
        time.sleep(ms / 1000)
        _note(f"latency {ms} ms")


def fault_response(rule) -> Response:
    _note(rule.type if rule.phase == "before" else f"{rule.type} after")
    if rule.type == "status":
        response = failure_response([FieldError("server", "fault", f"injected HTTP {rule.status}")], rule.status)
        if rule.retry_after is not None:
            response.headers["Retry-After"] = str(rule.retry_after)
        return response
    if rule.type == "malformed":
        return Response('{"status": "SUCC', status=200, mimetype="application/json")
    response = Response(b"", status=200)
    response.headers[DROP_HEADER] = "1"
    return response


# --- download body faults: a WSGI body iterator that breaks the answer on the wire -------------------------

_trickling = threading.Semaphore(1)  # a trickle holds a server thread: never more than one at once


def body_fault(rule, response: Response) -> Response:
    """The real answer (its status and headers), with its body broken as ``rule`` says.

    waitress sends the headers as given, and honours Content-Length: a body iterator that ends early makes it
    close the connection after what was sent; one that gives more is cut at the declared length (and the
    connection kept, the body looking complete).
    """
    if request.method == "HEAD":
        return response
    data = response.get_data()
    environ = request.environ
    size = len(data)
    half = size // 2
    if rule.type == "trickle":
        rate = max(rule.bytes_per_second, math.ceil(size / TRICKLE_MAX_SECONDS))
        _note(f"trickle {rate} B/s")
        body, declared = _trickle(data, rate, _flusher(environ)), size
    elif rule.type == "truncate":
        sent = min(half if rule.bytes is None else rule.bytes, max(size - 1, 0))
        _note(f"truncate at {sent} of {size} bytes")
        body, declared = iter([data[:sent]]), size
    elif rule.type == "reset":
        sent = min(half if rule.bytes is None else rule.bytes, max(size - 1, 0))
        _note(f"reset after {sent} of {size} bytes")
        body, declared = _reset_after(data[:sent], environ), size
    else:  # wrong_length
        if rule.length == "long":
            declared = size + (1024 if rule.bytes is None else max(rule.bytes, 1))
        else:
            declared = min(half if rule.bytes is None else rule.bytes, max(size - 1, 0))
        _note(f"wrong_length {rule.length}: declared {declared} of {size} bytes")
        body = iter([data])
    response.response = body  # an iterator: Werkzeug then leaves the Content-Length below alone
    response.headers["Content-Length"] = str(declared)
    return response


def _channel(environ):
    """waitress's channel of this request (its bound ``check_client_disconnected``), else None."""
    return getattr(environ.get("waitress.client_disconnected"), "__self__", None)


def _flusher(environ):
    """Send what the body iterator gave so far now. waitress holds output below ``send_bytes`` until the task
    ends, so without this a trickle would arrive all at once."""
    channel = _channel(environ)

    def flush() -> None:
        if channel is not None and channel.connected:
            with channel.outbuf_lock:
                channel._flush_exception(channel._flush_some, do_close=False)
    return flush


def _trickle(data: bytes, rate: int, flush):
    """Send ``data`` at ``rate`` bytes a second; while another trickle runs, all at once (taken when the body
    starts, so an answer never sent holds nothing)."""
    if not _trickling.acquire(blocking=False):
        yield data
        return
    try:
        step = max(1, rate // 10)  # ten writes a second
        started = time.monotonic()
        for at in range(0, len(data), step):
            yield data[at:at + step]
            flush()  # waitress wrote the chunk when asking for the next one
            late = started + (at + step) / rate - time.monotonic()
            if late > 0 and at + step < len(data):  # after the last chunk nothing is due: free the slot now
                time.sleep(min(late, TRICKLE_MAX_SECONDS))
    finally:
        _trickling.release()


def _reset_after(head: bytes, environ):
    """Send ``head``, then reset the connection (RST, not FIN) with the rest of the body still due."""
    if head:
        yield head
    channel = _channel(environ)
    if channel is None:  # not waitress: in-process, a reset the client library sees; a test client, just short
        if environ.get(INPROCESS_KEY):
            raise DropConnection("fault injection: connection reset")
        return
    _flusher(environ)()
    deadline = time.monotonic() + 2
    while channel.total_outbufs_len and time.monotonic() < deadline:  # let what was sent leave first
        time.sleep(0.005)
        _flusher(environ)()
    try:  # SO_LINGER 0: closing the socket resets the connection
        channel.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    raise _server_disconnect_error()("fault injection: connection reset")
