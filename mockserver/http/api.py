"""The public API: exactly the provider's two endpoints, plus the download URLs they hand out."""

from __future__ import annotations

import functools

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.sansio.utils import get_current_url

from ..coverage import meet
from ..errors import FieldError, ImageExpired, ImageNotReady, UnsupportedMediaType
from ..openapi import openapi_document
from ..validation import check_url_text, parse_json_body
from .answers import job_response

api = Blueprint("api", __name__)


def _backend():
    return current_app.extensions["sd35_backend"]


@api.before_request
def refuse_non_text_path():
    """An id or file name whose bytes are not UTF-8 is a 400 naming it, not read as some other text."""
    path = request.environ["PATH_INFO"]
    if path.isascii():  # ASCII is UTF-8 text: the check has nothing to find (the common case, at no cost)
        return
    field = "id" if "job_id" in (request.view_args or {}) else "url"
    check_url_text(field, path.encode("latin-1"))


@api.post("/sd3_5/v1")
def submit():
    backend = _backend()
    req, ctx = request._get_current_object(), g._get_current_object()  # one proxy lookup each: on every submit
    key = api_key(req)
    backend.authenticate(key)  # a bad key is 401 before the body is even read
    # the usual header taken as it is; any other parsed by werkzeug (parameters, case)
    check_content_type(JSON if req.environ.get("CONTENT_TYPE") == JSON else req.mimetype, backend.profile)
    body = ctx.submitted = parse_json_body(req.get_data(cache=True))  # the journal hook reads its batch_id
    view = backend.submit(key, body, host_url(req.scheme, req.host), rule=ctx.rule)
    ctx.job_id = view.id  # and the id answered, without parsing the answer again
    return job_response(view, backend.profile, submit=True)


JSON = "application/json"


def api_key(req) -> str | None:
    """``req.headers.get("API-Key")``, read from the WSGI environ as werkzeug would, without building its view of
    the headers first: on every API request."""
    return req.environ.get("HTTP_API_KEY")


@functools.lru_cache(maxsize=64)  # a client calls a few hosts; bounded for one that sends many Host headers
def host_url(scheme: str, host: str) -> str:
    """``request.host_url``, remembered: werkzeug decodes it anew (``uri_to_iri``) on every call, about a tenth of
    a submit's own time."""
    return get_current_url(scheme, host)


def check_content_type(mimetype: str, profile: dict) -> None:
    """Ledger row 32: a body sent without a JSON Content-Type (none, text/plain, a form type) is read as JSON
    unless the profile's ``require_json_content_type`` refuses it, naming Content-Type."""
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return
    meet("L32")  # whether the live API reads a body of another type is assumed
    if profile.get("require_json_content_type"):
        sent = f"it is {mimetype[:100]!r}" if mimetype else "none was sent"
        raise UnsupportedMediaType(FieldError(
            "Content-Type", "json", f"must be application/json ({sent}): send the body as JSON with that header"))


@api.get("/sd3_5/v1/status/<anything:job_id>")
def status(job_id: str):
    backend = _backend()
    return job_response(backend.status(api_key(request), job_id), backend.profile)


def _image(key: str, friendly: bool) -> Response:
    try:
        image = _backend().image(key, friendly)
    except (ImageNotReady, ImageExpired) as error:
        g.job_id = error.job_id  # the journal names the job whose image is not served yet, or any more
        raise
    g.job_id = image.job_id  # for the journal
    response = Response(image.data, mimetype=image.content_type)
    response.headers["Content-Disposition"] = f'inline; filename="{image.file_name}"'
    response.headers["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@api.get("/files/<token>")
def download_opaque(token: str):
    return _image(token, friendly=False)


@api.get("/images/<anything:name>")
def download_direct(name: str):
    return _image(name, friendly=True)


HEALTH_PATH = "/healthz"


@api.get(HEALTH_PATH)
def health():
    """A liveness check that always answers (no key, no control plane needed) and is never journaled or counted:
    a container's health check is not the app's traffic (docs/docker.md)."""
    return jsonify(ok=True)


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(_backend().profile, request.host_url.rstrip("/")))
