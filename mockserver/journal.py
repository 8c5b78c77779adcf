"""The request journal: what reached the mock, newest last, bounded, with API keys redacted."""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import deque

from .validation import shown

MAX_HEADERS, HEADER_CHARS = 100, 500
SECRET_HEADERS = {"api-key", "authorization", "cookie", "proxy-authorization"}
KINDS = ("submit", "status", "download", "other")
MAX_COUNTED_BATCH_IDS = 1_000  # distinct batch_ids counted by name; the rest go to ``other_batch_ids``
# GET /__mock__/journal filters (docs/wire.md): each compares one field of an entry exactly
FILTERS = ("method", "path", "path_prefix", "kind", "key", "batch_id", "job_id", "status", "rule", "since")


def canonical_digest(document: object) -> str:
    """SHA-256 of a JSON document written canonically (keys sorted, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# ``record(body_digest=DIGEST_OF_BODY)``: the digest of the body's own JSON, worked out when the entry is read (a
# submit's digest costs about as much as the rest of its entry, and most entries are never read).
DIGEST_OF_BODY = object()


def _digest_of_body(body: bytes) -> str | None:
    try:
        return canonical_digest(json.loads(body))
    except (ValueError, RecursionError):  # not JSON (the route refused it), or too deep to write back: no digest
        return None


def redact(value: str) -> str:
    return "***" if value else ""


def _text(value: object, limit: int | None = None) -> str:
    """A recorded value as text any answer can encode: records are kept as they came (a lone surrogate
    included), so it is reading them that must never fail."""
    return shown(str(value)[:limit])


MAX_RETRY_AFTER = 86_400 * 365   # a Retry-After beyond a year is no number of seconds a client would wait


def _seconds(header: str | None) -> int | float | None:
    """A Retry-After header as a JSON number of seconds (the mock sends whole seconds); None if it is not one."""
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    if not (math.isfinite(value) and 0 <= value <= MAX_RETRY_AFTER):
        return None
    return int(value) if value.is_integer() else value


class Journal:
    """Records are kept raw and cheap to take (this runs on every request); they are shaped, and
    secrets redacted, only when someone reads them."""

    def __init__(self, size: int, body_chars: int):
        self.body_chars = body_chars
        self._entries: deque[tuple] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._seq = 0
        self._counts = _Counts()
        self._salt = os.urandom(16)  # api_key_id: a keyed digest, so a journal reader cannot test guessed keys
        self.era = 0  # how many times it was cleared: a request that began in an earlier era is not recorded

    def record(self, *, at: float, method: str, path: str, query: str, headers, body: bytes, status: int,
               duration_ms: float, fault: str | None = None, kind: str = "other", job_id: str | None = None,
               batch_id: str | None = None, retry_after: str | None = None, rule: str | None = None,
               rows: tuple[str, ...] = (), body_digest: str | None = None, era: int | None = None) -> int | None:
        """``headers``: (name, value) pairs or a mapping; at most ``MAX_HEADERS`` of them, each value cut to
        ``HEADER_CHARS``, so an entry stays small whatever a client sends. ``kind``: the API endpoint's kind
        (``KINDS``); ``job_id``: the id in a status path or the id a submit answered; ``batch_id``: a submit's;
        ``retry_after``: the answer's Retry-After header; ``rule``: the id of the rule that applied; ``rows``: the
        assumed ledger rows the request met (coverage.py); ``body_digest``: a submit's canonical JSON digest, or
        ``DIGEST_OF_BODY`` for that of ``body``'s JSON (worked out when read). Counts (``counts()``) outlive the entries' cap.
        ``era``: the journal's ``era`` when the request began; if the journal was cleared since (a reset between
        tests while a faulted request of the earlier test still ran), the request belongs to what was cleared and is
        not recorded. Returns the entry's seq, or None when it was not recorded."""
        pairs = list(headers.items()) if hasattr(headers, "items") else list(headers)
        if len(pairs) > MAX_HEADERS or any(len(v) > HEADER_CHARS for _, v in pairs):
            pairs = [(k[:HEADER_CHARS], v[:HEADER_CHARS]) for k, v in pairs[:MAX_HEADERS]]
        kept = body[: self.body_chars * 4]
        if body_digest is DIGEST_OF_BODY and len(kept) < len(body):  # cut: it cannot be worked out later
            body_digest = _digest_of_body(body)
        extra = (kind, job_id and job_id[:HEADER_CHARS], batch_id and batch_id[:HEADER_CHARS], retry_after, rule,
                 rows, body_digest)
        raw = (at, method, path, query, pairs, kept, len(body), status, duration_ms, fault, extra)
        with self._lock:
            if era is not None and era != self.era:
                return None
            self._seq += 1
            self._entries.append((self._seq, raw))
            self._counts.add(kind, status, batch_id)
            return self._seq

    def _shape(self, seq: int, raw: tuple) -> dict:
        at, method, path, query, pairs, body, body_len, status, duration_ms, fault, extra = raw
        kind, job_id, batch_id, retry_after, rule, rows, body_digest = extra
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
            "kind": kind,
            "rows": list(rows),
        }
        if job_id is not None:
            entry["job_id"] = _text(job_id)
        if batch_id is not None:
            entry["batch_id"] = _text(batch_id)
        seconds = _seconds(retry_after)
        if seconds is not None:
            entry["retry_after"] = seconds
        key = next((v for k, v in pairs if str(k).lower() == "api-key"), None)
        if key is not None:  # the same key, the same id; the key cannot be read back from it
            entry["api_key_id"] = hashlib.blake2b(str(key).encode("utf-8", "surrogatepass"), key=self._salt,
                                                  digest_size=8).hexdigest()
        if body_digest is DIGEST_OF_BODY:
            body_digest = _digest_of_body(body)
        if body_digest is not None:
            entry["body_digest"] = body_digest
        if fault:
            entry["fault"] = fault
        if rule is not None:
            entry["rule"] = rule
        return entry

    def entries(self, limit: int | None = None, **filters) -> list[dict]:
        """The entries, oldest first; with ``filters`` (``FILTERS``, already checked) only those matching all;
        ``limit``: the last that many of them. ``key`` is compared here, and stays redacted in what is returned."""
        with self._lock:
            items = list(self._entries)
        if filters:
            items = [(seq, raw) for seq, raw in items if _matches(seq, raw, filters)]
        if limit:
            items = items[-limit:]
        return [self._shape(seq, raw) for seq, raw in items]

    def counts(self) -> dict:
        with self._lock:
            return self._counts.as_dict()

    @property
    def size(self) -> int:
        return self._entries.maxlen or 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counts = _Counts()
            self.era += 1


