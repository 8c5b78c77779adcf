"""The contract suite's pure parts: row results, the report and its table, drift, the drift
command, redaction of recordings, the live job budget, and target resolution. No subprocess."""

from __future__ import annotations

import json

import pytest
import requests

from sd35_twin.contracts import report as rp
from sd35_twin.contracts.__main__ import main as contracts_main
from sd35_twin.contracts.recording import REDACTED, Recorder, Redactor
from sd35_twin.contracts.report import load_report
from sd35_twin.contracts.targets import (
    CAP_REASON, BudgetExhausted, ContractSession, ContractsError, JobBudget, Target, TargetError, probe_control,
    resolve_target,
)

LEDGER = [
    {"id": "L01", "behaviour": "submit endpoint", "value": "POST /sd3_5/v1", "evidence": "D"},
    {"id": "L15", "behaviour": "HTTP codes", "value": "200 PENDING", "evidence": "O, A", "profile_key": "http_status"},
    {"id": "L18", "behaviour": "batch_id", "value": "echoed", "evidence": "D, A", "profile_key": "echo_batch_id"},
    {"id": "L19", "behaviour": "webhook", "value": "posted", "evidence": "D, A"},
    {"id": "L20", "behaviour": "unknown fields", "value": "ignored", "evidence": "A"},
]


def outcome(nodeid, rows, result, reason="", message="", observed=()):
    t = rp.TestOutcome(nodeid, tuple(rows))
    t.outcome, t.reason, t.message, t.observed = result, reason, message, list(observed)
    return t


def make_report(kind, tests, **kw):
    return rp.RunReport(target={"kind": kind, "base_url": f"http://{kind}.test"}, ledger=LEDGER, tests=tests, **kw)


# -- row results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("outcomes, expected", [
    (["passed", "passed"], rp.HELD),
    (["passed", "skipped"], rp.HELD),
    (["passed", "failed"], rp.FAILED),
    (["skipped", "failed"], rp.FAILED),
    (["skipped", "skipped"], rp.NOT_CHECKED),
    (["deselected"], rp.NOT_CHECKED),
    ([], rp.NOT_CHECKED),
])
def test_row_result(outcomes, expected):
    assert rp.row_result(outcomes) == expected


def test_phases_fold_into_one_outcome():
    t = rp.TestOutcome("a::b", ("L01",))
    t.merge_phase("setup", "passed")
    t.merge_phase("call", "passed")
    t.merge_phase("teardown", "passed")
    assert t.outcome == "passed"
    t.merge_phase("teardown", "failed", "boom in teardown")
    assert t.outcome == "failed" and t.message == "error in teardown: boom in teardown"

    s = rp.TestOutcome("a::c", ("L01",))
    s.merge_phase("setup", "skipped", "live job cap reached")
    s.merge_phase("teardown", "passed")
    assert s.outcome == "skipped" and s.reason == "live job cap reached"

    e = rp.TestOutcome("a::d", ("L01",))
    e.merge_phase("setup", "failed", "fixture broke")
    assert e.outcome == "failed" and e.message.startswith("error in setup")


def test_report_rows_results_notes_and_observations():
    tests = [
        outcome("t::a", ["L01"], "passed", observed=[{"row": "L01", "value": 200}]),
        outcome("t::b", ["L15"], "failed", message="AssertionError: PENDING answered 202",
                observed=[{"row": "L15", "value": {"submit_pending": 202}, "profile": {"http_status": {"submit_pending": 202}}}]),
        outcome("t::c", ["L15"], "passed"),
        outcome("t::d", ["L19"], "skipped", reason="mock-only: no control plane"),
        outcome("t::e", ["L01", "L18"], "passed", observed=[{"row": "L18", "echo": True}]),
    ]
    data = make_report("mock", tests, duration_s=1.5).as_dict()
    rows = {r["id"]: r for r in data["rows"]}
    assert data["schema"] == rp.SCHEMA
    assert rows["L01"]["result"] == "held" and len(rows["L01"]["tests"]) == 2
    assert rows["L15"]["result"] == "failed" and "202" in rows["L15"]["note"]
    assert rows["L19"]["result"] == "not_checked" and rows["L19"]["note"] == "mock-only: no control plane"
    assert rows["L20"]["result"] == "not_checked" and rows["L20"]["note"] == "no contract test selected"
    # an observation tagged for one row is not shown under the other rows of the same test
    assert [o.get("value") for o in rows["L01"]["observed"]] == [200]
    assert rows["L18"]["observed"] == [{"test": "t::e", "echo": True}]
    assert data["summary"] == {"held": 2, "failed": 1, "not_checked": 2}
    json.dumps(data)  # serialisable


