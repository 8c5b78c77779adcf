"""``sd35-mock matrix``: every app meets PENDING whatever its polling interval, and a failed run says why (issue 21)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sd35_twin.mockserver.matrix import explain, lifecycle_args
from tests.helpers import REPO
from tests.test_node_example import node as find_node  # node, or a skip (a failure under CI)

SLOW_POLLER = REPO / "tests" / "data" / "slow_poller.py"


def matrix(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", "matrix", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("interval", ["1", "0.05"])
def test_an_app_meets_the_pending_variants_whatever_its_polling_interval(tmp_path, interval):
    """Before: with jobs PENDING for 0.5 s of real time, an app polling every second never read a PENDING job, and
    passed ``L15 poll=202`` without meeting it."""
    done = matrix("--rows", "L15", "--jobs", "3", "--report", str(tmp_path / "r.json"), "--",
                  sys.executable, str(SLOW_POLLER), "{url}", interval)
    runs = {run["variant"]: run for run in json.loads((tmp_path / "r.json").read_text("utf-8"))["runs"]}
    assert runs["baseline"]["passed"], runs["baseline"]["output"]
    assert "status read: HTTP 200 PENDING" in runs["baseline"]["output"]  # it met PENDING there too
    assert not runs["poll=202"]["passed"] and "status read answered HTTP 202" in runs["poll=202"]["output"], runs
    assert not runs["submit=202"]["passed"]
    assert done.returncode == 1


def test_the_matrix_mocks_keep_a_job_pending_for_its_first_read_and_half_a_second():
    assert lifecycle_args(0.5) == ["--pending-seconds", "0.5", "--pending-polls", "2"]
    assert lifecycle_args(0) == ["--pending-seconds", "0"]  # asked for: every job done at its submit


NODE_TAP = """TAP version 13
# Subtest: submits once
ok 1 - submits once
  ---
  duration_ms: 12.5
  ...
# Subtest: polls until done
not ok 2 - polls until done
  ---
  duration_ms: 1004.2
  failureType: 'testCodeFailure'
  error: |-
    Expected values to be strictly equal:

    202 !== 200

  code: 'ERR_ASSERTION'
  expected: 200
  actual: 202
  operator: 'strictEqual'
  stack: |-
    TestContext.<anonymous> (file:///app/test/app.test.mjs:21:10)
  ...
# Subtest: a suite
    # Subtest: inner
    not ok 1 - inner
      ---
      error: 'boom'
      ...
    1..1
not ok 3 - a suite
  ---
  failureType: 'subtestsFailed'
  error: '1 subtest failed'
  ...
1..3
# tests 4
# suites 0
# pass 1
# fail 2
# cancelled 0
# skipped 0
# todo 0
# duration_ms 1100.1
"""


def test_tap_output_is_explained_by_its_not_ok_lines_and_their_diagnostics():
    shown = explain(NODE_TAP, tail=3)
    assert "not ok 2 - polls until done" in shown and "    202 !== 200" in shown and "  actual: 202" in shown
    assert "    not ok 1 - inner" in shown and "      error: 'boom'" in shown and "not ok 3 - a suite" in shown
    assert "ok 1 - submits once" not in shown and "  duration_ms: 12.5" not in shown  # passing tests stay out
    assert shown[-3:] == ["# skipped 0", "# todo 0", "# duration_ms 1100.1"] and shown[0] == "[...]"
    assert explain(NODE_TAP, tail=0)[-1] == "  ..."  # the last diagnostic line: no tail


PYTEST_OUTPUT = """============================= test session starts ==============================
collected 3 items

test_app.py .F.                                                          [100%]

=================================== FAILURES ===================================
________________________________ test_polls ___________________________________
""" + "\n".join(f"    line {n} of the traceback" for n in range(60)) + """
E       AssertionError: status read answered HTTP 202, expected 200
=========================== short test summary info ============================
FAILED test_app.py::test_polls - AssertionError: status read answered HTTP 202, expected 200
========================= 1 failed, 2 passed in 1.23s ==========================
"""


def test_pytest_output_is_explained_by_its_errors_and_short_summary():
    shown = explain(PYTEST_OUTPUT, tail=10)
    assert shown[:3] == ["[...]", "________________________________ test_polls ___________________________________",
                         "[...]"]
    assert shown[3] == "E       AssertionError: status read answered HTTP 202, expected 200"
    assert "short test summary info" in shown[4]
    assert shown[5].startswith("FAILED test_app.py::test_polls - AssertionError: status read answered HTTP 202")
    assert len(shown) == 7  # the summary ends the output: no tail repeats it


def test_other_output_shows_its_last_lines_and_tail_shows_more(tmp_path):
    output = "\n".join(f"line {n}" for n in range(50))
    assert explain(output) == ["[...]", *[f"line {n}" for n in range(40, 50)]]
    assert explain(output, tail=50) == [f"line {n}" for n in range(50)]
    script = ("import os; [print('line', n) for n in range(50)]; "
              "raise SystemExit(os.environ['SD35_MOCK_VARIANT'] != 'baseline')")
    done = matrix("--rows", "L05", "--tail", "30", "--", sys.executable, "-c", script)
    assert done.returncode == 1 and "line 20\n" in done.stderr and "line 19\n" not in done.stderr, done.stderr
    assert "--- L05 samples<=4: exit 1 ---" in done.stderr
    bad = matrix("--tail", "-1", "--", sys.executable, "-c", "pass")
    assert bad.returncode == 2 and "--tail" in bad.stderr


FAILING_PYTEST = """
import os
def test_passes():
    pass
def test_fails_on_a_variant():
    assert os.environ["SD35_MOCK_VARIANT"] == "baseline", "a variant this app does not survive"
"""


def test_a_failed_pytest_run_shows_its_short_summary(tmp_path):
    (tmp_path / "test_app.py").write_text(FAILING_PYTEST + "\n".join(f"print({n})" for n in range(100)), "utf-8")
    done = matrix("--rows", "L05", "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  str(tmp_path / "test_app.py"))
    assert done.returncode == 1
    assert "_ test_fails_on_a_variant _" in done.stderr and "E       AssertionError: a variant this app does not " \
        "survive" in done.stderr, done.stderr
    assert "short test summary info" in done.stderr and "test_app.py::test_fails_on_a_variant" in done.stderr
    assert "print(99)" not in done.stderr  # not the source pytest shows around the failure


FAILING_NODE_TEST = """
import { test } from 'node:test';
import assert from 'node:assert/strict';
test('passes', () => {});
test('survives the variant', () => {
  assert.equal(process.env.SD35_MOCK_VARIANT, 'baseline', 'a variant this app does not survive');
});
for (let i = 0; i < 30; i++) test(`filler ${i}`, () => {});
"""


def test_a_failed_node_test_run_shows_the_not_ok_line_and_its_error(tmp_path):
    node = find_node()
    (tmp_path / "app.test.mjs").write_text(FAILING_NODE_TEST, "utf-8")
    done = matrix("--rows", "L05", "--tail", "3", "--", node, "--test", "--test-reporter=tap",
                  str(tmp_path / "app.test.mjs"))
    assert done.returncode == 1
    assert "not ok 2 - survives the variant" in done.stderr and "a variant this app does not survive" in done.stderr, \
        done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("# duration_ms")  # then the last 3 lines
