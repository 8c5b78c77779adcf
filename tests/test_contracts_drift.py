"""Live mode end to end, against local stand-ins (never the provider's API):

- a stand-in that differs from the mock in three assumed rows (the mock itself, run with another
  profile: PENDING answered 202 (L15), batch_id not echoed (L18), up to 100 steps (L09)) is
  reported as drift on exactly those rows, with the observed values and a profile hint;
- a stand-in that behaves like the mock gives no drift;
- a live run never creates more jobs than ``--live-max-jobs``, even when the stand-in accepts
  requests the contracts expect to be refused;
- ``--record`` saves the exchanges without the API key.

Each run is a real ``python -m pytest contracts`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from sd35_twin.mockserver.testing import MockControl, launch

REPO = Path(__file__).resolve().parents[1]
ENV_VARS = ("IMAGEPIPELINE_API_KEY", "CONTRACTS_TARGET", "CONTRACTS_OTHER_API_KEY", "IMAGEPIPELINE_BASE_URL")
KEY = "stand-in-key-0123456789"
DRIFT_PROFILE = {
    "http_status": {"pending": 202},                  # L15 (O, A)
    "echo_batch_id": False,                           # L18 (D, A)
    "limits": {"num_inference_steps": {"max": 100}},  # L09 (A)
}
DRIFTING_ROWS = ["L09", "L15", "L18"]


def run_pytest(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ENV_VARS and not k.startswith("PYTEST_")}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=clean,
                          capture_output=True, text=True, timeout=timeout)


def run_live(stand_in_url: str, report: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_pytest("contracts", "--target", "live", "--live-base-url", stand_in_url,
                      "--contracts-report", str(report), *extra, env={"IMAGEPIPELINE_API_KEY": KEY})


@contextmanager
def stand_in(tmp_path: Path, profile_overrides: dict | None = None):
    """The provider as we pretend it is: ``python -m mockserver`` with its own key and (maybe) other
    values; yields its URL and its control plane, to see what reached it."""
    args = ["--api-key", KEY, "--pending-polls", "1", "--seed", "99", "--quiet"]
    if profile_overrides:
        profile = tmp_path / "stand-in-profile.json"
        profile.write_text(json.dumps(profile_overrides))
        args += ["--profile", str(profile)]
    with launch(*args) as provider:
        control = MockControl(provider.url)
        try:
            yield provider.url, control
        finally:
            control.close()


@pytest.fixture(scope="module")
def mock_report(tmp_path_factory) -> Path:
    """The suite on the embedded mock (few hypothesis examples: the rows are what matter here)."""
    path = tmp_path_factory.mktemp("mock") / "mock.json"
    done = run_pytest("contracts", "-q", "--contracts-report", str(path), "--contracts-examples", "10")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return path


def drift_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sd35_twin.contracts", "drift", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_a_stand_in_that_differs_in_three_assumed_rows_is_reported_as_exactly_that_drift(mock_report, tmp_path):
    live_report, recording = tmp_path / "live.json", tmp_path / "live.jsonl"
    with stand_in(tmp_path, DRIFT_PROFILE) as (url, control):
        done = run_live(url, live_report, "-q", "--live-max-jobs", "30", "--record", str(recording))
        jobs = control.jobs()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]   # the drifting contracts fail
    live = json.loads(live_report.read_text())
    assert live["target"]["kind"] == "live" and live["target"]["control_plane"] is False
    assert sorted(r["id"] for r in live["rows"] if r["result"] == "failed") == DRIFTING_ROWS
    assert live["live_jobs"]["created"] == len(jobs) <= 30

    out = drift_command(str(mock_report), str(live_report), "--json", "--profile-out", str(tmp_path / "hint.json"))
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert [d["id"] for d in result["drift"]] == DRIFTING_ROWS
    assert all(d["left"] == "held" and d["right"] == "failed" for d in result["drift"])
    by_id = {d["id"]: d for d in result["drift"]}
    assert "202" in by_id["L15"]["observed"]
    assert "num_inference_steps=51" in by_id["L09"]["observed"] and "accepted" in by_id["L09"]["observed"]
    assert '"batch_id_echoed": false' in by_id["L18"]["observed"]
    # the observations say how to change the mock's profile to match
    # (the stand-in's first poll finds the job done: only the submit's PENDING was seen)
    assert json.loads((tmp_path / "hint.json").read_text()) == {"echo_batch_id": False,
                                                                "http_status": {"submit_pending": 202}}
    # mock-only rows cannot be compared, and say so
    not_compared = {n["id"] for n in result["not_compared"]}
    assert {"L14", "L19", "L22", "L24"} <= not_compared and not not_compared & set(DRIFTING_ROWS)

    text = drift_command(str(mock_report), str(live_report))
    assert text.returncode == 1
    assert "3 rows drift" in text.stdout and "L15  held    failed" in text.stdout

    # the recording has every exchange, and not the key
    raw = recording.read_text()
    assert KEY not in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    assert len(lines) >= 50
    with_key = [e for e in lines if "API-Key" in e["request"]["headers"]]
    assert with_key and all(e["request"]["headers"]["API-Key"] == "[REDACTED]" for e in with_key)
    pending = [e for e in lines if e.get("response", {}).get("status") == 202]
    assert pending and pending[0]["response"]["body"]["status"] == "PENDING"   # the live answer, kept


def test_a_stand_in_that_behaves_like_the_mock_gives_no_drift(mock_report, tmp_path):
    live_report = tmp_path / "live.json"
    with stand_in(tmp_path) as (url, _):
        done = run_live(url, live_report, "-q", "--live-max-jobs", "30")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    live = json.loads(live_report.read_text())
    assert live["summary"]["failed"] == 0
    # without a second key, L21 is not checked on live; mock-only rows neither
    not_checked = {r["id"] for r in live["rows"] if r["result"] == "not_checked"}
    assert not_checked == {"L14", "L19", "L21", "L22", "L24", "L29", "L30", "L31"}
    out = drift_command(str(mock_report), str(live_report))
    assert out.returncode == 0, out.stdout
    assert "no drift" in out.stdout


def test_a_live_run_never_creates_more_jobs_than_the_cap(tmp_path):
    """Against the drifting stand-in, some requests the contracts expect to be refused are accepted
    (steps up to 100): they count too, and once two jobs exist nothing more that could bill is sent."""
    live_report = tmp_path / "live.json"
    with stand_in(tmp_path, DRIFT_PROFILE) as (url, control):
        done = run_live(url, live_report, "-q", "--live-max-jobs", "2", "-rs")
        jobs = control.jobs()
        submits = [e for e in control.journal()
                   if e["method"] == "POST" and e["path"] == "/sd3_5/v1" and e["status"] < 400]
    assert len(jobs) == 2 and len(submits) == 2, jobs
    live = json.loads(live_report.read_text())
    assert live["live_jobs"]["cap"] == 2 and live["live_jobs"]["created"] == 2
    skipped = [t for r in live["rows"] for t in r["tests"] if t["outcome"] == "skipped"]
    capped = [t for t in skipped if t["reason"].startswith("live job cap reached")]
    assert capped, skipped
    assert any(t["nodeid"].endswith("test_two_samples_are_accepted") for t in capped)
    rows = {r["id"]: r for r in live["rows"]}
    assert rows["L20"]["result"] == "not_checked" and rows["L20"]["note"].startswith("live job cap reached")
    assert "live job cap reached" in done.stdout and "live jobs created: 2 of cap 2" in done.stdout


def test_free_contracts_run_first_and_billable_ones_are_skipped_once_the_cap_is_spent(tmp_path):
    """Refused requests cost nothing and run first; then the billable contracts, in priority order
    (the shared basic job first), until the cap of one job is spent."""
    live_report = tmp_path / "live.json"
    with stand_in(tmp_path) as (url, control):
        done = run_live(url, live_report, "--live-max-jobs", "1", "-v", "--ledger-rows", "L01,L03,L05,L20")
        assert len(control.jobs()) == 1
    assert done.returncode == 0, done.stdout[-3000:]
    order = [line.split(" ")[0].split("::")[-1] for line in done.stdout.splitlines()
             if line.startswith("contracts/") and (" PASSED" in line or " SKIPPED" in line)]
    billable = {"test_submit_creates_a_job", "test_two_samples_are_accepted", "test_unknown_fields_are_ignored"}
    positions = [i for i, name in enumerate(order) if name.split("[")[0] in billable]
    assert len(positions) == 3 and positions == list(range(len(order) - 3, len(order))), order
    assert order[-3] == "test_submit_creates_a_job", order
    live = json.loads(live_report.read_text())
    rows = {r["id"]: r for r in live["rows"]}
    assert rows["L01"]["result"] == "held" and rows["L03"]["result"] == "held"
    assert rows["L05"]["result"] == "held"        # the free half; the billable half was capped
    assert [t["outcome"] for t in rows["L05"]["tests"]] == ["passed", "skipped"]
    assert rows["L20"]["result"] == "not_checked" and "live job cap reached" in rows["L20"]["note"]
