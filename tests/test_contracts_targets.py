"""The contract suite's targets, run for real in a separate pytest process: a ``python -m mockserver``
selected by URL (left as the suite found it, or reset with ``--reset-target``), the live mode's refusal
without a key or under xdist, bad options, and the plugin staying out of the way of a project's own
tests (and working from one, with ``--pyargs contracts``).

Nothing here contacts the live API: live runs point ``--live-base-url`` at a local stand-in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sd35_twin.contracts.report import load_ledger
from sd35_twin.mockserver.testing import MockControl, launch
from tests.helpers import refused_port

ROWS = len(load_ledger())  # the ledger's rows, so a new row does not break these counts

REPO = Path(__file__).resolve().parents[1]
ENV_VARS = ("IMAGEPIPELINE_API_KEY", "CONTRACTS_TARGET", "CONTRACTS_OTHER_API_KEY", "IMAGEPIPELINE_BASE_URL",
            "SD35_MOCK_CONTROL_TOKEN")


def run_pytest(*args: str, env: dict | None = None, cwd: Path = REPO, timeout: float = 180) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ENV_VARS and not k.startswith("PYTEST_")}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=timeout)


def summary(stdout: str) -> dict[str, int]:
    """pytest's closing line as counts: ``{"passed": 3, "skipped": 2}``."""
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|skipped|failed|error)", stdout.splitlines()[-1])}


@pytest.fixture
def mockserver_process():
    """``python -m mockserver --port 0 --pending-seconds 0``, as a user would start it."""
    with launch("--pending-seconds", "0", "--quiet", cwd=str(REPO)) as mock:
        yield mock.url


