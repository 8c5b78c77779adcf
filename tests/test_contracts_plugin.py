"""The contract plugin's own logic, in pytest runs made by ``pytester`` on small test files: order,
selection, the skips of mock-only and capped contracts (nothing sent), the report, the hypothesis
settings per run, xdist. Live runs here point at a closed port: a request sent would fail the test.
"""

from __future__ import annotations

import json

import pytest

from sd35_twin.contracts.report import load_ledger

ROWS = len(load_ledger())  # the ledger's rows, so a new row does not break these counts

pytest_plugins = ["pytester"]

NOWHERE = "http://127.0.0.1:9"   # the discard port: nothing answers there
LIVE = ("--target", "live", "--live-base-url", NOWHERE)


@pytest.fixture(autouse=True)
def no_target_from_the_environment(monkeypatch):
    for name in ("CONTRACTS_TARGET", "IMAGEPIPELINE_API_KEY", "CONTRACTS_OTHER_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def live_key(monkeypatch):
    monkeypatch.setenv("IMAGEPIPELINE_API_KEY", "live-key-for-tests")


def report_of(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    path = pytester.path / "report.json"
    result = pytester.runpytest("--contracts-report", str(path), *args)
    return result, json.loads(path.read_text())


def outcomes(report: dict) -> dict[str, tuple[str, str]]:
    """test name -> (outcome, reason)"""
    return {t["nodeid"].split("::")[-1]: (t["outcome"], t.get("reason", ""))
            for row in report["rows"] for t in row["tests"]}


def test_free_contracts_come_first_then_billable_ones_by_priority(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.ledger("L20")
        @pytest.mark.billable(priority=5)
        def test_late(): pass

        @pytest.mark.ledger("L01")
        @pytest.mark.billable(shared="basic", priority=0)
        def test_shared(): pass

        def test_not_a_contract(): pass

        @pytest.mark.ledger("L03")
        def test_free(): pass
    """)
    result = pytester.runpytest("--collect-only", "-q")
    names = [line.split("::")[-1] for line in result.outlines if "::" in line]
    assert names == ["test_not_a_contract", "test_free", "test_shared", "test_late"]


def test_ledger_markers_and_ledger_rows_must_name_known_rows(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.ledger("L01")
        def test_one(): pass

        @pytest.mark.ledger("L03")
        def test_three(): pass
    """)
    result, report = report_of(pytester, "--ledger-rows", "l03")
    result.assert_outcomes(passed=1, deselected=1)
    assert outcomes(report) == {"test_three": ("passed", "")}
    result = pytester.runpytest("--ledger-rows", "L99")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ledger-rows names unknown row(s): L99*"])
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.ledger("L77")
        def test_unknown_row(): pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_unknown_row: ledger marker names unknown row(s) *L77*"])


def test_on_live_what_needs_a_control_plane_or_a_job_past_the_cap_is_skipped_unsent(pytester, live_key):
    """Mock-only and billable markers skip before the test runs; a control-plane call or a submit
    made anyway raises NoControlPlane or BudgetExhausted, reported as skips of that test."""
    pytester.makepyfile("""
        import pytest

        @pytest.mark.ledger("L01")
        def test_free(contract):
            contract.observe("L01", {"seen": 1})

        @pytest.mark.ledger("L19")
        @pytest.mark.mock_only
        def test_marked_mock_only(): raise AssertionError("ran")

        @pytest.mark.ledger("L20")
        @pytest.mark.billable
        def test_marked_billable(): raise AssertionError("ran")

        @pytest.mark.ledger("L02")
        def test_calls_the_control_plane(contract):
            contract.control.reset()

        @pytest.mark.ledger("L03")
        def test_submits(contract):
            contract.http.post(contract.url("/sd3_5/v1"), headers={"API-Key": contract.target.api_key}, data="{}")
    """)
    result, report = report_of(pytester, *LIVE, "--live-max-jobs", "0", "-rs")
    result.assert_outcomes(passed=1, skipped=4)
    mock_only = "mock-only: needs the mock's control plane (/__mock__/), which the live API does not have"
    assert outcomes(report) == {
        "test_free": ("passed", ""),
        "test_marked_mock_only": ("skipped", mock_only),
        "test_marked_billable": ("skipped", "live job cap reached: 0 of --live-max-jobs 0 jobs used; "
                                            "test_marked_billable would create 1 more"),
        "test_calls_the_control_plane": ("skipped", mock_only),
        "test_submits": ("skipped", "live job cap reached: 0 of --live-max-jobs 0 jobs used; "
                                    "a request that could create a job was not sent"),
    }
    assert report["live_jobs"] == {"cap": 0, "created": 0, "blocked": 1}
    rows = {row["id"]: row for row in report["rows"]}
    assert rows["L01"]["result"] == "held" and rows["L01"]["observed"][0]["value"] == {"seen": 1}
    assert {rows[r]["result"] for r in ("L02", "L03", "L19", "L20")} == {"not_checked"}
    result.stdout.fnmatch_lines(["*sd35 contract ledger*", f"*1 held, 0 failed, {ROWS - 1} not checked*",
                                 # the skip points at the test, not at the plugin
                                 "SKIPPED [[]1[]] test_on_live_*.py:19: live job cap reached*not sent"])


@pytest.mark.parametrize("args, examples", [(LIVE, 5), (("--contracts-examples", "3"), 3)],
                         ids=["live", "mock-with-option"])
def test_property_contracts_get_the_hypothesis_settings_of_their_run(pytester, live_key, args, examples):
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.ledger("L05")
        def test_settings(contract):
            assert contract.settings.max_examples == {examples}
    """)
    pytester.runpytest(*args).assert_outcomes(passed=1)


def test_the_state_is_a_plugin_of_its_run_only(pytester):
    config = pytester.parseconfigure()
    state = config.pluginmanager.get_plugin("sd35-contracts-state")
    assert state is not None and state.config is config
    config._ensure_unconfigure()
    assert config.pluginmanager.get_plugin("sd35-contracts-state") is None


@pytest.mark.parametrize("target", ["live", NOWHERE])
def test_a_target_shared_by_xdist_workers_is_refused(pytester, live_key, target):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--target", target, "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--target {target} cannot run under pytest-xdist (-n/--dist)*"])


def test_xdist_workers_report_to_one_ledger(pytester):
    """On the embedded mock (one per worker) the controller, which runs no test itself, folds the
    workers' reports, observations included, into one table and one report."""
    pytester.makepyfile(**{f"test_{n}": f"""
        import pytest

        @pytest.mark.ledger("L0{n}")
        def test_observes(contract):
            contract.observe("L0{n}", {n})
    """ for n in range(1, 5)})
    result, report = report_of(pytester, "-n", "2")
    result.assert_outcomes(passed=4)
    held = {row["id"]: row["observed"][0]["value"] for row in report["rows"] if row["result"] == "held"}
    assert held == {"L01": 1, "L02": 2, "L03": 3, "L04": 4}
    result.stdout.fnmatch_lines([f"*4 held, 0 failed, {ROWS - 4} not checked*"])
