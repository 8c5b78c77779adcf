"""The control plane over real HTTP: config, clock, jobs, journal, webhooks and every fault."""

import json
import time

import pytest
import requests

KEY = {"API-Key": "secret-key-123"}


def ctl(mock, method, path, body=None):
    response = requests.request(method, f"{mock.url}/__mock__{path}", json=body, timeout=10)
    return response


def submit(mock, request, headers=KEY):
    return requests.post(f"{mock.url}/sd3_5/v1", json=request, headers=headers, timeout=10)


def poll(mock, job_id):
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers=KEY, timeout=10)


def test_config_round_trip_and_errors(sd35_mock):
    config = ctl(sd35_mock, "GET", "/config").json()
    assert config["lifecycle"] == "polls" and config["profile"]["limits"]["samples"]["max"] == 2
    changed = ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "seconds", "pending_seconds": 7})
    assert changed.status_code == 200 and changed.json()["pending_seconds"] == 7
    bad = ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "later", "pending_polls": -1, "bogus": 1})
    assert bad.status_code == 400 and "bogus" in bad.json()["error"]
    bad = ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "later", "pending_polls": -1})
    assert {e["field"] for e in bad.json()["errors"]} == {"lifecycle", "pending_polls"}
    assert ctl(sd35_mock, "PATCH", "/config", [1]).status_code == 400
    assert ctl(sd35_mock, "GET", "/config").json()["pending_seconds"] == 7


def test_api_keys_are_redacted_in_config(sd35_mock):
    shown = ctl(sd35_mock, "PATCH", "/config", {"api_keys": ["super-secret-key"]}).json()["api_keys"]
    assert "super-secret-key" not in json.dumps(shown)


def test_clock_advance_drives_seconds_lifecycle(sd35_mock, valid_request):
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "seconds", "pending_seconds": 60})
    job_id = submit(sd35_mock, valid_request).json()["id"]
    assert poll(sd35_mock, job_id).json()["status"] == "PENDING"
    assert ctl(sd35_mock, "POST", "/clock/advance", {"seconds": 61}).status_code == 200
    assert poll(sd35_mock, job_id).json()["status"] == "SUCCESS"
    for bad in ({"seconds": -1}, {"seconds": "1"}, {}, {"seconds": True}):
        assert ctl(sd35_mock, "POST", "/clock/advance", bad).json()["errors"][0]["field"] == "seconds"


def test_jobs_list_show_complete_fail(sd35_mock, valid_request):
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "manual"})
    a = submit(sd35_mock, dict(valid_request, batch_id="A")).json()["id"]
    b = submit(sd35_mock, dict(valid_request, batch_id="B")).json()["id"]
    assert [j["id"] for j in ctl(sd35_mock, "GET", "/jobs").json()["jobs"]] == [b, a]
    assert [j["id"] for j in ctl(sd35_mock, "GET", "/jobs?batch_id=A").json()["jobs"]] == [a]
    shown = ctl(sd35_mock, "GET", f"/jobs/{a}").json()
    assert shown["request"]["batch_id"] == "A" and shown["owner_key"] == "***"
    assert ctl(sd35_mock, "POST", f"/jobs/{a}/complete").json()["status"] == "SUCCESS"
    assert ctl(sd35_mock, "POST", f"/jobs/{b}/fail", {"error": "out of GPUs"}).json()["body"]["error"] == "out of GPUs"
    assert poll(sd35_mock, b).json() == {"status": "FAILURE", "id": b, "error": "out of GPUs", "batch_id": "B"}
    conflict = ctl(sd35_mock, "POST", f"/jobs/{a}/fail")
    assert conflict.status_code == 409 and conflict.json()["errors"][0]["field"] == "status"
    assert ctl(sd35_mock, "GET", "/jobs?status=FAILURE").json()["jobs"][0]["id"] == b
    assert ctl(sd35_mock, "GET", "/jobs?status=DONE").status_code == 400
    assert ctl(sd35_mock, "GET", "/jobs/nope").status_code == 404
    assert ctl(sd35_mock, "POST", f"/jobs/{a}/fail", {"error": 5}).status_code in (400, 409)


def test_reset(sd35_mock, valid_request):
    submit(sd35_mock, valid_request)
    ctl(sd35_mock, "POST", "/faults", {"type": "status", "status": 500, "endpoint": "status"})
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "manual"})
    assert ctl(sd35_mock, "POST", "/reset").json() == {"ok": True}
    assert ctl(sd35_mock, "GET", "/jobs").json()["jobs"] == []
    assert ctl(sd35_mock, "GET", "/faults").json()["faults"] == []
    assert ctl(sd35_mock, "GET", "/config").json()["lifecycle"] == "polls"
    assert ctl(sd35_mock, "GET", "/journal").json()["requests"] == []


