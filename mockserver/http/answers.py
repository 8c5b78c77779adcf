"""Turning the backend's models and errors into what a client sees: bodies and HTTP status codes.

The profile's ``http_status`` names the status of each kind of answer (ledger row 15: assumed, so it is
data); this module is the one place that applies it.
"""

from __future__ import annotations

import json

from flask import Response

from ..errors import FieldError
from ..jobs import FAILURE, PENDING, SUCCESS, JobView

# When a profile does not name a kind's status.
DEFAULT_STATUS = {"pending": 200, "success": 200, "job_failure": 200, "invalid": 400, "unauthorized": 401,
                  "not_found": 404, "image_not_ready": 404, "image_expired": 404, "body_too_large": 413,
                  "method_not_allowed": 405, "conflict": 409}
JOB_KINDS = {PENDING: "pending", SUCCESS: "success", FAILURE: "job_failure"}


def status_for(profile: dict, kind: str) -> int:
    return int(profile.get("http_status", {}).get(kind, DEFAULT_STATUS.get(kind, 500)))


def json_response(data: object, status: int = 200) -> Response:
    """Compact JSON, as Flask's ``jsonify`` writes it outside debug mode, without its per-call lookups of
    the app's JSON provider: this runs on every answer."""
    return Response(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", status=status,
                    mimetype="application/json")


def job_response(view: JobView, profile: dict) -> Response:
    """A job as the provider answers it (the same body its webhook carries)."""
    return json_response(view.body(profile), status_for(profile, JOB_KINDS[view.status]))


def failure_body(errors: list[FieldError]) -> dict:
    """Every rejection: the provider's FAILURE shape (``error``, which clients read), plus each violated
    rule with its field."""
    return {"status": "FAILURE", "error": "; ".join(str(e) for e in errors),
            "errors": [e.as_dict() for e in errors]}


def failure_response(errors: list[FieldError], status: int) -> Response:
    return json_response(failure_body(errors), status)
