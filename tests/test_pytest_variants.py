"""``--sd35-variants``: the plugin runs every test that uses ``sd35_mock`` once per variant, and tells a variant's
pass from a test that never met its row; ``--sd35-coverage``: which assumed rows the suite met (pytester)."""

from __future__ import annotations

import json
import re

import pytest

from sd35_twin.mockserver.variants import load_variants

pytest_plugins = ["pytester"]

INNER = '''
import pytest
import requests

REQ = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0,
       "width": 256, "height": 256}


@pytest.fixture
def app(sd35_mock):                      # the mock through another fixture
    return sd35_mock.url


def test_opaque_download_is_jpeg(sd35_mock):
    sd35_mock.configure(lifecycle="immediate")
    key = {"API-Key": "any"}
    body = requests.post(sd35_mock.url + "/sd3_5/v1", json=REQ, headers=key).json()
    if body["status"] != "SUCCESS":
        body = requests.get(sd35_mock.url + "/sd3_5/v1/status/" + body["id"], headers=key).json()
    assert requests.get(body["download_urls"][0]).content[:3] == b"\\xff\\xd8\\xff"


def test_through_a_fixture(app):
    assert app.startswith("http://")


def test_download_late(sd35_mock):
    sd35_mock.configure(lifecycle="immediate")
    key = {"API-Key": "any"}
    body = requests.post(sd35_mock.url + "/sd3_5/v1", json=REQ, headers=key).json()
    sd35_mock.advance(2 * 86400)
    assert requests.get(body["download_urls"][0]).status_code in (403, 404, 410)


def test_not_using_the_mock():
    pass
'''


def not_exercised(result: pytest.RunResult) -> int:
    """The count of the summary line's "N not exercised" (parseoutcomes reads only its first word)."""
    found = re.search(r"(\d+) not exercised", result.stdout.lines[-1])
    return int(found[1]) if found else 0


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=INNER)
    return pytester.runpytest("-p", "no:sd35_contracts", "-p", "no:cacheprovider", "-v", *args)


# The rows test_opaque_download_is_jpeg meets (it sends width and height, submits, downloads an opaque URL), and
# test_download_late's (a submit with width and height, and an expired URL refused); test_through_a_fixture meets none.
JPEG_ROWS, LATE_ROWS = {"L08", "L11", "L17", "L27"}, {"L08", "L11", "L22", "L23"}


def test_every_variant_runs_and_the_summary_names_the_one_that_failed(pytester):
    variants = load_variants()
    assert any(v.id == "L17:opaque=png" for v in variants)
    result = run(pytester, "--sd35-variants", "-k", "not late")
    exercised = [v for v in variants if v.row in JPEG_ROWS]
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["failed"]) == (3 + len(exercised) - 1, 1)
    assert not_exercised(result) == 2 * len(variants) - len(exercised)
    result.stdout.fnmatch_lines([
        "*test_opaque_download_is_jpeg?baseline? PASSED*",
        "*test_opaque_download_is_jpeg?L11:submit=PENDING? PASSED*",
        "*test_opaque_download_is_jpeg?L17:opaque=png? FAILED*",
        "*test_through_a_fixture?L17:opaque=png? NOT EXERCISED*",
        "*test_opaque_download_is_jpeg?L22:ttl=1h? NOT EXERCISED*",
        "*= sd35 variants =*",
        "ok * baseline * 2 passed, 0 failed*",
        "FAILED L17:opaque=png * 0 passed, 1 failed, 1 not exercised*",
        "*test_inner.py::test_opaque_download_is_jpeg?L17:opaque=png?",
    ])
    out = result.stdout.str()
    for v in variants:
        assert f"test_through_a_fixture[{v.id}] NOT EXERCISED" in out
    assert out.count("test_not_using_the_mock PASSED") == 1          # not parametrized
    summary = out[out.index("sd35 variants"):out.index("short test summary")]
    assert [line.split()[1] for line in summary.splitlines()[1:] if line.startswith("FAILED ")] == [
        "L17:opaque=png"]
    assert re.search(r"^ok +L22:ttl=1h +0 passed, 0 failed, 2 not exercised$", summary, re.M)
    assert "not exercised: 2 test(s) passed without meeting L22; to meet it: download an image URL" in summary


def test_a_test_that_meets_the_row_passes_its_variant(pytester):
    result = run(pytester, "--sd35-variants=L22", "-k", "late")
    result.assert_outcomes(passed=1 + len(load_variants({"L22"})))
    assert "NOT EXERCISED" not in result.stdout.str()


