"""What the journal is told about an API request (``create_app``'s ``journal`` hook records the rest)."""

from __future__ import annotations

from flask import g, request


def journal_entry(body: bytes) -> dict | None:
    """This API request, for the backend to journal along with its operation; ``None`` if a fault has
    touched it or may still change its answer (then the ``journal`` hook records it, with the fault)."""
    ctx, req = g._get_current_object(), request._get_current_object()
    if ctx.get("fault") or ctx.get("after_fault") is not None:
        return None
    ctx.journal_entry = dict(request_fields(req, body), started=ctx.started)
    return ctx.journal_entry


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
