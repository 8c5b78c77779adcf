"""mockserver.webhooks against a real HTTP receiver on 127.0.0.1, plus the loopback-only guard."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from sd35_twin.mockserver import webhooks
from sd35_twin.mockserver.webhooks import WebhookDispatcher, backoff_delay, check_url, host_allowed, is_loopback_host
from tests.helpers import refused_port


@pytest.fixture
def receiver(sd35_webhooks):
    return sd35_webhooks


# wait_idle(30) returns as soon as the dispatcher is idle: the limit only keeps a loaded machine from failing a
# test, so it is long.
@pytest.fixture
def make():
    made = []

    def factory(**kw):
        kw.setdefault("backoff", 0)
        d = WebhookDispatcher(**kw)
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close()


@pytest.fixture
def refused_url():
    """A port that is bound but not listening: connecting is refused, deterministically."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly (and count) if anything tries to resolve or connect."""
    calls = []

    def deny(name):
        def guard(*a, **k):
            calls.append((name, a))
            raise AssertionError(f"network used: {name}{a!r}")
        return guard

    monkeypatch.setattr(socket, "getaddrinfo", deny("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", deny("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", deny("connect"))
    monkeypatch.setattr(requests.Session, "request", deny("requests"))
    return calls


def outcomes(d, job_id=None):
    return [(r["attempt"], r["outcome"], r["status_code"]) for r in d.records(job_id)]


# --- delivery -----------------------------------------------------------------------------------

def test_delivered_on_first_try(receiver, make):
    d = make()
    payload = {"status": "SUCCESS", "id": "j1", "download_urls": ["http://x/1"]}
    d.submit("j1", receiver.url, payload)
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "delivered", 200)]
    rec = d.records()[0]
    assert rec["job_id"] == "j1" and rec["url"] == receiver.url and rec["error"] is None
    assert isinstance(rec["at"], float) and rec["duration_ms"] >= 0
    [req] = receiver.calls
    assert req.json == payload
    assert req.path == "/hook"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"] == "sd35-mock-webhook"


def test_retried_after_500_then_delivered(receiver, make):
    receiver.fail_next = 2
    d = make(max_attempts=3)
    d.submit("j1", receiver.url, {"a": 1})
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "http_error", 500), (2, "http_error", 500), (3, "delivered", 200)]
    assert "500" in d.records()[0]["error"]
    assert len(receiver.calls) == 3


def test_gives_up_after_max_attempts(receiver, make):
    receiver.status = 500
    d = make(max_attempts=3)
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "http_error", 500), (2, "http_error", 500), (3, "http_error", 500)]
    assert len(receiver.calls) == 3


def test_redirect_is_not_followed(receiver, make):
    receiver.status, receiver.answer_headers = 307, {"Location": "http://10.1.2.3/elsewhere"}
    d = make(max_attempts=1)
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "http_error", 307)]
    assert len(receiver.calls) == 1


def test_timeout_is_recorded_as_error(receiver, make):
    receiver.hold()
    d = make(timeout=0.2, max_attempts=1)
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    [rec] = d.records()
    assert rec["outcome"] == "error" and rec["status_code"] is None
    assert "timeout" in rec["error"].lower()
    assert rec["duration_ms"] >= 150


def test_connection_refused(refused_url, make):
    d = make(max_attempts=2)
    d.submit("j1", refused_url, {})
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "error", None), (2, "error", None)]
    assert "ConnectionError" in d.records()[0]["error"]


def test_environment_proxy_is_ignored(receiver, refused_url, make, monkeypatch):
    # were the proxy used, the POST would go to a refused loopback port and fail
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, refused_url.rsplit("/", 1)[0])
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    d = make(max_attempts=1)
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "delivered", 200)]


def test_backoff_waits_between_attempts(receiver, make):
    receiver.fail_next = 1
    d = make(max_attempts=2, backoff=0.05, clock=time.monotonic)
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    first, second = d.records()
    assert second["outcome"] == "delivered"
    assert second["at"] - (first["at"] + first["duration_ms"] / 1000) >= 0.045


@pytest.mark.parametrize("backoff,attempt,expected", [
    (0.5, 1, 0.5), (0.5, 2, 1.0), (0.5, 3, 2.0), (0.5, 7, 30.0), (10, 3, 30.0), (0, 5, 0.0), (0.5, 10_000, 30.0),
])
def test_backoff_delay(backoff, attempt, expected):
    assert backoff_delay(backoff, attempt) == expected


def test_injected_clock_stamps_records(receiver, make):
    d = make(clock=lambda: 1234.5)
    d.submit("j1", receiver.url, {})
    d.submit("j2", "http://10.1.2.3/hook", {})
    assert d.wait_idle(30)
    assert [r["at"] for r in d.records()] == [1234.5, 1234.5]


