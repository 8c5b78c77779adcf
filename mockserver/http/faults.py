"""Carrying out injected faults over HTTP: errors, latency, broken bodies and dropped connections."""

from __future__ import annotations

import time

from flask import Response, g

from ..errors import FieldError
from .answers import failure_response

DROP_HEADER = "X-SD35-Mock-Drop"


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
            # Elsewhere (e.g. Werkzeug's test client) say so plainly rather than pretend.
            start_response("599 Dropped", [("Content-Type", "text/plain")])
            return [b"connection dropped by fault injection"]
        return result


def apply_fault(backend, endpoint: str) -> Response | None:
    """Run the "before" part of this request's fault plan; a Response replaces the real answer.
    The "after" part waits in ``g.after_fault`` for ``finish_fault``."""
    plan = backend.faults.pick(endpoint)
    _wait(plan.before_ms)
    rule = plan.action
    if rule is not None and rule.phase == "before":
        return fault_response(rule)
    if plan.after_ms or rule is not None:
        g.after_fault = plan
    return None


def finish_fault(response: Response) -> Response:
    """The "after" part: the request was handled (a job may exist); now delay or replace its answer."""
    plan = g.pop("after_fault", None)
    if plan is None:
        return response
    _wait(plan.after_ms)
    return fault_response(plan.action) if plan.action is not None else response


def _note(what: str) -> None:
    """Add to what the journal says was done to this request."""
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
