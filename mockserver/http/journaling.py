"""What the journal records of a request (``create_app``'s ``journal`` hook is its one caller)."""

from __future__ import annotations


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
