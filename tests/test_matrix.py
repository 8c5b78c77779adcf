"""``sd35-mock matrix -- COMMAND``: real subprocesses, a fresh mock per run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from sd35_twin.mockserver.variants import load_variants
from tests.helpers import REPO

FRAGILE_APP = REPO / "tests" / "data" / "fragile_app.py"
RUN_KEYS = {"row", "variant", "evidence", "passed", "seconds", "exit_code", "output", "timed_out"}


def matrix(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", "matrix", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def report(path) -> list[dict]:
    runs = json.loads(path.read_text("utf-8"))["runs"]
    assert all(set(run) == RUN_KEYS for run in runs)
    return runs


def submit_may_finish(overlay: dict) -> bool:
    """The overlay lets a submit answer SUCCESS at once (what the fragile app assumes never happens)."""
    finished = overlay.get("submit", {}).get("finished") if isinstance(overlay.get("submit"), dict) else None
    return finished not in (None, "never")


def test_the_fragile_app_fails_exactly_where_a_submit_may_answer_success(tmp_path):
    expected = {v.id for v in load_variants() if submit_may_finish(v.profile)}
    assert expected == {"L11:submit=SUCCESS"}  # explicit: update it with profiles/variants.json
    done = matrix("--jobs", "6", "--pending-seconds", "0.2", "--report", str(tmp_path / "r.json"), "--",
                  sys.executable, str(FRAGILE_APP), "{url}")
    runs = report(tmp_path / "r.json")
    assert runs[0]["variant"] == "baseline" and runs[0]["row"] is None and runs[0]["passed"], runs[0]["output"]
    assert len(runs) == 1 + len(load_variants())
    failed = {f"{r['row']}:{r['variant']}" for r in runs if not r["passed"]}
    assert failed == expected, done.stdout
    assert done.returncode == (1 if expected else 0), done.stderr
    for run in runs:
        assert ("expected PENDING at submit" in run["output"]) == (not run["passed"])
    assert "row" in done.stdout.splitlines()[0] and f"{len(runs) - len(failed)} of {len(runs)} runs passed" in done.stdout


PROBE = """
import json, os, sys, requests
url = sys.argv[1]
assert url == os.environ["SD35_MOCK_URL"] == os.environ["IMAGEPIPELINE_BASE_URL"], (url, os.environ["SD35_MOCK_URL"])
config = requests.get(url + "/__mock__/config", timeout=10).json()
print(json.dumps({"variant": os.environ["SD35_MOCK_VARIANT"], "url": url,
                  "samples_max": config["profile"]["limits"]["samples"]["max"]}))
"""


def test_the_command_gets_the_url_and_variant_and_each_run_a_fresh_mock_with_its_overlay(tmp_path):
    done = matrix("--rows", "L05", "--report", str(tmp_path / "r.json"), "--out-dir", str(tmp_path / "logs"), "--",
                  sys.executable, "-c", PROBE, "{url}")
    assert done.returncode == 0, done.stdout + done.stderr
    runs = report(tmp_path / "r.json")
    seen = [json.loads(r["output"]) for r in runs]
    assert [s["variant"] for s in seen] == ["baseline", "L05:samples<=4"]
    assert [s["samples_max"] for s in seen] == [2, 4]  # the default profile, then the variant's overlay
    assert seen[0]["url"] != seen[1]["url"]  # a free port per run
    assert all(r["passed"] and r["exit_code"] == 0 and r["seconds"] > 0 for r in runs)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["00-baseline-baseline.log",
                                                                       "01-L05-samples_=4.log"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_fixed_port_serves_every_run_on_one_url(tmp_path):
    port = free_port()
    done = matrix("--port", str(port), "--rows", "L05,L18", "--report", str(tmp_path / "r.json"), "--",
                  sys.executable, "-c", PROBE, "{url}")
    assert done.returncode == 0, done.stdout + done.stderr
    urls = {json.loads(r["output"])["url"] for r in report(tmp_path / "r.json")}
    assert urls == {f"http://127.0.0.1:{port}"}


def test_a_hanging_command_is_killed_with_its_process_group_at_the_timeout(tmp_path):
    pids = tmp_path / "pids"
    hang = f"echo started; sleep 60 & echo $! >> {pids}; wait"
    started = time.monotonic()
    done = matrix("--jobs", "2", "--timeout", "1", "--rows", "L05", "--report", str(tmp_path / "r.json"), "--", "sh", "-c", hang)
    assert time.monotonic() - started < 45  # not the 60 s sleep: killed at the timeout (a margin for start-ups under load)
    assert done.returncode == 1
    runs = report(tmp_path / "r.json")
    assert [(r["passed"], r["timed_out"], r["exit_code"]) for r in runs] == [(False, True, None)] * 2
    assert all("started" in r["output"] and "--timeout 1 s" in r["output"] for r in runs)
    assert "TIMEOUT" in done.stdout
    for pid in map(int, pids.read_text().split()):  # the child the shell left behind is gone too
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}") or " Z " in open(f"/proc/{pid}/stat").read()


def test_exit_codes_and_output_kept(tmp_path):
    failing = matrix("--jobs", "2", "--rows", "L05", "--report", str(tmp_path / "r.json"), "--", sys.executable, "-c",
                     "import os; print('x' * 100_000); raise SystemExit(3 if os.environ['SD35_MOCK_VARIANT'] != 'baseline' else 0)")
    assert failing.returncode == 1
    runs = report(tmp_path / "r.json")
    assert [(r["passed"], r["exit_code"]) for r in runs] == [(True, 0), (False, 3)], [r["output"][:300] for r in runs]
    assert all(len(r["output"].encode()) <= 64 * 1024 + 100 and "bytes cut" in r["output"] for r in runs)

    unknown = matrix("--rows", "L99", "--", sys.executable, "-c", "pass")
    assert unknown.returncode == 2 and "--rows" in unknown.stderr and "L99" in unknown.stderr
    assert unknown.stdout == ""
    nothing = matrix("--rows", "L05")
    assert nothing.returncode == 2 and "no command" in nothing.stderr
    assert matrix("--jobs", "2", "--port", "8999", "--", "true").returncode == 2
    missing = matrix("--", "no-such-program-sd35")
    assert missing.returncode == 2 and "command not found" in missing.stderr


def test_the_entry_point_dispatches_to_the_matrix():
    from sd35_twin.mockserver.cli import main

    assert main(["matrix", "--list", "--rows", "L05"]) == 0


def test_our_client_command_line_survives_every_variant(tmp_path):
    """The issue's acceptance: ``python -m client generate`` passes the baseline and every variant."""
    done = matrix("--jobs", "4", "--report", str(tmp_path / "r.json"), "--", sys.executable, "-m", "sd35_twin.client",
                  "generate", "a fox", "--base-url", "{url}", "--api-key", "k", "--out", str(tmp_path / "out"),
                  timeout=240)
    runs = report(tmp_path / "r.json")
    assert len(runs) == 1 + len(load_variants())
    assert [f"{r['row']}:{r['variant']}" for r in runs if not r["passed"]] == [], done.stdout
    assert done.returncode == 0