def test_rows_and_ids_select_variants(pytester):
    result = run(pytester, "--sd35-variants=L17,L22", "-k", "jpeg")
    wanted = ["baseline"] + [v.id for v in load_variants({"L17", "L22"})]
    result.assert_outcomes(passed=1, failed=1, deselected=2 * len(wanted) + 1)
    assert not_exercised(result) == len(wanted) - 2  # L22's: the test never downloads late
    for name in wanted:
        result.stdout.fnmatch_lines([f"*test_opaque_download_is_jpeg?{name}? *"])

    result = run(pytester, "--sd35-variants", "L17:opaque=png", "-k", "jpeg")
    result.assert_outcomes(passed=1, failed=1, deselected=5)


def test_without_the_option_nothing_is_parametrized(pytester):
    result = run(pytester)
    result.assert_outcomes(passed=4)
    assert "sd35 variants" not in result.stdout.str() and "[baseline]" not in result.stdout.str()


@pytest.mark.parametrize("value, why", [("L99", "no variants for row(s) L99"),
                                        ("L17:opaque=gif", "no variant(s) L17:opaque=gif")])
def test_an_unknown_row_or_id_is_a_usage_error(pytester, value, why):
    result = run(pytester, f"--sd35-variants={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert why in result.stderr.str()


def test_coverage_tells_each_row_the_tests_met_and_the_risk_of_the_others(pytester):
    result = run(pytester, "--sd35-coverage", "--sd35-coverage-report", "cov.json")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    table = out[out.index("sd35 coverage"):]
    assert "3 test(s) used the mock" in table  # test_not_using_the_mock hands the plugin no mock
    lines = {line.split()[0]: line for line in table.splitlines()[2:] if line[:1] == "L"}
    assert lines["L17"].split()[1] == "1" and "test_opaque_download_is_jpeg" in lines["L17"]
    assert lines["L22"].split()[1] == "1" and "test_download_late" in lines["L22"]
    assert "your suite never sees a spent key" in lines["L29"]
    report = json.loads((pytester.path / "cov.json").read_text("utf-8"))
    met = {m["row"]: m for m in report["met"]}
    assert set(met) == JPEG_ROWS | LATE_ROWS and report["tests_using_the_mock"] == 3
    assert met["L22"] == {"row": "L22", "tests": 1, "examples": ["test_inner.py::test_download_late"]}
    assert met["L11"]["tests"] == 2
    never = {n["row"]: n for n in report["never_met"]}
    assert "L29" in never and never["L29"]["risk"].startswith("your suite never sees a spent key")
    assert "L27" not in never and "[baseline]" not in out  # run once, on the defaults


def test_coverage_of_a_suite_with_no_mock_says_so(pytester):
    result = run(pytester, "--sd35-coverage", "-k", "not_using")
    result.assert_outcomes(passed=1, deselected=3)
    assert "no test handed the plugin a mock" in result.stdout.str()


def test_coverage_reads_a_mock_held_by_a_fixture_of_the_suites_own(tmp_path):
    """Our client suite's ``mock`` fixture is a RunningMock whose ``control`` is a MockControl: the plugin reads it."""
    import subprocess
    import sys

    from tests.helpers import REPO

    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "tests/client/test_client_mock_faults.py", "-k", "download_urls_expire",
                           "--sd35-coverage-report", str(tmp_path / "cov.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sd35 coverage" in done.stdout and "1 test(s) used the mock" in done.stdout
    report = json.loads((tmp_path / "cov.json").read_text("utf-8"))
    met = {m["row"]: m for m in report["met"]}
    assert met["L22"]["examples"] == ["tests/client/test_client_mock_faults.py::test_download_urls_expire"]


def test_under_xdist_the_summary_still_tells_each_variant(pytester):
    """pytest-xdist's controller never collects: the variant of each result travels on its report."""
    result = run(pytester, "-n", "2", "--sd35-variants=L17,L22", "-k", "jpeg or fixture")
    summary = result.stdout.str()[result.stdout.str().index("sd35 variants"):]
    assert re.search(r"^ok +baseline +2 passed, 0 failed$", summary, re.M)
    assert re.search(r"^FAILED L17:opaque=png +0 passed, 1 failed, 1 not exercised", summary, re.M)
    assert re.search(r"^ok +L22:ttl=1h +0 passed, 0 failed, 2 not exercised$", summary, re.M)
    assert "test_inner.py::test_opaque_download_is_jpeg[L17:opaque=png]" in summary
