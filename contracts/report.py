"""The report of one contract run (which ledger rows held, failed, or were not checked on a
target), its JSON form and readable table, and the drift between two reports.

Pure data and text: no pytest, no HTTP, so the drift command and CI tooling can use it alone.

A row's result on a target:

- ``failed``      if any of its contract tests failed (or errored);
- ``held``        if at least one passed and none failed;
- ``not_checked`` if all were skipped, deselected or absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

SCHEMA = "sd35-contracts-report/1"
HELD, FAILED, NOT_CHECKED = "held", "failed", "not_checked"
RESULTS = (HELD, FAILED, NOT_CHECKED)
MAX_OBSERVED_PER_TEST = 5
MAX_MESSAGE_CHARS = 500

__all__ = [
    "SCHEMA", "HELD", "FAILED", "NOT_CHECKED", "load_ledger", "TestOutcome", "RunReport",
    "row_result", "Drift", "drift", "format_table", "format_drift", "load_report", "deep_merge",
]


def load_ledger(path: str | Path | None = None) -> list[dict]:
    """The ledger rows (``contracts/ledger.json``, shipped with the package)."""
    if path is not None:
        text = Path(path).read_text("utf-8")
    else:
        text = resources.files(__package__).joinpath("ledger.json").read_text("utf-8")
    return list(json.loads(text)["rows"])


@dataclass
class TestOutcome:
    """The outcome of one contract test (all of its phases folded into one)."""

    __test__ = False  # not a pytest test class

    nodeid: str
    rows: tuple[str, ...]
    outcome: str = "not_run"           # passed | failed | skipped | deselected | not_run
    reason: str = ""                   # why skipped or deselected
    message: str = ""                  # why failed (first line of the error)
    observed: list[Any] = field(default_factory=list)

    def merge_phase(self, when: str, outcome: str, text: str = "") -> None:
        """Fold one phase (setup, call, teardown) of pytest's report into the outcome."""
        text = _clip(text)
        if outcome == "failed":
            if self.outcome != "failed":
                self.message = (f"error in {when}: " if when != "call" else "") + text
            self.outcome = "failed"
        elif outcome == "skipped":
            if self.outcome != "failed":
                self.outcome, self.reason = "skipped", text
        elif outcome == "passed" and when == "call" and self.outcome not in ("failed", "skipped"):
            self.outcome = "passed"

    def as_dict(self) -> dict:
        data = {"nodeid": self.nodeid, "outcome": self.outcome}
        if self.reason:
            data["reason"] = self.reason
        if self.message:
            data["message"] = self.message
        if self.observed:
            data["observed"] = self.observed[-MAX_OBSERVED_PER_TEST:]
        return data


def row_result(outcomes: Iterable[str]) -> str:
    outcomes = list(outcomes)
    if "failed" in outcomes:
        return FAILED
    if "passed" in outcomes:
        return HELD
    return NOT_CHECKED


@dataclass
class RunReport:
    """Everything a run says about the ledger on one target."""

    target: dict
    ledger: list[dict]
    tests: list[TestOutcome]
    started_at: float | None = None
    duration_s: float | None = None
    live_jobs: dict | None = None      # {"cap": N, "created": M, "blocked": K} on live
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        by_row: dict[str, list[TestOutcome]] = {}
        for test in self.tests:
            for row_id in test.rows:
                by_row.setdefault(row_id, []).append(test)
        out = []
        for row in self.ledger:
            tests = by_row.get(row["id"], [])
            result = row_result(t.outcome for t in tests)
            entry = {k: row[k] for k in ("id", "behaviour", "value", "evidence") if k in row}
            if "profile_key" in row:
                entry["profile_key"] = row["profile_key"]
            entry["result"] = result
            entry["tests"] = [t.as_dict() for t in tests]
            observed = []
            for t in tests:
                for value in t.observed[-MAX_OBSERVED_PER_TEST:]:
                    if isinstance(value, Mapping) and value.get("row") not in (None, row["id"]):
                        continue
                    observed.append({"test": t.nodeid, **_strip_row(value)})
            if observed:
                entry["observed"] = observed
            entry["note"] = _row_note(result, tests)
            out.append(entry)
        return out

    def as_dict(self) -> dict:
        rows = self.rows()
        summary = {r: sum(1 for row in rows if row["result"] == r) for r in RESULTS}
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "target": self.target,
            "summary": summary,
            "rows": rows,
        }
        if self.started_at is not None:
            data["started_at"] = round(self.started_at, 3)
        if self.duration_s is not None:
            data["duration_s"] = round(self.duration_s, 3)
        if self.live_jobs is not None:
            data["live_jobs"] = self.live_jobs
        if self.notes:
            data["notes"] = self.notes
        return data

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=False, default=str) + "\n", "utf-8")
        return path


def _strip_row(value: Any) -> dict:
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k != "row"}
    return {"value": value}


