"""``--sd35-variants``: the plugin runs every test that uses ``sd35_mock`` once per variant (pytester)."""

from __future__ import annotations

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


def test_not_using_the_mock():
    pass
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=INNER)
    return pytester.runpytest("-p", "no:sd35_contracts", "-p", "no:cacheprovider", "-v", *args)


def test_every_variant_runs_and_the_summary_names_the_one_that_failed(pytester):
    variants = load_variants()
    assert any(v.id == "L17:opaque=png" for v in variants)
    result = run(pytester, "--sd35-variants")
    n = len(variants) + 1                     # and the baseline
    result.assert_outcomes(passed=2 * n - 1 + 1, failed=1)
    result.stdout.fnmatch_lines([
        "*test_opaque_download_is_jpeg?baseline? PASSED*",
        "*test_opaque_download_is_jpeg?L17:opaque=png? FAILED*",
        "*test_through_a_fixture?L17:opaque=png? PASSED*",
        "*= sd35 variants =*",
        "ok * baseline * 2 passed, 0 failed*",
        "FAILED L17:opaque=png * 1 passed, 1 failed*",
        "*test_inner.py::test_opaque_download_is_jpeg?L17:opaque=png?",
    ])
    out = result.stdout.str()
    for v in variants:
        assert f"test_through_a_fixture[{v.id}] PASSED" in out
    assert out.count("test_not_using_the_mock PASSED") == 1          # not parametrized
    summary = out[out.index("sd35 variants"):out.index("short test summary")]
    assert [line.split()[1] for line in summary.splitlines()[1:] if line.startswith("FAILED ")] == [
        "L17:opaque=png"]


def test_rows_and_ids_select_variants(pytester):
    result = run(pytester, "--sd35-variants=L17,L22", "-k", "jpeg")
    wanted = ["baseline"] + [v.id for v in load_variants({"L17", "L22"})]
    result.assert_outcomes(passed=len(wanted) - 1, failed=1, deselected=len(wanted) + 1)
    for name in wanted:
        result.stdout.fnmatch_lines([f"*test_opaque_download_is_jpeg?{name}? *"])

    result = run(pytester, "--sd35-variants", "L17:opaque=png", "-k", "jpeg")
    result.assert_outcomes(passed=1, failed=1, deselected=3)


def test_without_the_option_nothing_is_parametrized(pytester):
    result = run(pytester)
    result.assert_outcomes(passed=3)
    assert "sd35 variants" not in result.stdout.str() and "[baseline]" not in result.stdout.str()


@pytest.mark.parametrize("value, why", [("L99", "no variants for row(s) L99"),
                                        ("L17:opaque=gif", "no variant(s) L17:opaque=gif")])
def test_an_unknown_row_or_id_is_a_usage_error(pytester, value, why):
    result = run(pytester, f"--sd35-variants={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert why in result.stderr.str()
