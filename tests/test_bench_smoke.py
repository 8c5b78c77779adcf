"""The benchmark harness's pure parts: wrk output parsing, ratios, targets, the results document.

Starts no server, no Java, no Node, no wrk: safe and fast in CI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

try:
    import bench  # noqa: F401
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, loadgen, pyload, report  # noqa: E402

WRK_TEXT = """\
Running 10s test @ http://127.0.0.1:40001
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.31ms    1.02ms  45.10ms   91.02%
    Req/Sec     7.01k   512.33     8.10k    70.50%
  Latency Distribution
     50%    2.10ms
     75%    2.60ms
     90%    3.20ms
     99%    6.75ms
  139512 requests in 10.01s, 21.03MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:  13937.56
Transfer/sec:      2.10MB
"""

WRK_JSON = ('WRK_JSON {"duration_us":10010000,"requests":139512,"bytes":22052000,'
            '"errors":{"connect":0,"read":2,"write":0,"status":5,"timeout":3},'
            '"latency_us":{"min":120,"mean":2310.50,"stdev":1020.00,"max":45100,'
            '"p50":2100,"p75":2600,"p90":3200,"p99":6750,"p999":20000}}')


def test_parse_wrk_text():
    rec = loadgen.parse_wrk_output(WRK_TEXT)
    assert rec["requests"] == 139512
    assert rec["duration_s"] == pytest.approx(10.01)
    assert rec["rps"] == pytest.approx(13937.56)
    assert rec["latency_ms"]["p50"] == pytest.approx(2.10)
    assert rec["latency_ms"]["p99"] == pytest.approx(6.75)
    assert rec["latency_ms"]["max"] == pytest.approx(45.10)
    assert rec["errors"] == {"connect": 0, "read": 2, "write": 0, "timeout": 3, "status": 5}
    assert rec["error_count"] == 10
    assert rec["source"] == "wrk-text"


def test_parse_wrk_text_units_and_no_errors():
    text = ("  Latency Distribution\n     50%  850.00us\n     75%    1.00ms\n     90%    1.20ms\n"
            "     99%    1.05s\n  1200 requests in 1.00m, 1.00MB read\nRequests/sec:     20.00\n")
    rec = loadgen.parse_wrk_output(text)
    assert rec["latency_ms"]["p50"] == pytest.approx(0.85)
    assert rec["latency_ms"]["p99"] == pytest.approx(1050.0)
    assert rec["duration_s"] == pytest.approx(60.0)
    assert rec["error_count"] == 0


def test_parse_wrk_json_line_wins_over_text():
    rec = loadgen.parse_wrk_output(WRK_TEXT + WRK_JSON + "\n")
    assert rec["source"] == "wrk-json"
    assert rec["requests"] == 139512
    assert rec["rps"] == pytest.approx(139512 / 10.01)
    assert rec["latency_ms"]["p99"] == pytest.approx(6.75)
    assert rec["latency_ms"]["p999"] == pytest.approx(20.0)
    assert rec["error_count"] == 10


def test_parse_rejects_non_wrk_output():
    with pytest.raises(ValueError):
        loadgen.parse_wrk_output("wrk: command not found\n")


def test_wrk_command_targets_loopback_and_clamps_threads():
    cmd = loadgen.wrk_command("wrk", 4321, 1, 1.0, 2, "job-1", "k")
    assert "-t1" in cmd and "-c1" in cmd and "--latency" in cmd
    assert "http://127.0.0.1:4321" in cmd
    assert cmd[-3:] == ["job-1", "k", "3"]
    assert loadgen.WORKLOAD_LUA.is_file()
    lua = loadgen.WORKLOAD_LUA.read_text()
    assert '"API-Key"' in lua and "WRK_JSON" in lua and '"num_inference_steps":4' in lua


def test_pyload_percentile_and_request_bytes():
    values = sorted(float(i) for i in range(1, 101))
    assert pyload.percentile(values, 50) == 50.0
    assert pyload.percentile(values, 99) == 99.0
    assert pyload.percentile([], 99) == 0.0
    submit, status = pyload.build_requests(8080, "abc", "k")
    assert submit.startswith(b"POST /sd3_5/v1 HTTP/1.1\r\n") and b"API-Key: k\r\n" in submit
    assert json.loads(submit.split(b"\r\n\r\n", 1)[1]) == harness.SUBMIT_BODY
    assert status.startswith(b"GET /sd3_5/v1/status/abc HTTP/1.1\r\n")


def _run(conc, rps, p50, p99, errors=0):
    return {"concurrency": conc, "ok": True, "requests": int(rps * 10), "rps": rps, "duration_s": 10.0,
            "latency_ms": {"p50": p50, "p99": p99, "max": p99 * 2},
            "errors": {"status": errors}, "error_count": errors}


def _server(kind, runs, startup, rss, pss=None):
    return {"kind": kind, "command": [kind], "startup_s": startup, "peak_rss_mb": rss, "peak_pss_mb": pss,
            "runs": runs, "skipped": None}


def _servers():
    return {
        "ours": _server("ours", [_run(1, 2000, 0.4, 2.0), _run(32, 3000, 9.0, 20.0)], 0.3, 50, 30),
        "wiremock": _server("wiremock", [_run(1, 2000, 0.4, 4.0), _run(32, 12000, 2.0, 30.0)], 1.5, 300, 290),
        "prism": _server("prism", [_run(1, 1000, 0.5, 4.0), _run(32, 2500, 10.0, 16.0)], 1.2, 150),
    }


def test_compute_ratios():
    r = report.compute_ratios(_servers())
    assert set(r) == {"vs_wiremock", "vs_prism"}
    assert r["vs_wiremock"]["rps"] == {"1": pytest.approx(1.0), "32": pytest.approx(0.25)}
    assert r["vs_prism"]["rps"]["32"] == pytest.approx(1.2)
    assert r["vs_prism"]["p99"]["32"] == pytest.approx(1.25)
    assert r["vs_wiremock"]["startup"] == pytest.approx(0.2)
    assert r["vs_prism"]["peak_rss"] == pytest.approx(50 / 150)
    assert r["vs_wiremock"]["peak_pss"] == pytest.approx(30 / 290)  # shared pages counted once
    assert r["vs_prism"]["peak_pss"] is None  # not sampled: no ratio rather than a made-up one


def test_ratios_skip_missing_anchor_and_zero():
    servers = _servers()
    servers["prism"] = {"kind": "prism", "command": None, "startup_s": None, "peak_rss_mb": None,
                        "runs": [], "skipped": "node not found"}
    servers["wiremock"]["runs"][0]["rps"] = 0.0
    r = report.compute_ratios(servers)
    assert set(r) == {"vs_wiremock"}
    assert r["vs_wiremock"]["rps"]["1"] is None  # no division by zero, no infinity in JSON


def test_targets():
    checks = {c["target"]: c for c in report.check_targets(report.compute_ratios(_servers()))}
    assert checks["rps@32 >= 1.0x Prism"]["met"] is True
    assert checks["p99@32 <= Prism"]["met"] is False
    assert checks["p99@1 <= Prism"]["met"] is True
    assert checks["start-up <= 0.5x WireMock"]["met"] is True
    assert checks["peak RSS <= 0.5x Prism"]["met"] is True
    assert checks["peak PSS <= 0.5x WireMock"]["met"] is True and "peak PSS <= 0.5x Prism" not in checks


def test_results_document_shape_table_and_json():
    image = {"width": 1024, "height": 1024, "content_type": "image/png", "bytes": 160000,
             "first_ms": 50.0, "repeated_ms_median": 1.0, "repeats": 5, "first_over_repeated": 50.0}
    doc = report.build_results({"mode": "quick", "timestamp": "t", "cpus": 2}, {"target_concurrency": 32},
                               _servers(), image)
    assert report.validate_results(doc) == []
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    table = report.format_table(doc)
    for needle in ("vs wiremock", "vs prism", "req/s @32", "p99 @32", "start-up", "peak RSS", "peak PSS", "image cost"):
        assert needle in table
    broken = dict(doc, schema="other")
    del broken["servers"]["ours"]["runs"][0]["latency_ms"]["p99"]
    assert len(report.validate_results(broken)) == 2


def test_wiremock_stubs_cover_both_endpoints_with_the_key():
    submit, status = harness.WIREMOCK_MAPPINGS
    assert submit["request"]["method"] == "POST" and submit["request"]["url"] == "/sd3_5/v1"
    assert status["request"]["method"] == "GET" and status["request"]["urlPathPattern"].startswith("/sd3_5/v1/status/")
    for m in (submit, status):
        assert m["request"]["headers"]["API-Key"] == {"equalTo": harness.API_KEY}
        assert m["response"]["status"] == 200
    assert status["response"]["jsonBody"]["status"] == "SUCCESS"
    assert status["response"]["jsonBody"]["download_urls"]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    doc = report.build_results({"mode": "quick"}, {}, _servers(), None)
    path = report.plot(doc, tmp_path / "plot.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detect_collapse():
    servers = _servers()
    for run, cores in zip(servers["ours"]["runs"], (0.9, 1.1)):
        run["cpu"] = {"server_cores": cores}
    assert report.detect_collapses(servers) == []
    servers["wiremock"]["runs"][0]["cpu"] = {"server_cores": 1.5}  # slow at c=1 (cold), not a collapse
    assert report.detect_collapses(servers) == []
    servers["ours"]["runs"][1]["rps"] = 150.0  # more connections, busy, yet far below its c=1 rate
    found = report.detect_collapses(servers)
    assert [(c["server"], c["concurrency"]) for c in found] == [("ours", 32)]
    doc = report.build_results({}, {}, servers, None)
    assert "COLLAPSE: ours@32" in report.format_table(doc)
