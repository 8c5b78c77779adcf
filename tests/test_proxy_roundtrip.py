"""Issue 18's round trip, offline: for every variant in ``profiles/variants.json`` whose row the shadow proxy can
observe, the upstream is a twin started with that variant; the same traffic goes through the proxy; the proxy
reports that row drifted, ``python -m sd35_twin.contracts drift`` learns a profile holding the variant's values,
and a twin started with the learned profile shows no drift against the upstream. A default twin: zero drift.
"""

from __future__ import annotations

import json

import pytest

from sd35_twin.contracts.__main__ import main as contracts_main
from sd35_twin.mockserver.proxy import ProxySettings, start
from sd35_twin.mockserver.variants import load_variants
from tests.proxy_traffic import drive, launch_upstream, leaves

# The rows each variant's traffic is expected to drift (the ledger row, and any other row the same value speaks
# for: a validation status code is both L15's "400 invalid body" and L23's rejection detail).
EXPECTED = {"L23:invalid=422": {"L15", "L23"}, "L23:fastapi": {"L15", "L23"}}

# Variants the proxy cannot tell apart from the default profile, and why (the closing note's table says the same).
NOT_OBSERVABLE = {
    "L11:submit=SUCCESS": "the default submit.finished is 'lifecycle', which allows a submit answering SUCCESS",
    "L11:submit=PENDING": "the default submit.finished is 'lifecycle', which allows a submit answering PENDING",
    "L22:ttl=1h": "the proxy measures a URL's life in wall time; the upstream twin's clock moves without it",
}

VARIANTS = load_variants()
OBSERVABLE = [v for v in VARIANTS if v.id not in NOT_OBSERVABLE]


def run_through_proxy(tmp_path, name, upstream_profile=None, proxy_profile=None):
    """A twin upstream, the proxy in front of it, the traffic; the proxy's report (JSON) and report file."""
    report_file = tmp_path / f"{name}.json"
    downloads = tmp_path / f"{name}-images"
    downloads.mkdir()
    with launch_upstream(upstream_profile) as upstream:
        proxy = start(ProxySettings(upstream=upstream.url, report=str(report_file), proxy_downloads=True,
                                    max_jobs=100, timeout=30, profile=proxy_profile,
                                    record=str(tmp_path / f"{name}.jsonl")))
        try:
            drive(proxy.url, upstream.url, downloads)
            report = proxy.proxy.report()
        finally:
            proxy.close()
    return report, report_file


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return run_through_proxy(tmp_path_factory.mktemp("baseline"), "baseline")


def drifted(report: dict) -> set[str]:
    return {row["id"] for row in report["rows"] if row["result"] == "drifted"}


def test_a_default_upstream_shows_zero_drift(baseline, tmp_path):
    report, path = baseline
    assert drifted(report) == set(), [r for r in report["rows"] if r["result"] == "drifted"]
    seen = {row["id"] for row in report["rows"] if row["result"] == "held"}
    # the traffic reaches every row the proxy can read
    assert {"L05", "L06", "L07", "L08", "L09", "L11", "L12", "L13", "L14", "L15", "L16", "L17", "L18", "L20",
            "L22", "L23", "L24", "L26", "L27", "L29", "L30", "L32"} <= seen
    assert report["profile_hint"] == {}
    assert contracts_main(["drift", str(path), str(path)]) == 0


@pytest.mark.parametrize("variant", OBSERVABLE, ids=[v.id for v in OBSERVABLE])
def test_a_variant_upstream_drifts_its_row_and_the_learned_profile_removes_the_drift(variant, baseline, tmp_path,
                                                                                       capsys):
    report, live = run_through_proxy(tmp_path, "live", variant.profile)
    assert drifted(report) == EXPECTED.get(variant.id, {variant.row}), \
        [(r["id"], r.get("examples")) for r in report["rows"] if r["result"] == "drifted"]

    learned_file = tmp_path / "learned.json"
    assert contracts_main(["drift", str(baseline[1]), str(live), "--profile-out", str(learned_file)]) == 1
    learned = json.loads(learned_file.read_text())
    expected = leaves(variant.profile)
    assert {path: leaves(learned).get(path) for path in expected} == expected, learned
    # the recording, read by drift through the same evidence code, learns the same profile
    from_recording = tmp_path / "learned-from-recording.json"
    assert contracts_main(["drift", str(baseline[1]), str(tmp_path / "live.jsonl"),
                           "--profile-out", str(from_recording)]) == 1
    assert json.loads(from_recording.read_text()) == learned

    # a twin started with the learned profile answers as the upstream did: no drift between them
    twin_report, twin = run_through_proxy(tmp_path, "learned-twin", learned)
    capsys.readouterr()
    assert contracts_main(["drift", str(twin), str(live)]) == 0, capsys.readouterr().out
    # and, checked against the learned profile, the upstream holds everywhere
    checked, _ = run_through_proxy(tmp_path, "checked", variant.profile, proxy_profile=_full(learned))
    assert drifted(checked) == set(), [r for r in checked["rows"] if r["result"] == "drifted"]


@pytest.mark.parametrize("variant_id", sorted(NOT_OBSERVABLE))
def test_variants_the_proxy_cannot_tell_apart_hold(variant_id, tmp_path):
    variant = next(v for v in VARIANTS if v.id == variant_id)
    report, _ = run_through_proxy(tmp_path, "live", variant.profile)
    assert drifted(report) == set()
    row = next(r for r in report["rows"] if r["id"] == variant.row)
    assert row["result"] == "held"
    if variant.row == "L11":     # what it saw is in the report, though the profile allows it
        assert set(row["seen"]) == {"SUCCESS" if variant.name == "submit=SUCCESS" else "PENDING"}


def _full(overlay: dict) -> dict:
    from sd35_twin.mockserver.config import load_profile

    return load_profile(overrides=overlay)


def test_the_contract_suite_on_the_mock_is_a_baseline_too(tmp_path):
    """The README's way: ``pytest contracts --contracts-report mock.json`` on the mock, then drift against the
    proxy's report learns the same profile."""
    import subprocess
    import sys

    mock_report = tmp_path / "mock.json"
    run = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "sd35_twin.contracts", "-q", "-p",
                          "no:cacheprovider", "--ledger-rows", "L15,L16,L23", "--contracts-report", str(mock_report)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:]
    variant = next(v for v in VARIANTS if v.id == "L23:fastapi")
    _, live = run_through_proxy(tmp_path, "live", variant.profile)
    learned = tmp_path / "learned.json"
    assert contracts_main(["drift", str(mock_report), str(live), "--profile-out", str(learned)]) == 1
    assert json.loads(learned.read_text()) == variant.profile
