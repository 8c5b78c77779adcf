"""The ledger and the contract suite agree: every row names its contract tests, each named test
exists and carries that row in its ``ledger`` marker, and every contract test is listed under each
row it verifies. Also: billable and mock-only markers are where they must be."""

from __future__ import annotations

import importlib
import inspect

import pytest

from sd35_twin.contracts.report import load_ledger

LEDGER = load_ledger()


def _marks(obj) -> list:
    marks = list(getattr(obj, "pytestmark", []))
    module = importlib.import_module(obj.__module__)
    module_marks = getattr(module, "pytestmark", [])
    return marks + (module_marks if isinstance(module_marks, list) else [module_marks])


def _contract_tests() -> dict[str, object]:
    """'contracts/test_x.py::name' -> function, for every test function with a ledger marker."""
    from pathlib import Path

    from sd35_twin import contracts

    found = {}
    for path in sorted(Path(contracts.__file__).parent.glob("test_*.py")):
        module = importlib.import_module(f"contracts.{path.stem}")
        for name, fn in inspect.getmembers(module, callable):
            if name.startswith("test_") and getattr(fn, "__module__", None) == module.__name__:
                if any(m.name == "ledger" for m in _marks(fn)):
                    found[f"contracts/{path.name}::{name}"] = fn
    return found


TESTS = _contract_tests()


def _rows_of(fn) -> set[str]:
    return {str(a) for m in _marks(fn) if m.name == "ledger" for a in m.args}


def test_ledger_rows_are_unique_and_complete():
    ids = [row["id"] for row in LEDGER]
    assert ids == [f"L{n:02d}" for n in range(1, len(ids) + 1)]
    for row in LEDGER:
        assert {"id", "behaviour", "value", "evidence", "contracts"} <= set(row), row["id"]


@pytest.mark.parametrize("row", LEDGER, ids=[r["id"] for r in LEDGER])
def test_every_row_names_existing_contracts_that_verify_it(row):
    assert row["contracts"], f"{row['id']} has no contract test"
    for name in row["contracts"]:
        assert name in TESTS, f"{row['id']} names {name}, which is not a contract test"
        assert row["id"] in _rows_of(TESTS[name]), f"{name} does not carry ledger({row['id']!r})"


def test_every_contract_test_is_listed_under_each_of_its_rows():
    listed = {(row["id"], name) for row in LEDGER for name in row["contracts"]}
    for name, fn in TESTS.items():
        for row_id in _rows_of(fn):
            assert (row_id, name) in listed, f"{name} verifies {row_id} but the ledger does not list it"


def test_every_row_has_a_test_that_can_run_on_live_unless_it_needs_the_control_plane():
    """Mock-only rows are the ones that need forced failure, the webhook journal, the clock, a credit balance
    or a rate limit (L30: probing a live provider's limit would spend its quota), or a webhook receiver (L19, L31)."""
    mock_only_rows = set()
    for row in LEDGER:
        fns = [TESTS[n] for n in row["contracts"]]
        if all(any(m.name == "mock_only" for m in _marks(fn)) for fn in fns):
            mock_only_rows.add(row["id"])
    assert mock_only_rows == {"L14", "L19", "L22", "L24", "L29", "L30", "L31"}


def test_tests_that_create_jobs_are_billable_and_shared_ones_name_their_job():
    for name, fn in TESTS.items():
        source = inspect.getsource(fn)
        billable = [m for m in _marks(fn) if m.name == "billable"]
        uses_shared = any(p in inspect.signature(fn).parameters for p in ("basic_job", "options_job"))
        creates = "submit_accepted(" in source or ".submit(" in source
        if uses_shared:
            assert billable and billable[0].kwargs.get("shared"), f"{name} uses a shared job: billable(shared=...)"
        elif creates and "expect_rejected" not in source:
            assert billable, f"{name} creates a job but is not marked billable"
        if not billable:
            assert not uses_shared