def test_payload_is_snapshotted_at_submit(receiver, make):
    receiver.hold()
    d = make(workers=1)
    d.submit("j0", receiver.url, {})  # occupies the only worker
    assert receiver.wait_for(1)
    payload = {"status": "PENDING"}
    d.submit("j1", receiver.url, payload)
    payload["status"] = "MUTATED"
    receiver.release()
    assert d.wait_idle(30)
    assert json.loads(receiver.calls[1].raw) == {"status": "PENDING"}


@pytest.mark.parametrize("payload", [{"x": {1, 2}}, {"x": float("nan")}, object()])
def test_unserialisable_payload_is_recorded_not_raised(payload, make, no_network):
    d = make()
    d.submit("j1", "http://127.0.0.1:9/hook", payload)
    assert d.wait_idle(30)
    [rec] = d.records()
    assert rec["outcome"] == "error" and "JSON" in rec["error"]
    assert no_network == []


# --- safety: loopback only ----------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://10.1.2.3/hook",
    "http://example.com/hook",
    "https://example.com:8443/hook",
    "http://[2001:db8::1]:8080/hook",
    "http://127.0.0.1.nip.io/hook",
    "http://localhost.example.com/hook",
    "http://0.0.0.0:8080/hook",
    "http://2130706433/hook",  # 127.0.0.1 in decimal: we do not guess what a resolver makes of it
    "http://user@10.0.0.1/hook",
])
def test_non_loopback_is_blocked_without_any_connection(url, make, no_network):
    d = make()
    d.submit("j1", url, {"status": "SUCCESS"})
    assert d.wait_idle(30)
    [rec] = d.records()
    assert rec["outcome"] == "blocked" and rec["attempt"] == 1 and rec["status_code"] is None
    assert "not allowed" in rec["error"] and "--webhook-allow-host" in rec["error"]
    assert no_network == []


@pytest.mark.parametrize("host,loopback", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True),
    ("[::1]", True), ("::ffff:127.0.0.1", True), ("10.1.2.3", False), ("example.com", False),
    ("0.0.0.0", False), ("127.1", False), ("localhost.evil.com", False), ("", False), ("::", False),
])
def test_is_loopback_host(host, loopback):
    assert is_loopback_host(host) is loopback


def test_allow_hosts_decision_without_connecting():
    assert not host_allowed("example.com", ())
    assert host_allowed("example.com", ["*"])
    assert host_allowed("10.1.2.3", ["*"])
    assert host_allowed("Example.COM", ["example.com"])
    assert not host_allowed("evil.com", ["example.com"])
    assert host_allowed("2001:db8::1", ["[2001:db8::1]"])
    assert host_allowed("hooks.example.com", "hooks.example.com")  # a lone string is one host
    assert check_url("http://example.com/hook", ["*"]) == ("ok", None)
    assert check_url("http://example.com/hook", ["example.com"]) == ("ok", None)
    assert check_url("http://example.com/hook", [])[0] == "blocked"
    assert check_url("http://127.0.0.1:8080/hook", []) == ("ok", None)


def test_update_allow_hosts_applies_to_later_submits(make, no_network):
    d = make()
    d.update(allow_hosts=["example.com"])
    assert check_url("http://example.com/x", d.allow_hosts) == ("ok", None)
    d.update(allow_hosts=[])
    d.submit("j1", "http://example.com/x", {})
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "blocked", None)]
    assert no_network == []


@pytest.mark.parametrize("url", [
    "not a url", "ftp://127.0.0.1/hook", "http://", "http:///hook", "http://127.0.0.1:99999/hook",
    "http://127.0.0.1:port/hook", "", None, 42, "http://127.0.0.1/ho ok", "http://127.0.0.1/\x00",
    "javascript:alert(1)", "http://[::1/hook",
])
def test_malformed_url_is_recorded_as_error(url, make, no_network):
    d = make()
    d.submit("j1", url, {})
    assert d.wait_idle(30)
    [rec] = d.records()
    assert rec["outcome"] == "error" and rec["error"]
    assert no_network == []


# --- queue, records, lifecycle ------------------------------------------------------------------

