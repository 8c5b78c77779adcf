"""Recording of HTTP exchanges (opt-in, ``--record PATH``): one JSON line per exchange, with every
API key removed, so an answer observed on the live API can be turned into a profile change.

    {"test": "contracts/test_options.py::test_batch_id_is_echoed", "at": 1717000000.1,
     "request": {"method": "POST", "url": "...", "headers": {"API-Key": "[REDACTED]", ...}, "body": ...},
     "response": {"status": 200, "headers": {...}, "body": {...}}, "elapsed_ms": 12.3,
     "readings": [{"row": "L15", "held": true, "text": "L15: submit_pending answered HTTP 200"}, ...]}

Bodies are JSON when they parse, else text; images are summarised (type, size, sha256), never stored.
Redaction, body summaries and the readings (what each exchange says about the ledger's rows, against the
default profile) are ``sd35_twin.mockserver.evidence``'s: the same code the shadow proxy records and reads with.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from sd35_twin.mockserver.evidence import (REDACTED, Evidence, Redactor, exchange_from_entry, key_fingerprint,
                                           summarise_body)

__all__ = ["Recorder", "Redactor", "REDACTED"]

class Recorder:
    """Appends redacted exchanges to a JSONL file; safe to call from several threads."""

    def __init__(self, path: str | Path, secrets: Iterable[str | None] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redactor = Redactor(secrets)
        self.evidence = Evidence()   # the default profile: each line says which rows its exchange held or drifted
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
                "bytes": len(request_body or b""),
                "body": summarise_body(request_body, prepared.headers.get("Content-Type", ""), r),
            },
        }
        if response is not None:
            entry["response"] = {
                "status": response.status_code,
                "headers": r.headers(response.headers),
                "body": summarise_body(response.content, response.headers.get("Content-Type", ""), r),
            }
            exchange = exchange_from_entry(entry, self.evidence, who=key_fingerprint(prepared.headers.get("API-Key")))
            if exchange is not None:
                entry["readings"] = [{"row": x.row, "held": x.held, "text": x.text}
                                     for x in self.evidence.read(exchange)]
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
