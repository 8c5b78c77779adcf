"""The plausible alternatives of every assumed behaviour, as data (``profiles/variants.json``).

The default profile holds one guess per unknown; each variant here is another plausible truth, written as a
profile overlay and tagged with the ledger row it belongs to and its evidence. The matrix (``sd35-mock
matrix``) and the pytest option ``--sd35-variants`` run a user's tests once per variant, so they
learn offline which unknowns their app would not survive. A row with no plausible alternative says why.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from importlib import resources


@dataclass(frozen=True)
class Variant:
    row: str                 # the ledger row (contracts/ledger.json) whose assumption this replaces
    name: str                # short, for ids and tables: "submit=202"
    evidence: str            # why it is plausible
    profile: dict = field(default_factory=dict, compare=False)  # merged over the default profile

    @property
    def id(self) -> str:
        return f"{self.row}:{self.name}"


@functools.lru_cache(maxsize=1)
def _document() -> dict:
    """The file, read once (package data: it does not change while the mock runs). Callers copy what they keep."""
    return json.loads(resources.files(__package__).joinpath("profiles/variants.json").read_text("utf-8"))


def load_variants(rows: set[str] | None = None) -> list[Variant]:
    """Every variant, in the file's order; ``rows`` keeps only those rows' (unknown ids are a ValueError)."""
    listed = _document()["rows"]
    unknown = sorted(set(rows or ()) - set(listed))
    if unknown:
        raise ValueError(f"no variants for row(s) {', '.join(unknown)}; rows with variants: {', '.join(listed)}")
    return [Variant(row, v["name"], v["evidence"], copy.deepcopy(v.get("profile", {})))
            for row, entry in listed.items() if rows is None or row in rows
            for v in entry.get("variants", [])]


def rows_without_variants() -> dict[str, str]:
    """Assumed rows that have no plausible alternative, with the reason."""
    return {row: entry["none"] for row, entry in _document()["rows"].items() if "none" in entry}


def row_notes() -> dict[str, dict[str, str]]:
    """Every guessed row (each row of the file), in the ledger's order, with ``meet`` (what a request must do
    to meet it) and ``risk`` (what a suite that never met it leaves untested)."""
    return {row: {"meet": entry["meet"], "risk": entry["risk"]} for row, entry in _document()["rows"].items()}
