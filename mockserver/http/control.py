"""The control plane under ``/__mock__/``: mock-only, for tests and people, never for the live API."""

from __future__ import annotations

import math
import threading

from flask import Blueprint, current_app, jsonify, request

from ..errors import FieldError, InvalidRequest
from ..jobs import FAILURE, SUCCESS, JobView
from ..journal import FILTERS as JOURNAL_FILTERS, KINDS as JOURNAL_KINDS
from ..validation import check_url_text, parse_json_body
from .answers import failure_response
from .guard import guard_control_plane

control = Blueprint("control", __name__, url_prefix="/__mock__")
control.before_request(guard_control_plane)  # first: who may call, before any other check


def _backend():
    return current_app.extensions["sd35_backend"]


def _json_object(optional: bool = False) -> dict:
    raw = request.get_data(cache=True)
    if optional and not raw.strip():
        return {}
    body = parse_json_body(raw)
    if not isinstance(body, dict):
        raise InvalidRequest(FieldError("body", "type", "must be a JSON object"))
    return body


@control.before_request
def refuse_non_text_url():
    """A job id or query parameter whose bytes are not UTF-8 is a 400 naming it, not read as some other text."""
    check_url_text("id", request.environ["PATH_INFO"].encode("latin-1"), request.query_string)


# The query parameters each control endpoint takes (docs/wire.md); every other endpoint takes none. One rule for
# all: a parameter not listed, or one given twice, is a 400 naming it, so a test that guesses a filter fails
# instead of reading every record as if they had been filtered.
QUERY_PARAMETERS = {
    "control.list_jobs": ("key", "batch_id", "status", "limit"),
    "control.journal": ("limit", *JOURNAL_FILTERS),
    "control.webhooks": ("job_id", "wait"),
}


@control.before_request
def refuse_unknown_query():
    if request.url_rule is None or not request.args:  # an unknown path stays a 404
        return
    allowed = QUERY_PARAMETERS.get(request.endpoint, ())
    for name in request.args:
        if name not in allowed:
            where = f"{request.method} {request.url_rule.rule}"
            raise InvalidRequest(FieldError(name, "unknown", f"is not a parameter of {where}: "
                                            + ("one of " + ", ".join(allowed) if allowed else "it takes none")))
        if len(request.args.getlist(name)) > 1:
            raise InvalidRequest(FieldError(name, "single", "must be given once"))


def _limit() -> int:
    raw = request.args.get("limit", "100")
    # isdigit() alone takes "²" and 5,000 digits, which int() refuses
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or not 1 <= int(raw) <= 10_000:
        raise InvalidRequest(FieldError("limit", "range", "must be a whole number from 1 to 10000"))
    return int(raw)


def _summary(view: JobView) -> dict:
    return {"id": view.id, "status": view.status, "batch_id": view.batch_id, "samples": view.request.samples,
            "created_at": view.created_at, "finished_at": view.finished_at, "polls": view.polls,
            "forced": view.forced, "owner_key": "***"}


def _detail(view: JobView) -> dict:
    """A job with its request, the body its owner would get now, its history, and the rule that shaped it."""
    return dict(_summary(view), request=view.request.as_dict(), body=view.body(_backend().profile),
                history=[{"status": s, "at": t} for s, t in view.history], rule=view.rule_id)


@control.get("/health")
def health():
    return jsonify(ok=True)


@control.post("/reset")
def reset():
    _backend().reset()
    return jsonify(ok=True)


def config_body(config) -> dict:
    """The config as JSON, its control token hidden (a test log must not carry it)."""
    body = config.as_dict()
    if body["control_token"] is not None:
        body["control_token"] = "***"
    return body


@control.get("/config")
def get_config():
    return jsonify(config_body(_backend().config))


@control.patch("/config")
def patch_config():
    return jsonify(config_body(_backend().update_config(_json_object())))


@control.get("/credits")
def credits():
    """Each key with a credit balance: what it spent since start-up or reset, and what is left (keys redacted)."""
    return jsonify(keys=_backend().credits())