def test_submit_never_blocks_and_full_queue_drops(receiver, make):
    receiver.hold()
    d = make(workers=1, max_queue=3, timeout=30)
    d.submit("j0", receiver.url, {})
    assert receiver.wait_for(1)  # j0 is in flight, the queue is empty
    start = time.perf_counter()
    for i in range(1, 4):
        d.submit(f"j{i}", receiver.url, {})  # fills the queue
    for i in range(4, 40):
        d.submit(f"j{i}", receiver.url, {})  # dropped at once
    elapsed = time.perf_counter() - start
    dropped = [r for r in d.records() if r["outcome"] == "dropped"]
    assert [r["job_id"] for r in dropped] == [f"j{i}" for i in range(4, 40)]
    assert "queue full" in dropped[0]["error"]
    receiver.release()
    assert d.wait_idle(30)  # returns once idle: the limit is only for a loaded machine
    # 39 submits while the receiver hangs: a submit that waited for the delivery would take its 30 s timeout (a
    # bound no loaded machine comes near, unlike the 1 s this said before).
    assert elapsed < 15
    delivered = [r["job_id"] for r in d.records() if r["outcome"] == "delivered"]
    assert sorted(delivered) == ["j0", "j1", "j2", "j3"]


def test_records_are_bounded_and_oldest_first(make, no_network):
    d = make(max_records=3)
    for i in range(5):
        d.submit(f"j{i}", "http://10.1.2.3/hook", {})
    assert [r["job_id"] for r in d.records()] == ["j2", "j3", "j4"]
    assert [r["job_id"] for r in d.records("j3")] == ["j3"]
    assert d.records("nope") == []


def test_records_are_copies(make, no_network):
    d = make()
    d.submit("j1", "http://10.1.2.3/hook", {})
    d.records()[0]["outcome"] = "tampered"
    assert d.records()[0]["outcome"] == "blocked"


def test_clear_forgets_records_and_queued_deliveries(receiver, make):
    receiver.hold()
    d = make(workers=1)
    d.submit("j0", receiver.url, {})
    assert receiver.wait_for(1)
    d.submit("j1", receiver.url, {})
    d.submit("j2", "http://10.1.2.3/hook", {})
    d.clear()
    receiver.release()
    assert d.wait_idle(30)
    assert d.records() == []  # the in-flight j0 finished after the reset: not recorded
    assert len(receiver.calls) == 1  # j1 was never sent


def test_worker_survives_unexpected_exception(receiver, make, monkeypatch):
    real_post = requests.Session.post
    boom = {"left": 1}

    def flaky_post(self, *a, **k):
        if boom["left"]:
            boom["left"] -= 1
            raise RuntimeError("kaboom")
        return real_post(self, *a, **k)

    monkeypatch.setattr(requests.Session, "post", flaky_post)
    d = make(workers=1)
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    d.submit("j2", receiver.url, {})
    assert d.wait_idle(30)
    assert outcomes(d, "j1") == [(1, "error", None)] and "kaboom" in d.records("j1")[0]["error"]
    assert outcomes(d, "j2") == [(1, "delivered", 200)]


def test_update_changes_settings_at_run_time(receiver, make):
    receiver.status = 500
    d = make(max_attempts=3)
    d.update(max_attempts=1, timeout=2, backoff=0)
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    assert outcomes(d) == [(1, "http_error", 500)]
    with pytest.raises(TypeError):
        d.update(colour="blue")
    for bad in ({"timeout": 0}, {"timeout": float("nan")}, {"max_attempts": 0}, {"max_attempts": 1.5},
                {"backoff": -1}):
        with pytest.raises(ValueError):
            d.update(**bad)
    assert (d.timeout, d.max_attempts, d.backoff) == (2.0, 1, 0.0)


def test_constructor_validates():
    with pytest.raises(ValueError):
        WebhookDispatcher(max_attempts=0)
    with pytest.raises(ValueError):
        WebhookDispatcher(max_queue=0)


def test_workers_start_lazily_and_close_is_idempotent(receiver, make):
    d = make(workers=2)
    assert d._threads == []
    d.submit("j1", receiver.url, {})
    assert d.wait_idle(30)
    threads = list(d._threads)
    assert len(threads) == 2 and all(t.daemon for t in threads)
    d.close()
    d.close()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    d.submit("j2", receiver.url, {})
    assert outcomes(d, "j2") == [(1, "dropped", None)]
    assert d.wait_idle(1)


def test_wait_idle_times_out_while_a_delivery_hangs(receiver, make):
    receiver.hold()
    d = make()
    d.submit("j1", receiver.url, {})
    assert receiver.wait_for(1)
    assert d.wait_idle(0.05) is False
    receiver.release()
    assert d.wait_idle(5) is True


def test_core_modules_do_not_import_flask():
    import ast
    from sd35_twin.mockserver import images

    for mod in (webhooks, images):
        tree = ast.parse(open(mod.__file__, encoding="utf-8").read())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(n.split(".")[0] == "flask" for n in names), mod.__name__
