"""The benchmark harness: output parsing, per-endpoint ratios, targets, the results document, the WireMock
stubs, its import rule, and - only where wrk is installed - one tiny real run against our mock.

Starts no Java and no Node; the real run takes about two seconds.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest

try:
    import bench  # noqa: F401
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, loadgen, pyload, report  # noqa: E402

BENCH_DIR = Path(harness.__file__).resolve().parent

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

FLOW_JSON = ('FLOW_JSON {"mode":"flow","polls":2,"threads":32,"duration_us":10000000,"requests":30000,"bytes":1,'
             '"errors":{"connect":0,"read":0,"write":0,"status":4,"timeout":1},'
             '"latency_us":{"min":120,"mean":2310.50,"max":45100,"p50":2100,"p90":3200,"p99":6750,"p999":20000},'
             '"tags":{"submit":{"count":10000,"http_errors":0,"latency_us":{"p50":2500.4,"p90":3500.0,"p99":7000.0,'
             '"p999":9000.0,"min":300.0,"max":45000.0,"mean":2600.0}},'
             '"status":{"count":20000,"http_errors":4,"latency_us":{"p50":2000.0,"p90":3000.0,"p99":6000.0,'
             '"p999":8000.0,"min":120.0,"max":30000.0,"mean":2100.0}}},'
             '"flow":{"final_success":9990,"final_not_success":10,"poll_pending":10000,"submit_pending":10000}}')


# ---------------------------------------------------------------------------------------- parsing

def test_parse_flow_json_per_endpoint():
    rec = loadgen.parse_wrk_output(WRK_TEXT + FLOW_JSON + "\n")
    assert rec["source"] == "flow-json"
    assert rec["rps"] == pytest.approx(3000.0) and rec["duration_s"] == pytest.approx(10.0)
    assert rec["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 1, "status": 4}
    assert rec["error_count"] == 5
    assert rec["tags"]["submit"]["rps"] == pytest.approx(1000.0)
    assert rec["tags"]["status"]["rps"] == pytest.approx(2000.0)
    assert rec["tags"]["submit"]["latency_ms"]["p99"] == pytest.approx(7.0)
    assert rec["tags"]["status"]["latency_ms"]["p50"] == pytest.approx(2.0)
    assert rec["tags"]["status"]["http_errors"] == 4
    assert rec["flow_fidelity"] == pytest.approx(29990 / 30000)
    assert (rec["mode"], rec["polls"], rec["threads"]) == ("flow", 2, 32)


def test_parse_wrk_text_fallback():
    rec = loadgen.parse_wrk_output(WRK_TEXT)
    assert rec["source"] == "wrk-text" and rec["requests"] == 139512
    assert rec["rps"] == pytest.approx(13937.56)
    assert rec["latency_ms"]["p99"] == pytest.approx(6.75) and rec["latency_ms"]["max"] == pytest.approx(45.10)
    assert rec["errors"] == {"connect": 0, "read": 2, "write": 0, "timeout": 3, "status": 5}
    text = "     50%  850.00us\n     99%    1.05s\n  1200 requests in 1.00m, 1.00MB read\n"
    rec = loadgen.parse_wrk_output(text)
    assert rec["latency_ms"]["p50"] == pytest.approx(0.85) and rec["latency_ms"]["p99"] == pytest.approx(1050.0)
    assert rec["duration_s"] == pytest.approx(60.0) and rec["error_count"] == 0


def test_parse_rejects_non_wrk_output():
    with pytest.raises(ValueError):
        loadgen.parse_wrk_output("wrk: command not found\n")


def test_flow_fidelity():
    assert loadgen.flow_fidelity({}) is None
    assert loadgen.flow_fidelity({"submit_pending": 1, "poll_pending": 1, "final_success": 1}) == 1.0
    # Prism answers its one example (SUCCESS) to everything: only the final poll is what the flow expects
    assert loadgen.flow_fidelity({"submit_other": 5, "poll_not_pending": 5, "final_success": 5}) == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------- the commands

def test_wrk_command_one_connection_per_thread_on_loopback():
    cmd = loadgen.wrk_command("wrk", 4321, 32, 10.0, "flow", "k", 2)
    assert cmd[:4] == ["wrk", "-t32", "-c32", "-d10s"]
    assert "http://127.0.0.1:4321" in cmd and str(loadgen.FLOW_LUA) in cmd
    assert cmd[cmd.index("--") + 1:] == ["flow", "k", "2"]
    assert loadgen.wrk_command("wrk", 1, 1, 1, "cached", "k", 2, "/files/x")[-4:] == ["cached", "k", "2", "/files/x"]
    with pytest.raises(ValueError):
        loadgen.wrk_command("wrk", 1, 1, 1, "cached", "k", 2)  # cached needs the path
    with pytest.raises(ValueError):
        loadgen.wrk_command("wrk", 1, 1, 1, "poll-one-id", "k", 2)
    py = loadgen.pyload_command(4321, 8, 2.0, "download", "k", 3, "1")
    assert py[1:3] == ["-m", "bench.pyload"] and py[py.index("--mode") + 1] == "download"
    assert py[-2:] == ["--extra", "1"] and py[py.index("--polls") + 1] == "3"


def test_flow_script_and_python_fallback_send_the_same_request():
    lua = loadgen.FLOW_LUA.read_text()
    for needle in ('"API-Key"', "FLOW_JSON", '"num_inference_steps":4', harness.SUBMIT_BODY["prompt"],
                   harness.SUBMIT_BODY["negative_prompt"], "clock_gettime", "/sd3_5/v1/status/"):
        assert needle in lua
    assert "thread:get(\"hist" not in lua  # only numbers and strings cross Lua states (wrk crashes on tables)
    assert json.loads(pyload.SUBMIT_BODY) == harness.SUBMIT_BODY
    submit, status = pyload.build_requests(8080, "abc", "k")
    assert submit.startswith(b"POST /sd3_5/v1 HTTP/1.1\r\n") and b"API-Key: k\r\n" in submit
    assert json.loads(submit.split(b"\r\n\r\n", 1)[1]) == harness.SUBMIT_BODY
    assert status.startswith(b"GET /sd3_5/v1/status/abc HTTP/1.1\r\n")


def test_python_fallback_reads_answers_like_the_script():
    body = b'{"status": "SUCCESS", "id": "j1", "download_urls": ["http://127.0.0.1:9/files/tok"]}'
    assert pyload.answer_status(body) == "SUCCESS" and pyload.answer_id(body) == "j1"
    assert pyload.first_download_path(body) == "/files/tok"
    assert pyload.first_download_path(b'{"status":"PENDING","id":"j1"}') is None
    values = sorted(float(i) for i in range(1, 101))
    assert pyload.percentile(values, 50) == 50.0 and pyload.percentile(values, 99) == 99.0
    assert pyload.percentile([], 99) == 0.0


# ------------------------------------------------------------------------------------ WireMock's stubs

def test_wiremock_scenario_answers_the_flow_per_poll():
    maps = harness.wiremock_mappings(polls=3, image_file="img.jpg")
    submit, *polls, download = maps
    assert submit["request"] == {"method": "POST", "url": "/sd3_5/v1", "headers": {"API-Key": {"equalTo": "bench-key"}}}
    assert "randomValue" in submit["response"]["body"] and submit["response"]["transformers"] == ["response-template"]
    assert [(p["requiredScenarioState"], p["newScenarioState"]) for p in polls] == [
        ("Started", "polled-1"), ("polled-1", "polled-2"), ("polled-2", "Started")]
    assert all(p["scenarioName"] == harness.WIREMOCK_SCENARIO for p in polls)
    assert ['"PENDING"' in p["response"]["body"] for p in polls] == [True, True, False]
    assert '"SUCCESS"' in polls[-1]["response"]["body"] and "download_urls" in polls[-1]["response"]["body"]
    for m in (submit, *polls):
        assert m["request"]["headers"]["API-Key"] == {"equalTo": harness.API_KEY}
    assert download["response"]["bodyFileName"] == "img.jpg"
    assert download["request"]["urlPathPattern"].startswith("/files/")
    assert len(harness.wiremock_mappings(polls=1, image_file=None)) == 2
    with pytest.raises(ValueError):
        harness.wiremock_mappings(polls=0)


def test_ours_runs_one_process_with_pending_polls():
    args = harness.ours_args(2)
    assert args == ["--pending-polls", "2", "--api-key", harness.API_KEY]
    assert "--workers" not in harness.ours_args(2, threads=8) and harness.ours_args(2, 8)[-2:] == ["--threads", "8"]
    mode = harness.build_mode(harness.parse_args(["--quick"]))
    assert mode.concurrencies == [1, 8] and mode.mock_thread_variants == [] and mode.download_concurrencies == [1]
    full = harness.build_mode(harness.parse_args(["--concurrency", "1,32", "--mock-threads", ""]))
    assert full.concurrencies == [1, 32] and full.mock_thread_variants == [] and 32 in full.variant_concurrencies


# What bench/ may import of ours: the launcher, and (bench/inprocess.py) the in-process twin and the client, as a user;
# bench/floors.py serves its bare apps on our server code, which is what it measures our app against.
PUBLIC = {"sd35_twin.mockserver.testing", "sd35_twin.mockserver.inprocess", "sd35_twin.client"}
ALSO = {"floors.py": {"sd35_twin.mockserver.server"}}


def test_bench_reaches_the_mock_only_through_its_public_launcher():
    """bench/ starts our mock with mockserver.testing.launch, like tests and contracts (or, bench/inprocess.py,
    in-process with mock_sd35, as a user would); no other internals."""
    for path in sorted(BENCH_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                if name.split(".")[0] in ("mockserver", "sd35_twin"):
                    assert name in PUBLIC | ALSO.get(path.name, set()), f"{path.name} imports {name}"
        assert "subprocess.Popen" not in path.read_text() or path.name == "procs.py", path.name


# ------------------------------------------------------------------------- ratios, targets, report

def _run(conc, submit_rps, status_rps, submit_p99, status_p99, errors=0, fidelity=1.0):
    tags = {"submit": {"count": int(submit_rps * 10), "rps": submit_rps, "http_errors": 0,
                       "latency_ms": {"p50": submit_p99 / 2, "p99": submit_p99}},
            "status": {"count": int(status_rps * 10), "rps": status_rps, "http_errors": errors,
                       "latency_ms": {"p50": status_p99 / 2, "p99": status_p99}}}
    total = submit_rps + status_rps
    return {"concurrency": conc, "workload": "flow", "ok": True, "requests": int(total * 10), "rps": total,
            "duration_s": 10.0, "latency_ms": {"p50": status_p99 / 2, "p99": max(submit_p99, status_p99)},
            "tags": tags, "flow_fidelity": fidelity, "errors": {"status": errors}, "error_count": errors}


def _cached(conc, rps, p99):
    return {"concurrency": conc, "workload": "download-cached", "ok": True, "requests": int(rps * 5), "rps": rps,
            "duration_s": 5.0, "latency_ms": {"p50": p99 / 2, "p99": p99}, "errors": {}, "error_count": 0,
            "tags": {"download_cached": {"count": int(rps * 5), "rps": rps, "http_errors": 0,
                                         "latency_ms": {"p50": p99 / 2, "p99": p99}}}}


def _server(kind, runs, startup, rss, pss=None, downloads=()):
    return {"kind": kind, "command": [kind], "startup_s": startup, "peak_rss_mb": rss, "peak_pss_mb": pss,
            "runs": runs, "downloads": list(downloads), "skipped": None}


def _servers():
    return {
        "ours": _server("ours", [_run(1, 800, 1600, 1.0, 0.8), _run(32, 700, 1400, 30.0, 28.0)], 0.3, 50, 40,
                        [_cached(1, 1800, 1.2)]),
        "wiremock": _server("wiremock", [_run(1, 600, 1200, 4.0, 4.0, fidelity=1.0),
                                         _run(32, 1800, 3600, 70.0, 70.0, errors=7, fidelity=0.66)], 1.4, 300, 290,
                            [_cached(1, 2700, 1.0)]),
        "prism": _server("prism", [_run(1, 650, 1300, 4.0, 4.0, fidelity=1 / 3),
                                   _run(32, 1300, 2600, 17.0, 17.0, fidelity=1 / 3)], 1.3, 150),
    }


def test_compute_ratios_per_endpoint():
    r = report.compute_ratios(_servers())
    assert set(r) == {"vs_wiremock", "vs_prism"}
    assert r["vs_prism"]["submit_rps"] == {"1": pytest.approx(800 / 650), "32": pytest.approx(700 / 1300)}
    assert r["vs_prism"]["status_rps"]["1"] == pytest.approx(1600 / 1300)
    assert r["vs_prism"]["submit_p99"]["32"] == pytest.approx(30 / 17)
    assert r["vs_wiremock"]["rps"]["32"] == pytest.approx(2100 / 5400)
    assert r["vs_wiremock"]["cached_rps"] == {"1": pytest.approx(1800 / 2700)}
    assert r["vs_prism"]["cached_rps"] == {}  # Prism serves no image: no ratio
    assert r["vs_wiremock"]["startup"] == pytest.approx(0.3 / 1.4)
    assert r["vs_wiremock"]["peak_pss"] == pytest.approx(40 / 290)
    assert r["vs_prism"]["peak_pss"] is None  # not sampled: no ratio rather than a made-up one


def test_ratios_skip_missing_anchor_and_zero():
    servers = _servers()
    servers["prism"] = {"kind": "prism", "command": None, "startup_s": None, "peak_rss_mb": None,
                        "runs": [], "downloads": [], "skipped": "node not found"}
    servers["wiremock"]["runs"][0]["tags"]["submit"]["rps"] = 0.0
    r = report.compute_ratios(servers)
    assert set(r) == {"vs_wiremock"}
    assert r["vs_wiremock"]["submit_rps"]["1"] is None  # no division by zero, no infinity in JSON
    assert all(t["met"] is None for t in report.check_targets(r) if "Prism" in t["target"])


def test_targets_of_the_issue():
    checks = {c["target"]: c for c in report.check_targets(report.compute_ratios(_servers()))}
    assert checks["submit req/s @1 >= 1x Prism"]["met"] is True
    assert checks["status req/s @1 >= 1x Prism"]["met"] is True
    assert checks["submit req/s @32 >= 0.6x Prism"]["met"] is False  # 700 / 1300 = 0.54
    assert checks["start-up <= 0.5x WireMock"]["met"] is True
    assert checks["peak RSS <= 0.5x Prism"]["met"] is True


def test_results_document_table_and_json():
    servers = _servers()
    servers["prism"]["downloads_skipped"] = "its download URL answered HTTP 200 'image/png', 6 bytes: not an image"
    servers["ours"]["flow_check"] = {"answers": [{"status": "PENDING"}, {"status": "PENDING"}, {"status": "SUCCESS"}],
                                     "as_the_client_expects": True}
    servers["ours"]["downloads"].insert(0, dict(_cached(1, 40, 31.0), workload="download-first",
                                                tags={"download_first": {"count": 200, "rps": 40.0, "http_errors": 0,
                                                                         "latency_ms": {"p50": 20.0, "p99": 31.0}}}))
    meta = {"mode": "quick", "timestamp": "t", "cpus": 2, "noise_other_cores": report.noise_summary([0.1, 0.5, None])}
    doc = report.build_results(meta, {"pending_polls": 2, "flow": "1 submit, 2 polls"}, servers, [])
    assert report.validate_results(doc) == []
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    table = report.format_table(doc)
    for needle in ("vs wiremock", "vs prism", "submit req/s @32", "status p99 @1", "cached dl req/s @1",
                   "first", "cached", "not an image", "PENDING -> PENDING -> SUCCESS", "start-up", "peak RSS",
                   "MISSED", "1 of 2 runs above 0.25 cores"):
        assert needle in table, needle
    broken = dict(doc, schema="other")
    del broken["servers"]["ours"]["runs"][0]["latency_ms"]["p99"]
    del broken["servers"]["ours"]["runs"][1]["tags"]
    assert len(report.validate_results(broken)) == 3


def test_noise_summary():
    assert report.noise_summary([]) == {"runs": 0, "mean": None, "max": None, "noisy_runs": 0,
                                        "threshold": report.NOISY_CORES}
    s = report.noise_summary([0.0, 0.3, 0.6])
    assert (s["runs"], s["max"], s["noisy_runs"]) == (3, 0.6, 2) and s["mean"] == pytest.approx(0.3)


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
    servers["ours"]["runs"][1]["rps"] = 150.0  # more connections, busy, yet far below its c=1 rate
    assert [(c["server"], c["concurrency"]) for c in report.detect_collapses(servers)] == [("ours", 32)]
    assert "COLLAPSE: ours@32" in report.format_table(report.build_results({}, {}, servers, None))


# ------------------------------------------------------------------------------- a tiny real run

def test_tiny_real_run_of_our_mock(tmp_path):
    """Our mock through launch(), one second of wrk on the flow at two connections: every answer is what the
    client's flow expects, and the endpoints come out 1 submit : 2 polls."""
    wrk = shutil.which("wrk")
    if not wrk:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk); the parsing above is still checked")
    srv = harness.LaunchedServer("ours", harness.ours_args(2), tmp_path / "ours.log", timeout=30)
    srv.start()
    try:
        assert srv.wait_first_ok(harness.submit_probe(lambda: srv.port), 30) < 30
        once = harness.run_flow_once(srv.port, 2)
        assert once["as_the_client_expects"], once["answers"]
        run = loadgen.run_load(loadgen.wrk_command(wrk, srv.port, 2, 1.0, "flow", harness.API_KEY, 2),
                               tmp_path / "raw.txt")
    finally:
        srv.stop()
    assert run["source"] == "flow-json" and run["error_count"] == 0
    submits, polls = run["tags"]["submit"]["count"], run["tags"]["status"]["count"]
    assert submits > 10 and abs(polls - 2 * submits) <= 4  # each connection may stop mid-job
    assert run["flow_fidelity"] == 1.0
    assert run["tags"]["submit"]["latency_ms"]["p99"] > 0 and run["tags"]["status"]["latency_ms"]["p50"] > 0
    assert "listening on" in (tmp_path / "ours.log").read_text()


