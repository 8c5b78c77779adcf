"""The request journal: what reached the mock, newest last, bounded, with API keys redacted."""

from __future__ import annotations

import threading
from collections import deque

MAX_HEADERS, HEADER_CHARS = 100, 500
SECRET_HEADERS = {"api-key", "authorization", "cookie", "proxy-authorization"}


def redact(value: str) -> str:
    return "***" if value else ""


def _text(value: object, limit: int | None = None) -> str:
    """A recorded value as text any answer can encode: records are kept as they came (a lone surrogate
    included), so it is reading them that must never fail."""
    return str(value)[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


class Journal:
    """Records are kept raw and cheap to take (this runs on every request); they are shaped, and
    secrets redacted, only when someone reads them."""

    def __init__(self, size: int, body_chars: int):
        self.body_chars = body_chars
        self._entries: deque[tuple] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, *, at: float, method: str, path: str, query: str, headers, body: bytes, status: int,
               duration_ms: float, fault: str | None = None) -> None:
        """``headers``: (name, value) pairs or a mapping; at most ``MAX_HEADERS`` of them, each value cut to
        ``HEADER_CHARS``, so an entry stays small whatever a client sends."""
        pairs = list(headers.items()) if hasattr(headers, "items") else list(headers)
        if len(pairs) > MAX_HEADERS or any(len(v) > HEADER_CHARS for _, v in pairs):
            pairs = [(k[:HEADER_CHARS], v[:HEADER_CHARS]) for k, v in pairs[:MAX_HEADERS]]
        raw = (at, method, path, query, pairs, body[: self.body_chars * 4], len(body), status, duration_ms, fault)
        with self._lock:
            self._seq += 1
            self._entries.append((self._seq, raw))

    def _shape(self, seq: int, raw: tuple) -> dict:
        at, method, path, query, pairs, body, body_len, status, duration_ms, fault = raw
        text = body.decode("utf-8", "replace")[: self.body_chars]
        entry = {
            "at": at,
            "method": _text(method),
            "path": _text(path),
            "query": _text(query, 500),
            "headers": {_text(k): redact(v) if str(k).lower() in SECRET_HEADERS else _text(v, 500) for k, v in pairs},
            "body": text,
            "body_truncated": body_len > len(text.encode("utf-8")),
            "status": status,
            "duration_ms": round(duration_ms, 3),
            "seq": seq,
        }
        if fault:
            entry["fault"] = fault
        return entry

    def entries(self, limit: int | None = None) -> list[dict]:
        with self._lock:
            items = list(self._entries)
        if limit:
            items = items[-limit:]
        return [self._shape(seq, raw) for seq, raw in items]

    @property
    def size(self) -> int:
        return self._entries.maxlen or 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
