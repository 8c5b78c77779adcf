"""What the journal records of a request (``create_app``'s ``journal`` hook is its one caller)."""

from __future__ import annotations

import functools
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
    (a status path's, or the ``id`` a submit's JSON answer carried), a submit's ``batch_id`` and the answer's
    ``Retry-After``. ``ctx`` (flask's ``g``): what the submit route already parsed (``submitted``, ``job_id``),
    read rather than parsed again; the body and the answer are parsed only where the route did not get that far."""
    fields: dict = {"kind": kind or "other", "retry_after": response.headers.get("Retry-After")}
    if kind == "status":
        fields["job_id"] = (req.view_args or {}).get("job_id")
    elif kind == "submit":
        ctx = ctx if ctx is not None else {}
        submitted = ctx.get("submitted", _UNREAD)
        if submitted is _UNREAD:
            try:
                submitted = json.loads(body) if body else None
            except (ValueError, RecursionError):  # the route refused it already; the journal just has no batch_id
                submitted = None
        if isinstance(submitted, dict) and isinstance(submitted.get("batch_id"), str):
            fields["batch_id"] = submitted["batch_id"]
        job_id = ctx.get("job_id") if not ctx.get("fault") else None  # a fault may have replaced the answer
        if job_id is None:
            answer = response.get_json(silent=True) if response.is_json and not response.direct_passthrough else None
            job_id = answer.get("id") if isinstance(answer, dict) else None
        if isinstance(job_id, str):
            fields["job_id"] = job_id
    return fields


_UNREAD = object()