def test_the_in_process_bench_measures_each_way_in_on_a_tiny_run():
    """bench/inprocess.py end to end with a few requests (the client flow over HTTP launches a mock: left to the
    real run); every figure is a positive time and the app's overhead is computed against the bare Flask app."""
    from bench import inprocess

    overhead = inprocess.overhead(5, 1)
    assert abs(overhead["ours over flask, submit"] - (overhead["ours submit"] - overhead["flask submit"])) <= 0.11
    assert all(v > 0 for k, v in overhead.items() if "over" not in k)
    seams = inprocess.seams(3, 1)["ms per submit + status read (CPU)"]
    assert set(seams) == {"mock_sd35 (HTTPAdapter.send)", "responses callback", "flask test client"}
    assert inprocess.flows(inprocess.floor_client(), 3) > 0
    assert "submits and" in inprocess.profile(5, 5)


def test_the_floors_serve_both_routes_and_the_report_compares_each_to_its_own_one_connection(tmp_path):
    """bench/floors.py: each floor starts on our make_server and answers the flow's two routes; the table gives each
    server's concurrency against its own first. (Its wrk runs are left to the real run.)"""
    import requests

    from bench import floors

    for kind in ("bare-flask", "bare-wsgi"):
        server = floors.start(kind, 2, tmp_path)
        try:
            base = f"http://127.0.0.1:{server.port}"
            submit = requests.post(base + "/sd3_5/v1", json=harness.SUBMIT_BODY, timeout=10)
            status = requests.get(base + "/sd3_5/v1/status/x", timeout=10)
        finally:
            server.stop()
        assert (submit.status_code, submit.content, status.content) == (200, floors.PENDING, floors.PENDING)
    table = floors.report({"ours": {1: [(2000.0, 400.0), (2200.0, 420.0)], 32: [(2300.0, 430.0), (2300.0, 440.0)]}})
    assert table.splitlines()[1].split() == ["ours", "1", "2100", "410", "1.00×"]
    assert table.splitlines()[2].split() == ["ours", "32", "2300", "435", "1.10×"]
