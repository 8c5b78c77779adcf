"""The ledger is data: every row well-formed, its profile key real, and its contracts present."""

import json
import re
from pathlib import Path

import pytest

from sd35_twin.mockserver.config import load_default_profile

REPO = Path(__file__).resolve().parents[1]
LEDGER = json.loads((REPO / "contracts" / "ledger.json").read_text())
ROWS = LEDGER["rows"]


def test_ids_are_unique_and_stable_shaped():
    ids = [row["id"] for row in ROWS]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"L\d{2}", i) for i in ids)
    assert ids[:22] == [f"L{n:02d}" for n in range(1, 23)]  # DESIGN.md's rows 1..22 keep their numbers


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_row_is_well_formed(row):
    assert row["behaviour"] and row["value"]
    assert set(re.split(r",\s*", row["evidence"])) <= {"D", "O", "S", "A"}
    if "A" in row["evidence"] and row.get("profile_key"):
        node = load_default_profile()
        for part in row["profile_key"].split("."):
            node = node[part]


def test_every_row_names_contracts_that_exist():
    missing = [row["id"] for row in ROWS if not row.get("contracts")]
    assert not missing, f"rows without contracts: {missing}"
    sources = {p.name: p.read_text() for p in (REPO / "contracts").glob("test_*.py")}
    for row in ROWS:
        for ref in row["contracts"]:
            module, _, name = ref.partition("::")
            assert re.search(rf"def {re.escape(name)}\b", sources.get(Path(module).name, "")), f"{row['id']}: {ref}"
