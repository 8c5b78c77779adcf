"""Turning the backend's models and errors into what a client sees: bodies and HTTP status codes.

The profile's ``http_status`` names the status of each kind of answer (ledger row 15: assumed, so it is
data); this module is the one place that applies it.
"""

from __future__ import annotations

import functools
import http
import json

from flask import Response

from ..coverage import meet
from ..errors import FieldError
from ..jobs import FAILURE, PENDING, SUCCESS, JobView

# When a profile does not name a kind's status.
DEFAULT_STATUS = {"submit_pending": 200, "poll_pending": 200, "success": 200, "job_failure": 200, "invalid": 400, "unauthorized": 401,
                  "no_credits": 402, "rate_limited": 429, "not_found": 404, "image_not_ready": 404, "image_expired": 404, "body_too_large": 413,
                  "method_not_allowed": 405, "conflict": 409,
                  "unsupported_media_type": 415}
JOB_KINDS = {PENDING: "poll_pending", SUCCESS: "success", FAILURE: "job_failure"}
SUBMIT_KINDS = {**JOB_KINDS, PENDING: "submit_pending"}


def status_for(profile: dict, kind: str) -> int:
    codes = profile.get("http_status", {})
    if kind in ("submit_pending", "poll_pending") and kind not in codes and "pending" in codes:
        kind = "pending"  # a profile built in code, unmerged, in the older spelling
    return int(codes.get(kind, DEFAULT_STATUS.get(kind, 500)))


@functools.lru_cache(maxsize=256)  # on every answer; a few dozen codes in all
def status_line(code: int) -> str:
    """The status line's code and standard reason phrase (``202 Accepted``, as RFC 9110 spells it; werkzeug
    would send ``202 ACCEPTED``). A code with no registered phrase gets its class's."""
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} " + {2: "Success", 4: "Client Error", 5: "Server Error"}.get(code // 100, "Unknown")


# One encoder for every answer: ``json.dumps`` builds a new one on each call when given options.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def json_response(data: object, status: int = 200) -> Response:
    """Compact JSON, as Flask's ``jsonify`` writes it outside debug mode, without its per-call lookups of
    the app's JSON provider: this runs on every answer. Its Content-Type is given as it is, not worked out from a
    mimetype. Its status line has the standard reason phrase from the start, so the app's ``finish`` hook need
    not set it again (werkzeug parses a status line anew on each assignment)."""
    return Response(_COMPACT_JSON.encode(data) + "\n", status=status_line(status), content_type="application/json")


def job_response(view: JobView, profile: dict, *, submit: bool = False) -> Response:
    """A job as the provider answers it (the same body its webhook carries); ``submit``: the POST's answer,
    whose PENDING has its own status (``submit_pending``, else ``poll_pending``)."""
    if view.status == PENDING:
        meet("L15")  # a PENDING answer's status code is assumed
    return json_response(view.body(profile), status_for(profile, (SUBMIT_KINDS if submit else JOB_KINDS)[view.status]))


def failure_body(errors: list[FieldError], text_key: str = "error") -> dict:
    """Every rejection: the provider's FAILURE shape (the text under ``error``, which clients read, or where
    the profile's ``rejection_text_key`` says), plus each violated rule with its field."""
    return {"status": "FAILURE", text_key: "; ".join(str(e) for e in errors),
            "errors": [e.as_dict() for e in errors]}


def failure_response(errors: list[FieldError], status: int, text_key: str = "error") -> Response:
    return json_response(failure_body(errors, text_key), status)


def rejection_text_key(profile: dict) -> str:
    return profile.get("rejection_text_key", "error")
