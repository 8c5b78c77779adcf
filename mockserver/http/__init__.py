"""The mock's HTTP layer: a Flask app factory over ``MockBackend``.

It parses requests, calls the backend, and serialises; every error becomes a FAILURE JSON body.
Nothing else in ``mockserver`` imports Flask.
"""

from __future__ import annotations

import difflib
import logging
import re
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from ..backend import MockBackend
from ..config import MockConfig
from ..coverage import collect, meet, stop_collecting
from ..errors import FieldError, MockError
from .answers import DEFAULT_STATUS, failure_response, rejection_text_key, status_for, status_line
from .api import HEALTH_PATH, api
from .control import control
from .faults import DROP_HEADER, DropConnectionMiddleware, apply_fault, finish_fault, take_rule
from .journaling import record
from .ui import ui  # the dashboard, /__mock__/ui

log = logging.getLogger("mockserver")

# werkzeug's own refusals, as the field, rule and message of a FAILURE body, and the kind of answer.
HTTP_ERRORS = {404: ("path", "exists", "no such endpoint", "not_found"),
               405: ("method", "allowed", "is not allowed here", "method_not_allowed"),
               413: ("body", "maxLength", "is too large", "body_too_large")}


def create_app(config: MockConfig | None = None, *, backend: MockBackend | None = None) -> Flask:
    """Build the WSGI app. Pass a ``backend`` to share state (e.g. with an in-process test)."""
    backend = backend or MockBackend(config)
    app = Flask("mockserver")
    app.config["MAX_CONTENT_LENGTH"] = backend.config.max_body_bytes
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions["sd35_backend"] = backend
    app.url_map.merge_slashes = False  # "//x" is an id of "/x", not a redirect to another job
    app.url_map.converters["anything"] = AnythingConverter
    app.register_blueprint(api)
    if backend.config.control_plane:  # --no-control-plane: /__mock__/ does not exist (guard.py)
        app.register_blueprint(control)
        app.register_blueprint(ui)  # the dashboard (ui.py), behind the same guard

    @app.before_request
    def start_clock():
        # one proxy lookup each, not one per attribute: this runs on every request
        ctx, req = g._get_current_object(), request._get_current_object()
        ctx.started = time.monotonic()
        ctx.journal_era = backend.journal.era  # a journal cleared before this request ends does not get it
        ctx.fault = ctx.rule = None
        if req.path.startswith("/__mock__"):  # the control plane meets no row: it is not the app
            ctx.rows = None
        else:  # the assumed rows this request meets (coverage.py): its journal entry's ``rows``
            ctx.rows = []
            ctx.rows_token = collect(ctx.rows)
        url_rule = req.url_rule
        ctx.kind = kind = api_endpoint_kind(url_rule.endpoint if url_rule else "")
        if kind:
            ctx.rule = take_rule(backend, kind)
            return apply_fault(backend, kind, ctx.rule)
        return None

    def journal(response: Response, ctx, req) -> Response:
        """The one place a request is journaled: every request but the control plane's and health checks', with
        the status the client got and what a fault did to it."""
        response = finish_fault(response, ctx, req)
        path = req.path
        if not path.startswith("/__mock__") and path != HEALTH_PATH:
            environ = req.environ
            # A request's body comes with a length or a transfer coding (RFC 9112, 6.3): with neither there is
            # none, so skip asking werkzeug, which would build a stream to read nothing (waitress marks every
            # request's stream terminated, so that would be on every GET)
            try:
                body = req.get_data(cache=True) if environ.get("CONTENT_LENGTH") or (
                    environ.get("wsgi.input_terminated") and environ.get("HTTP_TRANSFER_ENCODING")) else b""
            except RequestEntityTooLarge:  # over the cap, whether or not the route read it: no body, not a 500
                body = b""
            record(backend, req, body, response, ctx)
        return response

    @app.after_request
    def finish(response: Response) -> Response:
        """The request journaled (``journal``, which may put a fault's answer in its place), the request's marks of
        assumed rows closed (coverage.py), then the status line of the answer that goes out given the standard
        reason phrase (``202 Accepted``, not ``202 ACCEPTED``). One hook, not three: Flask's own cost per hook is
        paid on every request; and Flask runs it on every answer, an error handler's included."""
        # one proxy lookup each, not one per attribute: this runs on every request
        ctx, req = g._get_current_object(), request._get_current_object()
        try:
            response = journal(response, ctx, req)
        finally:
            token = ctx.get("rows_token")
            if token is not None:
                stop_collecting(token)
        line = status_line(response.status_code)
        if response.status != line:  # werkzeug parses a status line anew on each assignment
            response.status = line
        return response

    def refusal(errors: list[FieldError], kind: str, status: int | None = None) -> Response:
        """A FAILURE answer of ``kind`` (``status``: a code of its own). The profile shapes what the app under
        test sees; the control plane keeps fixed codes and ``error``, so a profile that answers errors with
        200 can never make a refused control call look applied."""
        if request.path.startswith("/__mock__"):
            return failure_response(errors, status or DEFAULT_STATUS.get(kind, 400))
        meet("L23")  # a rejection's status code and where its text goes are assumed
        profile = backend.profile
        return failure_response(errors, status or status_for(profile, kind), rejection_text_key(profile))

    @app.errorhandler(MockError)
    def mock_error(error: MockError):
        response = refusal(error.errors, error.kind)
        if getattr(error, "retry_after", None) is not None:  # RateLimited: when a slot frees
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = error.code or 400
        if code in HTTP_ERRORS:
            field, rule, message, kind = HTTP_ERRORS[code]
            if code == 413:
                meet("L26")  # the body size cap, and its answer, are assumed
                message = f"is too large: at most {backend.config.max_body_bytes} bytes"
            elif code == 405 and getattr(error, "valid_methods", None):
                message = f"{request.method} is not allowed here; this path allows {', '.join(error.valid_methods)}"
            elif code == 404:
                message += did_you_mean(request.path, app.url_map)
            response = refusal([FieldError(field, rule, message)], kind)
        else:  # werkzeug's other refusals keep their own code
            response = refusal([FieldError("request", "valid", error.description or "is invalid")], "invalid", code)
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error")
        return failure_response([FieldError("server", "internal", "internal error in the mock (see its log)")], 500)

    app.wsgi_app = DropConnectionMiddleware(app.wsgi_app)
    return app