def test_journal_redacts_keys_and_is_bounded(sd35_mock, valid_request):
    submit(sd35_mock, valid_request)
    poll(sd35_mock, "nope")
    entries = ctl(sd35_mock, "GET", "/journal").json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/sd3_5/v1", 200), ("GET", "/sd3_5/v1/status/nope", 404)]
    assert "secret-key-123" not in json.dumps(entries)
    assert entries[0]["headers"]["Api-Key"] == "***" and json.loads(entries[0]["body"])["samples"] == 2
    assert ctl(sd35_mock, "DELETE", "/journal").status_code == 200
    size = sd35_mock.config()["journal_size"]
    for _ in range(size + 20):
        poll(sd35_mock, "x")
    assert len(ctl(sd35_mock, "GET", "/journal").json()["requests"]) == size
    assert len(ctl(sd35_mock, "GET", "/journal?limit=3").json()["requests"]) == 3


def test_status_fault_with_retry_after_for_next_n(sd35_mock, valid_request):
    rule = ctl(sd35_mock, "POST", "/faults", {"type": "status", "status": 429, "retry_after": 3, "times": 2,
                                             "endpoint": "submit"})
    assert rule.status_code == 201
    answers = [submit(sd35_mock, valid_request) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3" and answers[0].json()["status"] == "FAILURE"
    assert len(sd35_mock.jobs()) == 1  # a faulted request creates no job
    assert ctl(sd35_mock, "GET", "/faults").json()["faults"] == []


@pytest.mark.parametrize("code", [500, 503])
def test_server_error_faults(sd35_mock, code):
    ctl(sd35_mock, "POST", "/faults", {"type": "status", "status": code, "endpoint": "status"})
    assert poll(sd35_mock, "anything").status_code == code
    assert poll(sd35_mock, "anything").status_code == 404


def test_fault_rate_is_a_share(sd35_mock):
    ctl(sd35_mock, "POST", "/faults", {"type": "status", "status": 500, "rate": 0.5, "endpoint": "status"})
    codes = [poll(sd35_mock, "x").status_code for _ in range(200)]
    assert 60 < codes.count(500) < 140 and set(codes) == {500, 404}
    ctl(sd35_mock, "DELETE", "/faults")
    assert poll(sd35_mock, "x").status_code == 404


def test_latency_fault(sd35_mock):
    ctl(sd35_mock, "POST", "/faults", {"type": "latency", "ms": 300, "endpoint": "status"})
    started = time.perf_counter()
    assert poll(sd35_mock, "x").status_code == 404  # delayed, then answered normally
    assert time.perf_counter() - started >= 0.3
    assert sd35_mock.journal()[-1]["fault"] == "latency 300 ms"


def test_drop_fault_closes_the_connection(sd35_mock, valid_request):
    ctl(sd35_mock, "POST", "/faults", {"type": "drop", "endpoint": "submit"})
    with pytest.raises(requests.ConnectionError):
        submit(sd35_mock, valid_request)
    assert submit(sd35_mock, valid_request).status_code == 200


def test_malformed_fault(sd35_mock):
    ctl(sd35_mock, "POST", "/faults", {"type": "malformed", "endpoint": "status"})
    response = poll(sd35_mock, "x")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_download_faults_are_scoped(sd35_mock, valid_request):
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "immediate"})
    ctl(sd35_mock, "POST", "/faults", {"type": "status", "status": 503, "endpoint": "download"})
    body = submit(sd35_mock, valid_request).json()
    assert body["status"] == "SUCCESS"
    assert requests.get(body["download_urls"][0], timeout=10).status_code == 503
    assert requests.get(body["download_urls"][0], timeout=10).status_code == 200


@pytest.mark.parametrize("rule,field", [
    ({"type": "explode"}, "type"), ({"type": "status", "status": 200}, "status"),
    ({"type": "latency", "ms": -1}, "ms"), ({"type": "latency", "ms": 10**9}, "ms"),
    ({"type": "drop", "times": 0}, "times"), ({"type": "drop", "rate": 2}, "rate"),
    ({"type": "drop", "endpoint": "everything"}, "endpoint"), ({"type": "drop", "times": 1, "rate": 0.5}, "rate"),
    ({"type": "drop", "colour": "red"}, "colour"),
])
def test_bad_fault_rules_are_rejected_naming_the_field(sd35_mock, rule, field):
    response = ctl(sd35_mock, "POST", "/faults", rule)
    assert response.status_code == 400 and field in [e["field"] for e in response.json()["errors"]]


def test_webhook_delivered_to_a_real_receiver(sd35_mock, sd35_webhooks, valid_request):
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "manual"})
    job_id = submit(sd35_mock, dict(valid_request, webhook=sd35_webhooks.url, batch_id="w")).json()["id"]
    assert sd35_webhooks.calls == []  # nothing while PENDING
    ctl(sd35_mock, "POST", f"/jobs/{job_id}/complete")
    [call] = sd35_webhooks.wait_for(1)
    assert call.json == poll(sd35_mock, job_id).json()
    assert call.headers["Content-Type"] == "application/json"
    deliveries = sd35_mock.webhooks(job_id)
    assert [(d["attempt"], d["outcome"]) for d in deliveries] == [(1, "delivered")]
    assert ctl(sd35_mock, "GET", f"/webhooks?job_id={job_id}").json()["deliveries"] == deliveries


