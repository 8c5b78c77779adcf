"""Turning the backend's models and errors into what a client sees: bodies and HTTP status codes.

The profile's ``http_status`` names the status of each kind of answer (ledger row 15: assumed, so it is
data); this module is the one place that applies it.
"""

from __future__ import annotations

from flask import Response, jsonify

from ..errors import FieldError
from ..jobs import FAILURE, PENDING, SUCCESS, JobView

# When a profile does not name a kind's status.
DEFAULT_STATUS = {"pending": 200, "success": 200, "job_failure": 200, "invalid": 400, "unauthorized": 401,
                  "not_found": 404, "image_not_ready": 404, "image_expired": 404, "body_too_large": 413,
                  "method_not_allowed": 405, "conflict": 409}
JOB_KINDS = {PENDING: "pending", SUCCESS: "success", FAILURE: "job_failure"}


def status_for(profile: dict, kind: str) -> int:
    return int(profile.get("http_status", {}).get(kind, DEFAULT_STATUS.get(kind, 500)))


def job_response(view: JobView, profile: dict) -> Response:
    """A job as the provider answers it (the same body its webhook carries)."""
    response = jsonify(view.body(profile))
    response.status_code = status_for(profile, JOB_KINDS[view.status])
    return response


def failure_body(errors: list[FieldError]) -> dict:
    """Every rejection: the provider's FAILURE shape (``error``, which clients read), plus each violated
    rule with its field."""
    return {"status": "FAILURE", "error": "; ".join(str(e) for e in errors),
            "errors": [e.as_dict() for e in errors]}


def failure_response(errors: list[FieldError], status: int) -> Response:
    response = jsonify(failure_body(errors))
    response.status_code = status
    return response
