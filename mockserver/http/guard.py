"""Who may drive the control plane (``/__mock__/``): the one guard in front of every control call.

The control plane needs no API key, so anything that can make the mock's host send it a request could wipe
or rig it. A web page the tester happens to open is such a thing: a browser sends "simple" cross-site POSTs
(text/plain, form or multipart bodies) without asking first, and DNS rebinding lets a page's own name point
at 127.0.0.1. So, in this order (docs/wire.md, "Who may drive the control plane"):

- an ``Origin`` header, when sent, must be a loopback origin or the mock's own (else 403);
- without a control token, the ``Host`` header must name loopback or the address the mock is bound to
  (else 403: a rebound name); with one, the token proves the caller and any Host is accepted;
- with a control token (``--control-token``), every call carries it in ``X-Mock-Token`` (else 401), or the
  dashboard's cookie (``TOKEN_COOKIE``, ui.py), which a change may use only with the mock's own Origin (else 403);
  with a token, an Origin naming exactly the Host the request was sent to is the mock's own page, and allowed;
- a change (any method but GET, HEAD, OPTIONS) with a body, or with a Content-Type, needs
  ``Content-Type: application/json`` (else 415): a browser cannot send that cross-site without a preflight
  the mock never grants. A change without a body (reset, complete) may omit it.

With ``--no-control-plane`` the blueprint is not registered at all: every ``/__mock__/`` path is a 404.
"""

from __future__ import annotations

import hmac
import re

from flask import Flask, Response, current_app, request

from ..errors import FieldError
from ..webhooks import is_loopback_host
from .answers import failure_response

TOKEN_HEADER = "X-Mock-Token"
TOKEN_COOKIE = "sd35_mock_token"  # the dashboard's stand-in for TOKEN_HEADER (ui.py: POST /__mock__/ui/session)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SERVED_HOST = "sd35_served_host"  # app.extensions key: the host the server is bound to (serving_at)
# A Host header or an origin's authority: a name or an IP, or an IPv6 address in brackets; an optional port.
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?")


def serving_at(app: Flask, host: str, port: int) -> None:
    """Tell the app where it listens, once bound (only then is the port known): its control plane accepts
    ``host`` besides loopback names in Host and Origin, and no webhook goes to ``host:port`` or to a loopback
    name with that port, which would be the mock driving itself."""
    app.extensions[SERVED_HOST] = host.strip("[]").lower()
    app.extensions["sd35_backend"].webhooks.forbid(host, port)


def guard_control_plane() -> Response | None:
    """The blueprint's ``before_request``: None lets the call through, a FAILURE answer refuses it."""
    token = current_app.extensions["sd35_backend"].config.control_token
    origin = request.headers.get("Origin")
    if origin is not None and not _own_origin(origin) and not (token is not None and _same_origin(origin)):
        return _refuse(403, "Origin", "allowed", f"{origin!r} is another site: a web page may not drive the mock")
    if token is None:
        host = request.headers.get("Host", "")
        if not _own(_host_name(host)):
            return _refuse(403, "Host", "allowed",
                           f"{host!r} is not this mock's address: use a loopback name (localhost, 127.0.0.1, "
                           f"[::1]) or the address it is bound to, or start it with --control-token")
    else:
        given, field = request.headers.get(TOKEN_HEADER), TOKEN_HEADER
        # -- the dashboard's cookie (ui.py) in place of the header, which a browser cannot send on a navigation
        if given is None and TOKEN_COOKIE in request.cookies:
            given, field = request.cookies[TOKEN_COOKIE], TOKEN_COOKIE
        # --
        if given is None:
            return _refuse(401, TOKEN_HEADER, "required", "header is missing: this mock's control plane needs "
                                                          "the token it was started with (--control-token)")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _refuse(401, field, "valid", "is not this mock's control token")
        # -- a browser sends a same-site cookie from every port of localhost: a change the cookie authorises
        # must come from the dashboard's own page (a bodiless POST needs no preflight, so JSON alone is not enough)
        if field == TOKEN_COOKIE and request.method not in SAFE_METHODS and not (origin and _same_origin(origin)):
            return _refuse(403, "Origin", "same_origin", "a change authorised by the dashboard's cookie must come "
                                                         "from the mock's own page (Origin: its own address)")
        # --
    if request.method not in SAFE_METHODS and request.mimetype != "application/json" \
            and (request.mimetype or request.get_data(cache=True)):
        got = repr(request.mimetype) if request.mimetype else "none"
        return _refuse(415, "Content-Type", "json", f"must be application/json for a change with a body (got {got})")
    return None


def _same_origin(origin: str) -> bool:
    """``origin`` is the request's own (the dashboard's page): http(s) and exactly the Host it was sent to."""
    scheme, separator, authority = origin.partition("://")
    return scheme.lower() in ("http", "https") and bool(separator) and authority.lower() == request.host.lower()


def _refuse(status: int, field: str, rule: str, message: str) -> Response:
    """A fixed status: the profile's ``http_status`` describes the provider's API, not the mock's own."""
    return failure_response([FieldError(field, rule, message)], status)


def _host_name(authority: str) -> str | None:
    """``"[::1]:8080"`` → ``"::1"``; None for anything that is not a plain host[:port]."""
    match = _AUTHORITY.fullmatch(authority)
    return match.group(1).strip("[]").lower() if match else None


def _own_origin(origin: str) -> bool:
    scheme, separator, authority = origin.partition("://")
    return scheme.lower() in ("http", "https") and bool(separator) and _own(_host_name(authority))


def _own(name: str | None) -> bool:
    """A loopback name (localhost, 127.0.0.0/8, ::1) or the host the mock is bound to."""
    return name is not None and (is_loopback_host(name) or name == current_app.extensions.get(SERVED_HOST))