def test_table_shows_every_row_and_the_live_budget():
    data = make_report("live", [outcome("t::a", ["L01"], "passed"),
                                outcome("t::b", ["L15"], "failed", message="boom")],
                       live_jobs={"cap": 2, "created": 2, "blocked": 3}).as_dict()
    table = rp.format_table(data)
    assert "target live" in table and "live jobs created: 2 of cap 2; 3 submits held back" in table
    for row in LEDGER:
        assert row["id"] in table
    assert "FAILED" in table and "boom" in table
    assert table.splitlines()[-1] == "1 held, 1 failed, 3 not checked"


# -- drift ---------------------------------------------------------------------------------------


def _pair():
    mock = make_report("mock", [
        outcome("t::a", ["L01"], "passed"),
        outcome("t::b", ["L15"], "passed", observed=[{"row": "L15", "profile": {"http_status": {"submit_pending": 200, "success": 200}}}]),
        outcome("t::c", ["L18"], "passed"),
        outcome("t::d", ["L19"], "passed"),
        outcome("t::e", ["L20"], "failed", message="mock broke"),
    ]).as_dict()
    live = make_report("live", [
        outcome("t::a", ["L01"], "passed"),
        outcome("t::b", ["L15"], "failed", message="PENDING answered HTTP 202",
                observed=[{"row": "L15", "value": {"PENDING": [202]},
                           "profile": {"http_status": {"submit_pending": 202, "success": 200}}}]),
        outcome("t::c", ["L18"], "failed", message="batch_id is not echoed",
                observed=[{"row": "L18", "value": {"echoed": False}, "profile": {"echo_batch_id": False}}]),
        outcome("t::d", ["L19"], "skipped", reason="mock-only"),
        outcome("t::e", ["L20"], "passed", observed=[{"row": "L20", "value": "accepted"}]),
    ]).as_dict()
    return mock, live


def test_drift_lists_rows_that_hold_on_one_side_only_with_the_live_observation():
    mock, live = _pair()
    d = rp.drift(mock, live)
    assert d.ids == ["L15", "L18", "L20"]
    assert d.agreed == ["L01"]
    assert d.not_compared == [{"id": "L19", "left": "held", "right": "not_checked"}]
    by_id = {e["id"]: e for e in d.drifted}
    assert by_id["L15"]["left"] == "held" and by_id["L15"]["right"] == "failed"
    assert "202" in by_id["L15"]["observed"]
    assert by_id["L20"]["observed"].startswith('"accepted"')   # the live side, even where the mock failed
    # the hint keeps only what differs from what the mock side observed
    assert d.profile_hint == {"http_status": {"submit_pending": 202}, "echo_batch_id": False}
    text = rp.format_drift(d)
    assert "3 rows drift, 1 agree, 1 not compared" in text and "L19" in text
    assert '"submit_pending": 202' in text


def test_drift_takes_observations_from_the_live_side_whichever_argument_it_is():
    mock, live = _pair()
    d = rp.drift(live, mock)
    assert d.ids == ["L15", "L18", "L20"]
    assert "202" in {e["id"]: e for e in d.drifted}["L15"]["observed"]
    assert d.profile_hint == {"http_status": {"submit_pending": 202}, "echo_batch_id": False}


def test_no_drift_between_equal_reports():
    mock, _ = _pair()
    d = rp.drift(mock, mock)
    assert d.drifted == [] and "no drift" in rp.format_drift(d)


def test_drift_command_exit_codes_json_and_profile_out(tmp_path, capsys):
    mock, live = _pair()
    (tmp_path / "mock.json").write_text(json.dumps(mock))
    (tmp_path / "live.json").write_text(json.dumps(live))
    assert contracts_main(["drift", str(tmp_path / "mock.json"), str(tmp_path / "mock.json")]) == 0
    capsys.readouterr()
    code = contracts_main(["drift", str(tmp_path / "mock.json"), str(tmp_path / "live.json"), "--json",
                           "--profile-out", str(tmp_path / "profile.json")])
    assert code == 1
    out = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in out["drift"]] == ["L15", "L18", "L20"]
    assert json.loads((tmp_path / "profile.json").read_text()) == {"echo_batch_id": False,
                                                                   "http_status": {"submit_pending": 202}}
    assert contracts_main(["table", str(tmp_path / "live.json")]) == 0
    assert "L15  FAILED" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert contracts_main(["drift", str(tmp_path / "bad.json"), str(tmp_path / "live.json")]) == 2
    assert "not a contracts report" in capsys.readouterr().err


