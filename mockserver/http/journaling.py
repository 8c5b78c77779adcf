"""What the journal records of a request (``create_app``'s ``journal`` hook is its one caller)."""

from __future__ import annotations

import functools
import hashlib
import json


def request_fields(req, body: bytes) -> dict:
    """The request as the journal records it: method, path, query, headers and body."""
    environ = req.environ
    return {"method": req.method, "path": req.path, "query": environ.get("QUERY_STRING", ""),
            "headers": header_pairs(environ), "body": body}


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


def answer_fields(req, body: bytes, response, kind: str | None, ctx=None) -> dict:
    """What the journal keeps beside the request, to filter and count by: the endpoint's ``kind``, the job id
    (a status path's, or ``ctx.job_id``: the job a submit made or a download URL belongs to, whatever a fault
    then did to the answer), a submit's ``batch_id`` and ``body_digest`` (of its canonical JSON, so two submits of
    one body compare equal whatever their key order, spacing or length past the journal's cut) and the answer's
    ``Retry-After``. ``ctx`` (flask's ``g``): what the submit route already parsed (``submitted``) is read rather
    than parsed again; the body is parsed only where the route did not get that far."""
    ctx = ctx if ctx is not None else {}
    fields: dict = {"kind": kind or "other", "retry_after": response.headers.get("Retry-After")}
    job_id = ctx.get("job_id")
    if kind == "status":
        fields["job_id"] = (req.view_args or {}).get("job_id")
    elif job_id is not None:
        fields["job_id"] = job_id
    if kind == "submit":
        submitted = ctx.get("submitted", _UNREAD)
        if submitted is _UNREAD:
            try:
                submitted = json.loads(body) if body else None
            except (ValueError, RecursionError):  # the route refused it already; the journal just has no batch_id
                submitted = None
        if isinstance(submitted, dict) and isinstance(submitted.get("batch_id"), str):
            fields["batch_id"] = submitted["batch_id"]
        if submitted is not None:
            try:
                fields["body_digest"] = canonical_digest(submitted)
            except (ValueError, RecursionError):  # written back deeper than it was read: no digest, never a 500
                pass
    return fields


_UNREAD = object()


def canonical_digest(document: object) -> str:
    """SHA-256 of a JSON document written canonically (keys sorted, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