@control.get("/rate-limits")
def rate_limits():
    """The profile's rate limits, and per key (redacted) its requests in the window and its PENDING jobs."""
    return jsonify(_backend().rate_limits())


@control.get("/coverage")
def coverage():
    """Which assumed ledger rows the app's requests met since start-up or reset (how often, the journal seq of
    the first and last time), and which they never met, each with what would meet it (coverage.py)."""
    return jsonify(_backend().coverage.report())


@control.post("/clock/advance")
def advance_clock():
    seconds = _json_object().get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or not 0 <= seconds <= 10 * 365 * 86_400:
        raise InvalidRequest(FieldError("seconds", "range", "must be a number of seconds from 0 to ten years"))
    return jsonify(now=_backend().advance_clock(seconds))


@control.get("/jobs")
def list_jobs():
    """Filters (all must match): ``key`` (the owner's API key: compared here, answered redacted), ``batch_id``,
    ``status``; ``limit`` keeps the newest N."""
    status = request.args.get("status")
    if status not in (None, "PENDING", "SUCCESS", "FAILURE"):
        raise InvalidRequest(FieldError("status", "enum", "must be PENDING, SUCCESS or FAILURE"))
    for name in ("key", "batch_id"):
        if request.args.get(name) == "":
            raise InvalidRequest(FieldError(name, "required", "must not be empty"))
    return jsonify(jobs=[_summary(v) for v in _backend().list_jobs(request.args.get("batch_id"), status, _limit(),
                                                                   key=request.args.get("key"))])


@control.get("/jobs/<anything:job_id>")
def show_job(job_id: str):
    return jsonify(_detail(_backend().job(job_id)))


@control.post("/jobs/<anything:job_id>/complete")
def complete_job(job_id: str):
    return jsonify(_detail(_backend().force(job_id, SUCCESS)))


@control.post("/jobs/<anything:job_id>/fail")
def fail_job(job_id: str):
    error = _json_object(optional=True).get("error", "Image generation failed (forced by the mock's control plane)")
    if not isinstance(error, str) or not error or len(error) > 2_000:
        raise InvalidRequest(FieldError("error", "type", "must be a non-empty string of at most 2000 characters"))
    return jsonify(_detail(_backend().force(job_id, FAILURE, error)))


@control.post("/jobs/<anything:job_id>/webhook")
def resend_webhook(job_id: str):
    """Send the job's webhook again (its body as it stands), to its own URL or to ``{"url": ...}``; 202, then
    see ``GET /__mock__/webhooks?job_id=``."""
    url = _json_object(optional=True).get("url")
    if url is not None and (not isinstance(url, str) or not url or len(url) > 2_000):
        raise InvalidRequest(FieldError("url", "type", "must be a non-empty URL of at most 2000 characters"))
    return jsonify(_detail(_backend().resend_webhook(job_id, url))), 202


@control.get("/journal")
def journal():
    """Filters (docs/wire.md, each compared exactly, all must match): ``method``, ``path``, ``path_prefix``,
    ``kind``, ``key`` (the API-Key header: compared here, never answered), ``batch_id``, ``job_id``, ``status``,
    ``since`` (entries after that ``seq``); ``limit`` keeps the last N matching. Anything else is a 400 naming it."""
    return jsonify(requests=_backend().journal.entries(_limit() if "limit" in request.args else None,
                                                       **journal_filters()))


@control.get("/journal/counts")
def journal_counts():
    """Counts of every journaled request since start-up, reset or ``DELETE /journal``, whatever the journal's cap."""
    return jsonify(_backend().journal.counts())