def _row_note(result: str, tests: list[TestOutcome]) -> str:
    if not tests:
        return "no contract test selected"
    if result == FAILED:
        first = next(t for t in tests if t.outcome == "failed")
        return first.message or "failed"
    if result == NOT_CHECKED:
        reasons = [t.reason for t in tests if t.reason]
        return reasons[0] if reasons else "not run"
    skipped = sum(1 for t in tests if t.outcome == "skipped")
    return f"{skipped} of {len(tests)} tests skipped" if skipped else ""


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def load_report(path: str | Path) -> dict:
    """A report; or a recording (JSON lines from ``sd35-mock proxy --record`` or the suite's ``--record``), read
    into a report by ``sd35_twin.mockserver.evidence``, the code the proxy reads its exchanges with."""
    text = Path(path).read_text("utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        return data
    if (data is None or (isinstance(data, dict) and "request" in data)) and text.lstrip().startswith("{"):
        return report_from_recording(text.splitlines(), str(path))
    raise ValueError(f"{path}: not a contracts report (schema {SCHEMA!r} expected) nor a recording (JSON lines)")


def report_from_recording(lines: Iterable[str], name: str) -> dict:
    """What a recording's exchanges say about the ledger's rows, against the twin's default profile."""
    from sd35_twin.mockserver.evidence import Evidence

    evidence = Evidence()
    if not evidence.read_recording(lines):
        raise ValueError(f"{name}: a recording with no exchange of the API in it")
    return evidence.contracts_report({"kind": "recording", "base_url": name})


# --- the table ----------------------------------------------------------------------------------

_MARK = {HELD: "held", FAILED: "FAILED", NOT_CHECKED: "not checked"}


def format_table(report: Mapping[str, Any], width: int = 120) -> str:
    """A readable table of a report (a ``RunReport.as_dict()`` or a loaded JSON report)."""
    target = report.get("target", {})
    where = target.get("base_url") or "no one URL"   # under xdist, each worker started its own mock
    lines = [f"Contract ledger on target {target.get('kind', '?')} ({where})"]
    jobs = report.get("live_jobs")
    if jobs:
        lines.append(f"live jobs created: {jobs.get('created')} of cap {jobs.get('cap')}"
                     + (f"; {jobs.get('blocked')} submits held back by the cap" if jobs.get("blocked") else ""))
    lines.append(f"{'row':<4} {'result':<11} {'ev.':<5} {'tests':>5}  {'behaviour':<24} note")
    for row in report.get("rows", []):
        tests = row.get("tests", [])
        counts = f"{sum(1 for t in tests if t['outcome'] == 'passed')}/{len(tests)}"
        note = row.get("note", "")
        line = (f"{row['id']:<4} {_MARK.get(row['result'], row['result']):<11} {row.get('evidence', ''):<5} "
                f"{counts:>5}  {row.get('behaviour', '')[:24]:<24} {note}")
        lines.append(line if len(line) <= width else line[: width - 3] + "...")
    summary = report.get("summary", {})
    lines.append(f"{summary.get(HELD, 0)} held, {summary.get(FAILED, 0)} failed, "
                 f"{summary.get(NOT_CHECKED, 0)} not checked")
    return "\n".join(lines)


# --- drift --------------------------------------------------------------------------------------

@dataclass
class Drift:
    """Rows that hold on one target and fail on the other, plus the rows that could not be compared."""

    left: dict
    right: dict
    drifted: list[dict]
    agreed: list[str]
    not_compared: list[dict]
    profile_hint: dict

    @property
    def ids(self) -> list[str]:
        return [d["id"] for d in self.drifted]

    def as_dict(self) -> dict:
        return {"left": self.left, "right": self.right, "drift": self.drifted, "agreed": self.agreed,
                "not_compared": self.not_compared, "profile_hint": self.profile_hint}


def _relevant_observations(row: Mapping[str, Any]) -> list[dict]:
    """The observations of a row's failing tests (what diverged), else all of them."""
    observed = [o for o in row.get("observed", []) or [] if isinstance(o, Mapping)]
    failing = {t.get("nodeid") for t in row.get("tests", []) if t.get("outcome") == "failed"}
    picked = [o for o in observed if o.get("test") in failing]
    return picked or observed


def _observed_text(row: Mapping[str, Any], limit: int = 240) -> str:
    parts = []
    for obs in _relevant_observations(row):
        value = {k: v for k, v in obs.items() if k not in ("test", "profile")}
        if value:
            text = json.dumps(value.get("value", value) if list(value) == ["value"] else value,
                              sort_keys=True, default=str)
            parts.append(text if len(text) <= limit else text[: limit - 3] + "...")
    failed = [t.get("message", "") for t in row.get("tests", []) if t.get("outcome") == "failed"]
    if failed and failed[0]:
        parts.append(failed[0] if len(failed[0]) <= limit else failed[0][: limit - 3] + "...")
    seen: list[str] = []
    for p in parts:
        if p not in seen:
            seen.append(p)
    return " | ".join(seen[-3:])


def _leaves(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
    out: dict[tuple, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_leaves(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def _profile_hint(seen: Mapping[str, Any], other: Mapping[str, Any] | None) -> dict:
    """The profile overrides the observed side's diverging observations suggest, minus any value the
    other side observed too (those are not what differs)."""
    hint: dict = {}
    for obs in _relevant_observations(seen):
        if isinstance(obs.get("profile"), Mapping):
            hint = deep_merge(hint, obs["profile"])
    if not hint or not other:
        return hint
    same: dict[tuple, Any] = {}
    for obs in other.get("observed", []) or []:
        if isinstance(obs, Mapping) and isinstance(obs.get("profile"), Mapping):
            same.update(_leaves(obs["profile"]))
    kept: dict = {}
    for path, value in _leaves(hint).items():
        if path in same and same[path] == value:
            continue
        node = kept
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return kept


def deep_merge(base: dict, override: Mapping) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def drift(left: Mapping[str, Any], right: Mapping[str, Any]) -> Drift:
    """Compare two reports (e.g. the mock's and the live API's), row by row.

    The side whose target is ``live`` (else the right one) gives the observed values and the
    profile hint: the profile overrides its observations suggest for the mock.
    """
    live_is_left = left.get("target", {}).get("kind") == "live" and right.get("target", {}).get("kind") != "live"
    observed_side = left if live_is_left else right
    l_rows = {r["id"]: r for r in left.get("rows", [])}
    r_rows = {r["id"]: r for r in right.get("rows", [])}
    drifted, agreed, not_compared = [], [], []
    hint: dict = {}
    for row_id in sorted(set(l_rows) | set(r_rows), key=_row_key):
        a, b = l_rows.get(row_id), r_rows.get(row_id)
        ra = a["result"] if a else NOT_CHECKED
        rb = b["result"] if b else NOT_CHECKED
        if NOT_CHECKED in (ra, rb):
            if ra != rb:
                not_compared.append({"id": row_id, "left": ra, "right": rb})
            continue
        if ra == rb:
            agreed.append(row_id)
            continue
        seen = (a if observed_side is left else b) or {}
        info = a or b
        entry = {"id": row_id, "behaviour": info.get("behaviour", ""), "evidence": info.get("evidence", ""),
                 "ledger_value": info.get("value", ""), "left": ra, "right": rb,
                 "observed": _observed_text(seen)}
        if info.get("profile_key"):
            entry["profile_key"] = info["profile_key"]
        row_hint = _profile_hint(seen, b if seen is a else a)
        if row_hint:
            entry["profile_hint"] = row_hint
            hint = deep_merge(hint, row_hint)
        drifted.append(entry)
    return Drift(left=dict(left.get("target", {})), right=dict(right.get("target", {})), drifted=drifted,
                 agreed=agreed, not_compared=not_compared, profile_hint=hint)


def _row_key(row_id: str) -> tuple:
    digits = "".join(c for c in row_id if c.isdigit())
    return (row_id.rstrip("0123456789"), int(digits) if digits else 0, row_id)


def _side(target: Mapping[str, Any]) -> str:
    return f"{target.get('kind', '?')} ({target.get('base_url', '?')})"


def format_drift(d: Drift) -> str:
    left, right = d.left.get("kind", "left"), d.right.get("kind", "right")
    if left == right:
        left, right = "left", "right"
    lines = [f"Drift between {_side(d.left)} and {_side(d.right)}:"]
    if not d.drifted:
        lines.append("no drift: every row checked on both sides has the same result")
    else:
        lines.append(f"{'row':<4} {left:<7} {right:<7} {'ev.':<5} {'behaviour':<24} observed")
        for e in d.drifted:
            lines.append(f"{e['id']:<4} {e['left']:<7} {e['right']:<7} {e['evidence']:<5} "
                         f"{e['behaviour'][:24]:<24} {e['observed']}")
            if e.get("profile_key"):
                lines.append(f"{'':<4} the mock's value: {e['ledger_value']} (profile key {e['profile_key']})")
            else:
                lines.append(f"{'':<4} the mock's value: {e['ledger_value']}")
    lines.append(f"{len(d.drifted)} rows drift, {len(d.agreed)} agree, {len(d.not_compared)} not compared"
                 + (" (not checked on one side: " + ", ".join(n["id"] for n in d.not_compared) + ")"
                    if d.not_compared else ""))
    if d.profile_hint:
        lines.append("Profile overrides for the mock suggested by the observations "
                     "(sd35-mock --profile FILE):")
        lines.append(json.dumps(d.profile_hint, indent=2, sort_keys=True))
    return "\n".join(lines)
