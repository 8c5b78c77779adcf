"""``sd35-mock matrix -- COMMAND``: real subprocesses, a fresh mock per run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from sd35_twin.mockserver.variants import load_variants
from tests.helpers import REPO, fixed_port

FRAGILE_APP = REPO / "tests" / "data" / "fragile_app.py"
ONE_IMAGE_APP = REPO / "tests" / "data" / "one_image_app.py"
RUN_KEYS = {"row", "variant", "evidence", "passed", "seconds", "exit_code", "output", "timed_out", "exercised",
            "rows_met"}


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
    assert runs[0]["variant"] == "baseline" and runs[0]["row"] == "baseline" and runs[0]["passed"], runs[0]["output"]
    assert len(runs) == 1 + len(load_variants())
    failed = {f"{r['row']}:{r['variant']}" for r in runs if not r["passed"]}
    assert failed == expected, done.stdout
    assert done.returncode == (1 if expected else 0), done.stderr
    for run in runs:
        assert ("expected PENDING at submit" in run["output"]) == (not run["passed"])
    assert "row" in done.stdout.splitlines()[0] and f"{len(failed)} FAILED in " in done.stdout


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


def test_a_fixed_port_serves_every_run_on_one_url(tmp_path):
    port = fixed_port()
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


# -- exercised or not: which variants' rows the app met ------------------------------------------------------

def runs_by_id(path) -> dict[str, dict]:
    return {r["variant"] if r["row"] == "baseline" else f"{r['row']}:{r['variant']}": r for r in report(path)}


def test_a_one_image_app_passes_l22_l26_l29_without_meeting_them(tmp_path):
    done = matrix("--jobs", "3", "--rows", "L22,L26,L29", "--report", str(tmp_path / "r.json"), "--",
                  sys.executable, str(ONE_IMAGE_APP), "{url}", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = runs_by_id(tmp_path / "r.json")
    baseline = runs.pop("baseline")
    assert baseline["exercised"] is None and {"L11", "L17", "L27"} <= set(baseline["rows_met"])
    assert not {"L22", "L26", "L29"} & set(baseline["rows_met"])
    assert {(r["passed"], r["exercised"]) for r in runs.values()} == {(True, False)}, runs
    assert f"1 passed, {len(runs)} not exercised in " in done.stdout
    lines = done.stdout.splitlines()
    assert sum("not exercised" in line for line in lines if line.startswith(("L22", "L26", "L29"))) == len(runs)
    would_meet = {line.split()[0] for line in lines[lines.index(next(l for l in lines if l.startswith("not exercised:"))):][1:]}
    assert would_meet == {"L22", "L26", "L29"}
    assert "clock/advance" in done.stdout  # what would meet L22

    strict = matrix("--require-exercised", "--rows", "L26", "--", sys.executable, str(ONE_IMAGE_APP), "{url}")
    assert strict.returncode == 1 and "1 passed, 1 not exercised in " in strict.stdout, strict.stdout


def test_the_same_app_downloading_late_exercises_l22(tmp_path):
    done = matrix("--jobs", "3", "--rows", "L22", "--report", str(tmp_path / "r.json"), "--", sys.executable,
                  str(ONE_IMAGE_APP), "{url}", "--late", "90000", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = runs_by_id(tmp_path / "r.json")
    assert "L22" in runs.pop("baseline")["rows_met"]
    assert {(r["passed"], r["exercised"]) for r in runs.values()} == {(True, True)}, runs
    assert "not exercised" not in done.stdout and f"{1 + len(runs)} passed in " in done.stdout


def test_an_app_posting_without_content_type_fails_the_l32_variants(tmp_path):
    done = matrix("--jobs", "3", "--rows", "L32", "--report", str(tmp_path / "r.json"), "--", sys.executable,
                  str(ONE_IMAGE_APP), "{url}", "--no-content-type", timeout=120)
    runs = runs_by_id(tmp_path / "r.json")
    assert runs.pop("baseline")["passed"]
    assert set(runs) == {"L32:content-type=415", "L32:content-type=400", "L32:content-type=422"}
    assert {(r["passed"], r["exercised"]) for r in runs.values()} == {(False, True)}
    assert done.returncode == 1 and "1 passed, 3 FAILED in " in done.stdout


def test_a_failing_baseline_is_said_first_and_labelled_baseline(tmp_path):
    done = matrix("--rows", "L05", "--report", str(tmp_path / "r.json"), "--", sys.executable, "-c",
                  "raise SystemExit(4)")
    assert done.returncode == 1
    runs = report(tmp_path / "r.json")
    assert (runs[0]["row"], runs[0]["variant"], runs[0]["passed"]) == ("baseline", "baseline", False)
    assert done.stdout.splitlines()[1].startswith("baseline  baseline")
    assert "None" not in done.stdout + done.stderr
    assert done.stderr.startswith("sd35-mock matrix: the baseline FAILED: your command fails on the twin's defaults")
    summary_at = next(i for i, line in enumerate(done.stdout.splitlines()) if " FAILED in " in line)
    assert done.stdout.splitlines()[summary_at - 1].startswith("The baseline FAILED")


def test_rows_without_variants_say_why(tmp_path):
    none = matrix("--rows", "L21,L27", "--", sys.executable, "-c", "pass")
    assert none.returncode == 2 and none.stdout == ""
    assert "L21 has no variant: An app only reads ids its own key got" in none.stderr
    assert "L27 has no variant:" in none.stderr and "none of L21, L27 has a variant" in none.stderr
    some = matrix("--rows", "L05,L21", "--report", str(tmp_path / "r.json"), "--", sys.executable, "-c", "pass")
    assert some.returncode == 0 and "L21 has no variant" in some.stderr
    assert [r["row"] for r in report(tmp_path / "r.json")] == ["baseline", "L05"]


def test_only_met_runs_the_variants_of_rows_the_baseline_met(tmp_path):
    done = matrix("--only-met", "--jobs", "3", "--rows", "L11,L22,L26", "--report", str(tmp_path / "r.json"), "--",
                  sys.executable, str(ONE_IMAGE_APP), "{url}", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert [r["row"] for r in data["runs"]] == ["baseline", "L11", "L11"]
    assert all(r["exercised"] for r in data["runs"][1:])
    assert sorted(data["not_run"]) == sorted(v.id for v in load_variants({"L22", "L26"}))
    assert "--only-met: 4 variant(s) not run, of rows the baseline never met: L22, L26" in done.stdout


def test_the_summary_counts_the_three_outcomes():
    from sd35_twin.mockserver.matrix import Run, summary

    def run(passed=True, exercised=None, timed_out=False, row="L22"):
        return Run(row, "v", "e", passed, 1.0, 0 if passed else 1, "", timed_out, exercised, [])

    runs = [run(row="baseline"), *[run(exercised=True)] * 16, *[run(exercised=False)] * 6,
            run(passed=False, exercised=True), run(passed=False, exercised=False, timed_out=True)]
    assert summary(runs, 31.04) == "17 passed, 6 not exercised, 2 FAILED in 31.0 s"
    assert [r.result for r in runs[-3:]] == ["not exercised", "FAILED", "TIMEOUT"]
    assert summary([run(row="baseline")], 1) == "1 passed in 1.0 s"
    assert summary([run(passed=False, row="baseline")], 1) == "0 passed, 1 FAILED in 1.0 s"