def did_you_mean(path: str, url_map) -> str:
    """"; did you mean /sd3_5/v1?" for a path close to one the app serves (a trailing slash, a missing id, v2
    for v1, a misspelled segment), with the caller's own ids kept in place; else nothing. Routes are read from
    the app, so a route added later is suggested too."""
    path = path[:200]  # the comparison's cost grows with the path's length: a near miss is short
    given = path.strip("/").split("/")
    best, score = "", 0.0
    for rule in url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        shown, compared = [], []
        for i, part in enumerate(ROUTE_VARIABLE.sub(r"{\1}", rule.rule).strip("/").split("/")):
            mine = given[i][:100] if i < len(given) else ""
            if part.startswith("{"):  # the caller's value where the route takes one, or the placeholder
                shown.append(mine or part)
                compared.append(mine)
            else:
                shown.append(part)
                compared.append(part)
        ratio = difflib.SequenceMatcher(None, path.rstrip("/").lower(), ("/" + "/".join(compared)).rstrip("/").lower()).ratio()
        if ratio > score:
            best, score = "/" + "/".join(shown), ratio
    return f"; did you mean {best}?" if score >= 0.68 and best != path else ""


ROUTE_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


class AnythingConverter(BaseConverter):
    """A path segment tail that may hold slashes and newlines: ids are opaque, and unknown ones are 404s."""

    regex = r"[\s\S]+"
    part_isolating = False


API_ENDPOINT_KINDS = {"api.submit": "submit", "api.status": "status", "api.download_opaque": "download",
                      "api.download_direct": "download"}


def api_endpoint_kind(endpoint: str) -> str | None:
    return API_ENDPOINT_KINDS.get(endpoint)


def get_backend(app: Flask) -> MockBackend:
    return app.extensions["sd35_backend"]


__all__ = ["create_app", "get_backend", "DROP_HEADER"]