def test_webhook_retried_after_500(sd35_mock, sd35_webhooks, valid_request):
    sd35_webhooks.fail_next = 2
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "immediate"})
    job = submit(sd35_mock, dict(valid_request, webhook=sd35_webhooks.url)).json()
    assert [c.answered for c in sd35_webhooks.wait_for(3)] == [500, 500, 200]
    assert sd35_webhooks.bodies == [job]
    outcomes = [(d["attempt"], d["outcome"], d["status_code"]) for d in sd35_mock.webhooks(job["id"])]
    assert outcomes == [(1, "http_error", 500), (2, "http_error", 500), (3, "delivered", 200)]


def test_webhook_failure_body(sd35_mock, sd35_webhooks, valid_request):
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "immediate", "failure_rate": 1.0})
    job = submit(sd35_mock, dict(valid_request, webhook=sd35_webhooks.url)).json()
    assert job["status"] == "FAILURE"
    assert [c.json for c in sd35_webhooks.wait_for(1)] == [job]


def test_webhook_to_non_loopback_host_is_blocked_not_sent(sd35_mock, valid_request):
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "immediate"})
    job = submit(sd35_mock, dict(valid_request, webhook="http://10.255.255.1/hook")).json()
    [record] = sd35_mock.webhooks(job["id"])
    assert record["outcome"] == "blocked" and "webhook-allow-host" in record["error"]


def test_after_phase_faults_lose_the_answer_but_keep_the_job(sd35_mock, valid_request):
    """The double-billing case: the server made the job, the client never learns its id. Each fault loses the
    answer its own way: an error status, a connection closed with no answer, a 200 whose JSON is cut off."""
    def lost(rule: dict):
        sd35_mock.reset()
        ctl(sd35_mock, "POST", "/faults", {**rule, "endpoint": "submit", "phase": "after"})
        try:
            response = submit(sd35_mock, valid_request)
        except requests.ConnectionError:
            response = None
        [job] = sd35_mock.jobs()
        [entry] = sd35_mock.requests(kind="submit")
        return response, job, entry

    response, job, entry = lost({"type": "status", "status": 500})
    assert response.status_code == 500 and entry["fault"] == "status after"
    assert response.json()["errors"] == [{"field": "server", "rule": "fault", "message": "injected HTTP 500"}]
    assert job["id"] not in response.text
    response, job, entry = lost({"type": "drop"})
    assert response is None and entry["fault"] == "drop after"
    response, job, entry = lost({"type": "malformed"})
    assert (response.status_code, response.text) == (200, '{"status": "SUCC') and entry["fault"] == "malformed after"
    assert submit(sd35_mock, valid_request).status_code == 200


def test_after_phase_latency_delays_a_handled_request(sd35_mock, valid_request):
    ctl(sd35_mock, "POST", "/faults", {"type": "latency", "ms": 400, "endpoint": "submit", "phase": "after"})
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{sd35_mock.url}/sd3_5/v1", json=valid_request, headers=KEY, timeout=0.2)
    assert len(sd35_mock.jobs()) == 1  # the client timed out, the job exists all the same


def test_bad_phase_is_rejected(sd35_mock):
    response = ctl(sd35_mock, "POST", "/faults", {"type": "drop", "phase": "during"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "phase"


def test_webhooks_wait_returns_settled_records(sd35_mock, sd35_webhooks, valid_request):
    sd35_webhooks.fail_next = 1
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "immediate", "webhook_backoff": 0.05})
    job = submit(sd35_mock, dict(valid_request, webhook=sd35_webhooks.url)).json()
    settled = ctl(sd35_mock, "GET", f"/webhooks?job_id={job['id']}&wait=30").json()["deliveries"]
    assert [d["outcome"] for d in settled] == ["http_error", "delivered"]
    for bad in ("-1", "31", "soon", "nan"):
        assert ctl(sd35_mock, "GET", f"/webhooks?wait={bad}").json()["errors"][0]["field"] == "wait"


@pytest.mark.parametrize("clear", ["reset", "journal"])
def test_a_request_in_flight_across_a_reset_is_not_journaled_after_it(sd35_mock, clear):
    """An earlier test's faulted request that ends after the next test's reset (or a cleared journal) is not
    in the new journal nor in its counts: it would be counted as the next test's."""
    from concurrent.futures import ThreadPoolExecutor

    sd35_mock.fault(type="latency", ms=1500, endpoint="status")
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(requests.get, f"{sd35_mock.url}/sd3_5/v1/status/nope", headers=KEY, timeout=30)
        deadline = time.monotonic() + 10
        while sd35_mock.faults() and time.monotonic() < deadline:  # taken: the request is in its delay
            time.sleep(0.02)
        assert sd35_mock.faults() == []
        sd35_mock.reset() if clear == "reset" else sd35_mock.clear_journal()
        assert late.result().status_code == 404  # it was answered all the same
    poll(sd35_mock, "after")
    assert [(e["method"], e["path"]) for e in sd35_mock.journal()] == [("GET", "/sd3_5/v1/status/after")]
    assert sd35_mock.counts()["total"] == 1
