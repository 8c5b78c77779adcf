"""What the journal records of a request (``create_app``'s ``journal`` hook is its one caller)."""

from __future__ import annotations

import functools
import json
import time

from ..journal import DIGEST_OF_BODY


def record(backend, req, body: bytes, response, ctx) -> None:
    """Journal one request as the client got it (``response``), and count the assumed rows it met (coverage.py).
    ``ctx`` (flask's ``g``): what the request's hooks and route noted (its kind, rule, fault, rows, the job id, the
    submitted document). One call with every field named, no intermediate dicts: this runs on every request."""
    environ, noted = req.environ, ctx.__dict__  # g's attributes: a dict's get, not g's own (a Python method)
    kind = noted.get("kind")
    rows = noted.get("rows") or ()
    rule = noted.get("rule")
    job_id, batch_id, digest = answer_ids(req, body, kind, noted)
    seq = backend.journal.record(
        at=backend.clock.now(), method=req.method, path=req.path, query=environ.get("QUERY_STRING", ""),
        headers=header_pairs(environ), body=body, status=response.status_code,
        duration_ms=(time.monotonic() - noted.get("started", time.monotonic())) * 1000, fault=noted.get("fault"),
        kind=kind or "other", job_id=job_id, batch_id=batch_id, retry_after=retry_after(response.headers),
        rule=rule.id if rule else None, rows=tuple(rows), body_digest=digest, era=noted.get("journal_era"))
    if rows and seq is not None:
        backend.coverage.add(rows, seq)


def retry_after(headers) -> str | None:
    """``headers.get("Retry-After")``: werkzeug's raises and catches a KeyError for an answer without one (most)."""
    for name, value in headers:
        if name.lower() == "retry-after":
            return value
    return None


def header_pairs(environ: dict) -> list[tuple[str, str]]:
    """Request headers straight from the WSGI environ: far cheaper than copying werkzeug's Headers."""
    pairs = [(_header_name(k), v) for k, v in environ.items() if k.startswith("HTTP_")]
    if environ.get("CONTENT_TYPE"):
        pairs.append(("Content-Type", environ["CONTENT_TYPE"]))
    if environ.get("CONTENT_LENGTH"):
        pairs.append(("Content-Length", environ["CONTENT_LENGTH"]))
    return pairs


@functools.lru_cache(maxsize=512)  # a client sends the same few names again and again; bounded for those who do not
def _header_name(environ_key: str) -> str:
    """``HTTP_API_KEY`` -> ``Api-Key``."""
    return environ_key[5:].replace("_", "-").title()


def answer_ids(req, body: bytes, kind: str | None, ctx) -> tuple[str | None, str | None, str | None]:
    """What the journal keeps beside the request, to filter and count by: the job id (a status path's, or
    ``ctx.job_id``: the job a submit made or a download URL belongs to, whatever a fault then did to the answer), a
    submit's ``batch_id`` and ``body_digest`` (of its canonical JSON, so two submits of one body compare equal
    whatever their key order, spacing or length past the journal's cut). What the submit route already parsed
    (``ctx.submitted``) is read rather than parsed again; the body is parsed only where the route did not get that
    far."""
    if kind == "status":
        return (req.view_args or {}).get("job_id"), None, None
    job_id = ctx.get("job_id")
    if kind != "submit":
        return job_id, None, None
    submitted = ctx.get("submitted", _UNREAD)
    if submitted is _UNREAD:
        try:
            submitted = json.loads(body) if body else None
        except (ValueError, RecursionError):  # the route refused it already; the journal just has no batch_id
            submitted = None
    batch_id = None
    if isinstance(submitted, dict) and isinstance(submitted.get("batch_id"), str):
        batch_id = submitted["batch_id"]
    # ``submitted`` is the body's JSON (the route's parse or the one above), so its digest is the body's: the journal
    # works it out when the entry is read
    return job_id, batch_id, DIGEST_OF_BODY if submitted is not None else None


_UNREAD = object()