# -- recording -----------------------------------------------------------------------------------


def test_redactor_removes_keys_everywhere():
    r = Redactor(["sekrit-key-123", None, ""])
    assert r.headers({"API-Key": "anything", "Authorization": "Bearer x", "X-Other": "has sekrit-key-123"}) == {
        "API-Key": REDACTED, "Authorization": REDACTED, "X-Other": f"has {REDACTED}"}
    assert r.value({"a": ["sekrit-key-123"], "sekrit-key-123": 1}) == {"a": [REDACTED], REDACTED: 1}


def test_recorder_writes_redacted_json_lines(tmp_path):
    rec = Recorder(tmp_path / "rec.jsonl", secrets=["sekrit-key-123"])
    prepared = requests.Request("POST", "http://h.test/sd3_5/v1?key=sekrit-key-123",
                                headers={"API-Key": "sekrit-key-123", "Content-Type": "application/json"},
                                data=json.dumps({"prompt": "x", "note": "sekrit-key-123"})).prepare()
    resp = requests.Response()
    resp.status_code, resp._content = 200, b'{"status": "PENDING", "id": "j1", "echo": "sekrit-key-123"}'
    resp.headers["Content-Type"] = "application/json"
    rec.exchange(prepared, resp, test="t::a", elapsed_ms=1.0)
    image = requests.Response()
    image.status_code, image._content = 200, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    image.headers["Content-Type"] = "image/png"
    rec.exchange(requests.Request("GET", "http://h.test/images/a.png").prepare(), image, test="t::a")
    rec.exchange(requests.Request("GET", "http://h.test/x").prepare(), None, ConnectionError("reset"))
    text = (tmp_path / "rec.jsonl").read_text()
    assert "sekrit-key-123" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["request"]["headers"]["API-Key"] == REDACTED
    assert lines[0]["request"]["body"] == {"prompt": "x", "note": REDACTED}
    assert lines[0]["response"]["body"]["id"] == "j1" and lines[0]["test"] == "t::a"
    assert lines[1]["response"]["body"]["_binary"] == "image/png" and lines[1]["response"]["body"]["bytes"] == 108
    assert lines[2]["error"].startswith("ConnectionError") and "response" not in lines[2]
    assert rec.count == 3


def test_recorded_exchanges_carry_their_readings_from_the_shared_evidence(tmp_path):
    """The suite's recorder reads each exchange with ``mockserver.evidence`` (the proxy's code): a PENDING answered
    202 is a drift of L15, and the recording, read back by ``load_report``, says the same."""
    rec = Recorder(tmp_path / "rec.jsonl", secrets=["k-1"])
    prepared = requests.Request("POST", "http://h.test/sd3_5/v1", headers={"API-Key": "k-1"},
                                json={"prompt": "x", "negative_prompt": "", "num_inference_steps": 1, "samples": 1,
                                      "guidance_scale": 0}).prepare()
    resp = requests.Response()
    resp.status_code, resp._content = 202, b'{"status": "PENDING", "id": "j1"}'
    resp.headers["Content-Type"] = "application/json"
    entry = rec.exchange(prepared, resp, test="t::a")
    l15 = [r for r in entry["readings"] if r["row"] == "L15"]
    assert l15 == [{"row": "L15", "held": False, "text": "L15: submit_pending answered HTTP 202, the profile assumes 200"}]
    assert all(r["held"] for r in entry["readings"] if r["row"] != "L15")
    report = load_report(tmp_path / "rec.jsonl")
    assert report["schema"] == "sd35-contracts-report/1" and report["target"]["kind"] == "recording"
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["L15"]["result"] == "failed" and rows["L15"]["observed"][0]["profile"] == {
        "http_status": {"submit_pending": 202}}
    assert rows["L05"]["result"] == "held" and rows["L22"]["result"] == "not_checked"


def test_a_file_that_is_neither_report_nor_recording_is_refused(tmp_path):
    for text in ("[1, 2]", "{}", '{"request": {}}\n'):
        path = tmp_path / "x.json"
        path.write_text(text)
        with pytest.raises(ValueError, match="not a contracts report|no exchange"):
            load_report(path)