def _matches(seq: int, raw: tuple, f: dict) -> bool:
    _, method, path, _, pairs, *_rest = raw
    status, extra = raw[7], raw[10]
    kind, job_id, batch_id, _, rule, _, _ = extra
    if "since" in f and seq <= f["since"]:
        return False
    if "method" in f and str(method).upper() != f["method"].upper():
        return False
    if "path" in f and path != f["path"]:
        return False
    if "path_prefix" in f and not str(path).startswith(f["path_prefix"]):
        return False
    if "kind" in f and kind != f["kind"]:
        return False
    if "status" in f and status != f["status"]:
        return False
    if "batch_id" in f and batch_id != f["batch_id"]:
        return False
    if "job_id" in f and job_id != f["job_id"]:
        return False
    if "rule" in f and rule != f["rule"]:
        return False
    if "key" in f and not any(str(k).lower() == "api-key" and v == f["key"] for k, v in pairs):
        return False
    return True


class _Counts:
    """Every journaled request counted by endpoint kind, by status code, by both, and submits by batch_id
    (the first ``MAX_COUNTED_BATCH_IDS`` distinct ids by name, the rest together): bounded, whatever the cap."""

    def __init__(self):
        self.total = 0
        self.by_kind: dict[str, int] = {k: 0 for k in KINDS}
        self.by_status: dict[int, int] = {}
        self.by_kind_status: dict[str, dict[int, int]] = {k: {} for k in KINDS}
        self.submits_by_batch_id: dict[str, int] = {}
        self.other_batch_ids = 0

    def add(self, kind: str, status: int, batch_id: str | None) -> None:
        kind = kind if kind in self.by_kind else "other"
        self.total += 1
        self.by_kind[kind] += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        per_kind = self.by_kind_status[kind]
        per_kind[status] = per_kind.get(status, 0) + 1
        if kind == "submit" and batch_id is not None:
            if batch_id in self.submits_by_batch_id or len(self.submits_by_batch_id) < MAX_COUNTED_BATCH_IDS:
                self.submits_by_batch_id[batch_id] = self.submits_by_batch_id.get(batch_id, 0) + 1
            else:
                self.other_batch_ids += 1

    def as_dict(self) -> dict:
        return {"total": self.total, "by_kind": dict(self.by_kind),
                "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
                "by_kind_status": {k: {str(s): n for s, n in sorted(v.items())} for k, v in self.by_kind_status.items()},
                "submits_by_batch_id": {_text(b): n for b, n in self.submits_by_batch_id.items()},
                "other_batch_ids": self.other_batch_ids}
