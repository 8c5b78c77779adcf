"""Which of the twin's guesses a run met, and which it never touched.

Where the mock decides something that an assumed ledger row governs (a PENDING answer's status code, an
expired download URL, a spent key, ...), it calls ``meet(row)`` right there: one place per row, beside the
behaviour, so the mark cannot drift from what it marks. The HTTP layer opens a small list per request
(``collect``); its marks become the journal entry's ``rows`` and are counted in the backend's ``Coverage``
with the entry's seq. Marks made off any request (a webhook delivery's thread) are counted without a seq.

The rows are those of ``profiles/variants.json`` (every assumed row of the ledger, and the rows with variants);
each carries the sentence of what would meet it and the risk of never meeting it.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token

from .variants import row_notes

_ROWS: ContextVar[list | None] = ContextVar("sd35_rows", default=None)


def meet(row: str) -> None:
    """The current request met ``row`` (a no-op outside a request that collects: the control plane's)."""
    rows = _ROWS.get()
    if rows is not None and row not in rows:
        rows.append(row)


def collect(rows: list) -> Token:
    """Collect this context's marks into ``rows`` until ``stop_collecting(token)``."""
    return _ROWS.set(rows)


def stop_collecting(token: Token) -> None:
    _ROWS.reset(token)


class Coverage:
    """How often each row was met since start-up or reset, with the journal seq of the first and last time
    (None for a mark off any request). Bounded: one entry per ledger row."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._met: dict[str, list] = {}   # row -> [count, first_seq, last_seq]
        self.resets = 0                   # how many resets since start-up: a reader can tell "since" apart

    def add(self, rows: list[str], seq: int | None = None) -> None:
        with self._lock:
            for row in rows:
                found = self._met.get(row)
                if found is None:
                    self._met[row] = [1, seq, seq]
                else:
                    found[0] += 1
                    if seq is not None:
                        found[1] = seq if found[1] is None else found[1]
                        found[2] = seq

    def met_off_request(self, row: str) -> None:
        """A mark made off any request (a webhook delivery's thread): counted, with no seq."""
        self.add([row])

    def clear(self) -> None:
        with self._lock:
            self._met.clear()
            self.resets += 1

    def report(self) -> dict:
        """``met``: each guessed row met, in the ledger's order, with ``count``, ``first_seq``, ``last_seq``;
        ``never_met``: the others, each with what would meet it (``would_meet``) and the ``risk``."""
        with self._lock:
            met = {row: list(v) for row, v in self._met.items()}
            resets = self.resets
        notes = row_notes()
        ordered = [*notes, *sorted(set(met) - set(notes))]
        return {
            "resets": resets,
            "met": [{"row": row, "count": met[row][0], "first_seq": met[row][1], "last_seq": met[row][2]}
                    for row in ordered if row in met],
            "never_met": [{"row": row, "would_meet": notes[row]["meet"], "risk": notes[row]["risk"]}
                          for row in notes if row not in met],
        }