def journal_filters() -> dict:
    """The journal's filters from the query (the dashboard's journal page reads them too)."""
    filters: dict = {}
    for name in request.args:
        if name != "limit" and name not in JOURNAL_FILTERS:
            raise InvalidRequest(FieldError(name, "unknown", "is not a journal filter: one of limit, "
                                            + ", ".join(JOURNAL_FILTERS)))
        values = request.args.getlist(name)
        if len(values) > 1:
            raise InvalidRequest(FieldError(name, "single", "must be given once"))
    for name in JOURNAL_FILTERS:
        value = request.args.get(name)
        if value is None:
            continue
        if name in ("status", "since"):
            top = 599 if name == "status" else 10**15
            if not (value.isascii() and value.isdigit() and len(value) <= 16) or not \
                    (100 if name == "status" else 0) <= int(value) <= top:
                raise InvalidRequest(FieldError(name, "range", "must be an HTTP status code from 100 to 599"
                                                if name == "status" else "must be a sequence number (0 or more)"))
            filters[name] = int(value)
        elif name == "kind" and value not in JOURNAL_KINDS:
            raise InvalidRequest(FieldError(name, "enum", "must be one of " + ", ".join(JOURNAL_KINDS)))
        elif name == "method" and not (value.isascii() and value.isalpha() and 1 <= len(value) <= 20):
            raise InvalidRequest(FieldError(name, "pattern", "must be an HTTP method name (letters only)"))
        elif name in ("path", "path_prefix") and not value.startswith("/"):
            raise InvalidRequest(FieldError(name, "pattern", "must start with /"))
        elif name in ("key", "batch_id", "job_id", "rule") and not value:
            raise InvalidRequest(FieldError(name, "required", "must not be empty"))
        else:
            filters[name] = value
    return filters


@control.delete("/journal")
def clear_journal():
    _backend().journal.clear()
    return jsonify(ok=True)


WAITING_CALLS = 1  # a waiting call holds one of the server's few threads: the others stay the API's


@control.get("/webhooks")
def webhooks():
    """``?wait=S``: first wait up to S seconds (at most 30) until no delivery is queued or in flight,
    so a test over HTTP reads settled records without polling. Only ``WAITING_CALLS`` wait at once, so
    waits cannot take every thread from the API; one more is a 429 naming ``wait`` (retry it)."""
    wait = request.args.get("wait")
    if wait is not None:
        try:
            seconds = float(wait)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= 30:
            raise InvalidRequest(FieldError("wait", "range", "must be a number of seconds from 0 to 30"))
        if seconds and not _wait_for_deliveries(seconds):
            response = failure_response([FieldError("wait", "busy", "another call is already waiting: retry")], 429)
            response.headers["Retry-After"] = "1"
            return response
    if request.args.get("job_id") == "":
        raise InvalidRequest(FieldError("job_id", "required", "must not be empty"))
    return jsonify(deliveries=_backend().webhooks.records(request.args.get("job_id")))


def _wait_for_deliveries(seconds: float) -> bool:
    """Wait up to ``seconds`` until no delivery is queued or in flight; False at once if ``WAITING_CALLS``
    calls already wait."""
    slots = current_app.extensions.setdefault("sd35_waiting_calls", threading.BoundedSemaphore(WAITING_CALLS))
    if not slots.acquire(blocking=False):
        return False
    try:
        _backend().webhooks.wait_idle(timeout=seconds)
    finally:
        slots.release()
    return True


@control.get("/faults")
def list_faults():
    return jsonify(faults=_backend().faults.rules())


@control.post("/faults")
def add_fault():
    rule = _backend().faults.add(_json_object())
    return jsonify(rule.as_dict()), 201


@control.delete("/faults")
def clear_faults():
    _backend().faults.clear(_backend().config.seed)
    return jsonify(ok=True)


@control.get("/rules")
def list_rules():
    return jsonify(rules=_backend().rules.rules())


@control.post("/rules")
def add_rule():
    return jsonify(_backend().rules.add(_json_object()).as_dict()), 201


@control.delete("/rules")
def clear_rules():
    _backend().rules.clear()
    return jsonify(ok=True)


@control.delete("/rules/<anything:rule_id>")
def delete_rule(rule_id: str):
    _backend().rules.remove(rule_id)
    return jsonify(ok=True)


@control.get("/stats")
def stats():
    return jsonify(_backend().stats())