def submit_as_another_user(url: str) -> str:
    """A job of someone else using the same mock (the developer's app), sent with plain requests."""
    body = {"prompt": "their picture", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
            "guidance_scale": 0.0}
    resp = requests.post(url + "/sd3_5/v1", json=body, headers={"API-Key": "someone-else"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def test_the_suite_passes_against_a_separately_started_mockserver_and_leaves_it_as_found(mockserver_process,
                                                                                         tmp_path):
    """The whole suite, the target chosen by $CONTRACTS_TARGET (the same as --target URL), on a mock
    someone else uses too: their job and the configuration they set are still there afterwards."""
    control = MockControl(mockserver_process)
    control.configure(lifecycle="polls", pending_polls=3, webhook_backoff=0.3)
    theirs = submit_as_another_user(mockserver_process)
    before = control.config()
    report = tmp_path / "url.json"
    done = run_pytest("contracts", "-q", "--contracts-report", str(report), "--contracts-examples", "25",
                      env={"CONTRACTS_TARGET": mockserver_process})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert control.config() == before
    assert control.job(theirs)["id"] == theirs                  # not reset away
    submit_as_another_user(mockserver_process)                  # no key restriction left behind
    control.close()
    data = json.loads(report.read_text())
    assert data["target"] == {"kind": "url", "base_url": mockserver_process, "control_plane": True,
                              "spec": mockserver_process}
    assert data["summary"] == {"held": ROWS - 1, "failed": 0, "not_checked": 1}
    [l22] = [row for row in data["rows"] if row["id"] == "L22"]  # it moves the clock a day on: not on a shared mock
    assert l22["result"] == "not_checked" and "needs --reset-target" in l22["tests"][0]["reason"]
    assert "sd35 contract ledger" in done.stdout and f"{ROWS - 1} held, 0 failed, 1 not checked" in done.stdout


def test_with_reset_target_every_contract_runs_and_the_mock_ends_as_it_started(mockserver_process, tmp_path):
    control = MockControl(mockserver_process)
    started = control.config()
    control.configure(pending_polls=3)
    submit_as_another_user(mockserver_process)
    report = tmp_path / "url.json"
    done = run_pytest("contracts", "-q", "--target", mockserver_process, "--reset-target", "--contracts-report",
                      str(report), "--contracts-examples", "10")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert json.loads(report.read_text())["summary"] == {"held": ROWS, "failed": 0, "not_checked": 0}
    assert control.jobs() == [] and control.config() == started
    control.close()


def test_a_mock_with_keys_of_its_own_keeps_them():
    """The auth contracts restrict keys only on a mock that accepts any key (and lift it after): GET
    answers keys redacted, so a mock's own keys could never be put back."""
    with launch("--pending-seconds", "0", "--quiet", "--api-key", "their-key-1", "--api-key", "our-key-22") as mock:
        control = MockControl(mock.url)
        before = control.config()
        done = run_pytest("contracts", "-q", "--target", mock.url, "--ledger-rows", "L03",
                          env={"IMAGEPIPELINE_API_KEY": "our-key-22"})
        after = control.config()
        control.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert after == before


def test_live_without_a_key_refuses_at_once_and_sends_nothing():
    with launch("--pending-seconds", "0", "--quiet") as stand_in:
        done = run_pytest("contracts", "--target", "live", "--live-base-url", stand_in.url)
        assert done.returncode == 4, done.stdout + done.stderr          # pytest's usage error
        assert "needs an API key in $IMAGEPIPELINE_API_KEY" in done.stderr
        assert "nothing was sent" in done.stderr
        assert "collected" not in done.stdout                           # refused before collection
        control = MockControl(stand_in.url)
        assert control.journal() == [] and control.jobs() == []        # no request reached the host
        control.close()


def test_live_refuses_xdist_so_the_job_cap_holds():
    """``-n 3`` would give each worker its own count of live jobs (a stand-in once received 5 jobs
    under a cap of 3): a shared target refuses xdist before anything is sent."""
    with launch("--pending-seconds", "0", "--quiet", "--api-key", "stand-in-key") as stand_in:
        done = run_pytest("contracts", "--target", "live", "--live-base-url", stand_in.url, "--live-max-jobs", "3",
                          "-n", "3", env={"IMAGEPIPELINE_API_KEY": "stand-in-key"})
        control = MockControl(stand_in.url)
        jobs, journal = control.jobs(), control.journal()
        control.close()
    assert done.returncode == 4, done.stdout[-3000:] + done.stderr[-3000:]
    assert "--target live cannot run under pytest-xdist (-n/--dist)" in done.stderr
    assert jobs == [] and journal == []      # at most 3 jobs: none, as nothing was sent


def test_a_bad_target_is_a_usage_error():
    done = run_pytest("contracts", "-q", "--target", "staging")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "--target must be 'mock', 'live' or an http" in done.stderr


def test_an_unreachable_url_target_stops_the_run_with_a_clear_message():
    with refused_port() as port:
        done = run_pytest("contracts", "-q", "--ledger-rows", "L03", "--target", f"http://127.0.0.1:{port}", timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"target http://127.0.0.1:{port} does not answer" in done.stdout + done.stderr


def test_the_plugin_stays_out_of_a_projects_own_tests_and_serves_its_fixture(tmp_path):
    """Loaded in every pytest run, it starts no server, prints no table and writes no report unless
    a contract runs; a project's test may still ask for the ``contract`` fixture (the embedded mock)."""
    (tmp_path / "test_0_plain.py").write_text(
        "import threading\n\n"
        "def test_plain():\n"
        "    assert not [t for t in threading.enumerate() if t.name.startswith('sd35-mock')]\n")
    (tmp_path / "test_1_app.py").write_text(
        "def test_my_app_against_the_embedded_mock(contract):\n"
        "    job = contract.client.generate(prompt='a cat', negative_prompt='dog')\n"
        "    assert job.is_success and len(job.download_urls) == 1\n")
    report = tmp_path / "report.json"
    done = run_pytest("-q", "--contracts-report", str(report), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert "sd35 contract ledger" not in done.stdout and not report.exists()


def test_a_project_runs_the_suite_with_pyargs(tmp_path):
    report = tmp_path / "report.json"
    done = run_pytest("--pyargs", "sd35_twin.contracts", "-q", "--ledger-rows", "L03,L13", "--contracts-report", str(report),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    data = json.loads(report.read_text())
    assert {r["id"] for r in data["rows"] if r["result"] == "held"} == {"L03", "L13"}
    assert data["target"]["kind"] == "mock"


def test_a_url_target_started_with_a_control_token_is_driven_with_the_same_variable():
    """The contracts read the token the mock itself reads ($SD35_MOCK_CONTROL_TOKEN): mock-only contracts run."""
    with launch("--pending-seconds", "0", "--quiet", env={"SD35_MOCK_CONTROL_TOKEN": "t0ken"}) as mock:
        done = run_pytest("contracts", "--target", mock.url, "--ledger-rows", "L28", env={"SD35_MOCK_CONTROL_TOKEN": "t0ken"})
        assert done.returncode == 0, done.stdout[-3000:]
        assert "skipped" not in done.stdout.splitlines()[-1]
        without = run_pytest("contracts", "--target", mock.url, "--ledger-rows", "L28", "-rs", env={"COLUMNS": "400"})
        reason = (f"mock-only: the target {mock.url} has no mock control plane "
                  "(GET /__mock__/health answered HTTP 401)")
        skips = [line for line in without.stdout.splitlines() if line.startswith("SKIPPED")]
        assert without.returncode == 0 and skips, without.stdout[-3000:]
        assert all(line.endswith(reason) for line in skips), skips  # skipped for that reason, and no other
        skipped = sum(int(re.match(r"SKIPPED \[(\d+)\]", line)[1]) for line in skips)
        # the mock-only contracts of L28 are skipped, the others still run and pass
        assert summary(without.stdout) == {"passed": summary(done.stdout)["passed"] - skipped, "skipped": skipped}
