"""Recording of HTTP exchanges (opt-in, ``--record PATH``): one JSON line per exchange, with every
API key removed, so an answer observed on the live API can be turned into a profile change.

    {"test": "contracts/test_options.py::test_batch_id_is_echoed", "at": 1717000000.1,
     "request": {"method": "POST", "url": "...", "headers": {"API-Key": "[REDACTED]", ...}, "body": ...},
     "response": {"status": 200, "headers": {...}, "body": {...}}, "elapsed_ms": 12.3}

Bodies are JSON when they parse, else text; images are summarised (type, size, sha256), never stored.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterable

REDACTED = "[REDACTED]"
SECRET_HEADERS = {"api-key", "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
MAX_TEXT = 20_000

__all__ = ["Recorder", "Redactor", "REDACTED"]


class Redactor:
    """Removes secrets: the values of secret headers, and any occurrence of a known key anywhere."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        # longest first, so a key containing another is removed whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= 1}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def headers(self, headers: Any) -> dict[str, str]:
        out = {}
        for name, value in dict(headers or {}).items():
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            out[str(name)] = REDACTED if str(name).lower() in SECRET_HEADERS else self.text(value)
        return out

    def value(self, value: Any) -> Any:
        """A JSON value with every string redacted (keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value


def _body(raw: bytes | str | None, content_type: str, redactor: Redactor) -> Any:
    if raw is None or raw == b"" or raw == "":
        return None
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype.startswith("image/") or (b"\x00" in raw[:512] and not ctype.endswith("json")):
        return {"_binary": ctype or "application/octet-stream", "bytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest()}
    text = raw.decode("utf-8", "replace")
    if len(text) > MAX_TEXT:  # e.g. the oversized body of the size-cap contract
        return {"_text": redactor.text(text[:MAX_TEXT]), "truncated_from": len(text)}
    try:
        return redactor.value(json.loads(text))
    except (ValueError, RecursionError):
        return redactor.text(text)


class Recorder:
    """Appends redacted exchanges to a JSONL file; safe to call from several threads."""

    def __init__(self, path: str | Path, secrets: Iterable[str | None] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redactor = Redactor(secrets)
        self._lock = threading.Lock()
        self.count = 0

    def exchange(self, prepared, response=None, error: BaseException | None = None, *, test: str | None = None,
                 elapsed_ms: float | None = None, target: str | None = None) -> dict:
        r = self.redactor
        request_body = prepared.body
        entry: dict[str, Any] = {
            "test": test,
            "target": target,
            "at": round(time.time(), 3),
            "request": {
                "method": prepared.method,
                "url": r.text(prepared.url or ""),
                "headers": r.headers(prepared.headers),
                "body": _body(request_body, prepared.headers.get("Content-Type", ""), r),
            },
        }
        if response is not None:
            entry["response"] = {
                "status": response.status_code,
                "headers": r.headers(response.headers),
                "body": _body(response.content, response.headers.get("Content-Type", ""), r),
            }
        if error is not None:
            entry["error"] = r.text(f"{type(error).__name__}: {error}")[:2000]
        if elapsed_ms is not None:
            entry["elapsed_ms"] = round(elapsed_ms, 3)
        line = json.dumps(entry, default=str, ensure_ascii=False)
        line = r.text(line)  # belt and braces: nothing secret survives, however it got in
        with self._lock:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            self.count += 1
        return entry