# -- the budget ----------------------------------------------------------------------------------


def test_budget_counts_everything_but_a_4xx_and_refuses_past_the_cap():
    b = JobBudget(2)
    b.before_submit()
    b.after_submit(400)      # refused: no job
    b.after_submit(401)
    assert b.created == 0
    b.after_submit(200)
    b.after_submit(None)     # a lost connection may have created a job
    assert b.created == 2 and b.remaining == 0
    with pytest.raises(BudgetExhausted, match=CAP_REASON):
        b.before_submit()
    with pytest.raises(BudgetExhausted, match="would create 1 more"):
        b.require(1, "a test")
    assert issubclass(BudgetExhausted, ContractsError)
    assert b.as_dict() == {"cap": 2, "created": 2, "blocked": 1}


def test_an_unlimited_budget_never_refuses():
    b = JobBudget(None)
    for _ in range(5):
        b.before_submit()
        b.after_submit(200)
    b.require(100)
    assert not b.limited and b.remaining is None


def test_only_submits_carrying_our_key_are_under_the_cap():
    target = Target("live", "http://h.test", "our-key", "our-other-key")
    session = ContractSession(target, JobBudget(0))

    def req(method="POST", url="http://h.test/sd3_5/v1", **headers):
        return requests.Request(method, url, headers=headers, data="{}").prepare()

    assert session.could_bill(req(**{"API-Key": "our-key"}))
    assert session.could_bill(req(**{"API-Key": "our-other-key"}))
    assert session.could_bill(req(Authorization="Bearer our-key"))
    assert not session.could_bill(req())                                     # no key: cannot bill us
    assert not session.could_bill(req(**{"API-Key": "someone-elses"}))
    assert not session.could_bill(req("GET", "http://h.test/sd3_5/v1/status/x", **{"API-Key": "our-key"}))
    with pytest.raises(BudgetExhausted, match=CAP_REASON):   # raised before anything is sent
        session.post("http://h.test/sd3_5/v1", headers={"API-Key": "our-key"}, data="{}")


# -- targets -------------------------------------------------------------------------------------


def test_resolve_target():
    assert resolve_target(None, env={}).kind == "mock"
    assert resolve_target(None, env={"CONTRACTS_TARGET": "http://h.test:1/"}).base_url == "http://h.test:1"
    url = resolve_target("http://h.test:9", env={"IMAGEPIPELINE_API_KEY": "k"})
    assert (url.kind, url.api_key, url.has_control) == ("url", "k", False)
    live = resolve_target("live", env={"IMAGEPIPELINE_API_KEY": "k", "CONTRACTS_OTHER_API_KEY": "k2"})
    assert (live.kind, live.base_url, live.api_key, live.other_key) == ("live", "https://api.imagepipeline.io", "k", "k2")
    assert resolve_target("live", live_base_url="http://stand.in/", env={"IMAGEPIPELINE_API_KEY": "k"}).base_url == \
        "http://stand.in"
    with pytest.raises(TargetError, match="needs an API key in \\$IMAGEPIPELINE_API_KEY.*nothing was sent"):
        resolve_target("live", env={})
    with pytest.raises(TargetError, match="needs an API key"):
        resolve_target("live", env={"IMAGEPIPELINE_API_KEY": "   "})
    with pytest.raises(TargetError, match="only applies to --target live"):
        resolve_target("mock", live_base_url="http://x.test", env={})
    with pytest.raises(TargetError, match="must be 'mock', 'live' or an http"):
        resolve_target("staging", env={})
    assert resolve_target("mock", env={}).owned and not url.owned
    assert resolve_target("http://h.test:9", reset=True, env={}).owned
    for spec in ("mock", "live"):
        with pytest.raises(TargetError, match="--reset-target only applies to a --target URL"):
            resolve_target(spec, reset=True, env={"IMAGEPIPELINE_API_KEY": "k"})


def test_probe_control_tells_a_mock_from_another_server():
    from sd35_twin.mockserver.config import MockConfig
    from sd35_twin.mockserver.server import start

    mock = start(MockConfig())
    try:
        assert probe_control(mock.url) == (True, "")
    finally:
        mock.close()
    import http.server
    import threading

    class NotAMock(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotAMock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        has, why = probe_control(f"http://127.0.0.1:{server.server_port}")
        assert not has and "no mock control plane" in why and "404" in why
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(TargetError, match="does not answer"):
        probe_control(f"http://127.0.0.1:{server.server_port}", timeout=1)

