"""What the journal records of a request (``create_app``'s ``journal`` hook is its one caller)."""

from __future__ import annotations

import json


def request_fields(req, body: bytes) -> dict:
    """The request as the journal records it: method, path, query, headers and body."""
    environ = req.environ
    return {"method": req.method, "path": req.path, "query": environ.get("QUERY_STRING", ""),
            "headers": header_pairs(environ), "body": body}


def header_pairs(environ: dict) -> list[tuple[str, str]]:
    """Request headers straight from the WSGI environ: far cheaper than copying werkzeug's Headers."""
    pairs = [(k[5:].replace("_", "-").title(), v) for k, v in environ.items() if k.startswith("HTTP_")]
    if environ.get("CONTENT_TYPE"):
        pairs.append(("Content-Type", environ["CONTENT_TYPE"]))
    if environ.get("CONTENT_LENGTH"):
        pairs.append(("Content-Length", environ["CONTENT_LENGTH"]))
    return pairs


def answer_fields(req, body: bytes, response, kind: str | None, job_id: str | None = None) -> dict:
    """What the journal keeps beside the request, to filter and count by: the endpoint's ``kind``, the job id
    (a status path's, or ``job_id``: the job a submit made or a download URL belongs to, whatever a fault then
    did to the answer), a submit's ``batch_id`` and the answer's ``Retry-After``."""
    fields: dict = {"kind": kind or "other", "retry_after": response.headers.get("Retry-After")}
    if kind == "status":
        fields["job_id"] = (req.view_args or {}).get("job_id")
    elif job_id is not None:
        fields["job_id"] = job_id
    if kind == "submit":
        try:
            submitted = json.loads(body) if body else None
        except (ValueError, RecursionError):  # the route refused it already; the journal just has no batch_id
            submitted = None
        if isinstance(submitted, dict) and isinstance(submitted.get("batch_id"), str):
            fields["batch_id"] = submitted["batch_id"]
    return fields
