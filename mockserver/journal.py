"""The request journal: what reached the mock, newest last, bounded, with API keys redacted."""

from __future__ import annotations

import threading
from collections import deque

SECRET_HEADERS = {"api-key", "authorization", "cookie", "proxy-authorization"}


def redact(value: str) -> str:
    return "***" if value else ""


class Journal:
    def __init__(self, size: int, body_chars: int):
        self.body_chars = body_chars
        self._entries: deque[dict] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, *, at: float, method: str, path: str, query: str, headers: dict[str, str],
               body: bytes, status: int, duration_ms: float, fault: str | None = None) -> None:
        text = body[: self.body_chars * 4].decode("utf-8", "replace")[: self.body_chars]
        entry = {
            "at": at,
            "method": method,
            "path": path,
            "query": query,
            "headers": {k: redact(v) if k.lower() in SECRET_HEADERS else v[:500] for k, v in headers.items()},
            "body": text,
            "body_truncated": len(body) > len(text.encode("utf-8")),
            "status": status,
            "duration_ms": round(duration_ms, 3),
        }
        if fault:
            entry["fault"] = fault
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)

    def entries(self, limit: int | None = None) -> list[dict]:
        with self._lock:
            items = list(self._entries)
        return items[-limit:] if limit else items

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
