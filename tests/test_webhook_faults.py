"""Webhook faults (late, twice, out of order, lost the first N times), sending again on demand, and the
receiver's view of it all, over real HTTP."""

from __future__ import annotations

import time

import pytest
import requests

from sd35_twin.mockserver.errors import InvalidRequest
from sd35_twin.mockserver.faults import FaultRule
from sd35_twin.mockserver.testing import WebhookReceiver

KEY = "webhook-faults-key"


def submit(mock, request, **fields):
    answer = requests.post(f"{mock.url}/sd3_5/v1", json={**request, **fields}, headers={"API-Key": KEY}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


@pytest.fixture
def manual(sd35_mock):
    sd35_mock.configure(lifecycle="manual")
    return sd35_mock


@pytest.mark.parametrize("data,field,rule", [
    ({"type": "webhook_delay"}, "ms", "range"),
    ({"type": "webhook_delay", "ms": 60_001}, "ms", "range"),
    ({"type": "webhook_duplicate", "copies": 0}, "copies", "range"),
    ({"type": "webhook_drop", "attempts": 101}, "attempts", "range"),
    ({"type": "webhook_drop", "endpoint": "status"}, "endpoint", "webhook_only"),
    ({"type": "status", "status": 503, "endpoint": "webhook"}, "endpoint", "webhook_only"),
    ({"type": "webhook_delay", "ms": 5, "phase": "after"}, "phase", "type"),
    ({"type": "status", "status": 503, "copies": 2}, "copies", "type"),
])
def test_bad_webhook_faults_are_refused_naming_the_field(data, field, rule):
    with pytest.raises(InvalidRequest) as info:
        FaultRule.parse(data)
    assert (field, rule) in [(e.field, e.rule) for e in info.value.errors]


def test_an_any_endpoint_fault_never_touches_webhooks():
    assert not FaultRule.parse({"type": "status", "status": 503}).matches("webhook")
    assert FaultRule.parse({"type": "webhook_delay", "ms": 1}).matches("webhook")
    assert not FaultRule.parse({"type": "webhook_delay", "ms": 1}).matches("submit")


def test_delay_holds_the_first_attempt(manual, sd35_webhooks, valid_request):
    manual.fault(type="webhook_delay", ms=300)
    job = submit(manual, valid_request, webhook=sd35_webhooks.url)
    started = time.monotonic()
    manual.complete(job)
    [call] = sd35_webhooks.expect(1)
    assert time.monotonic() - started >= 0.3  # a lower bound: the delay is enforced, never flaky
    assert call.json["id"] == job
    [record] = manual.webhooks(job)
    assert (record["outcome"], record["fault"]) == ("delivered", "webhook_delay 300 ms")


def test_duplicate_sends_the_same_body_again(manual, sd35_webhooks, valid_request):
    manual.fault(type="webhook_duplicate", copies=2)
    job = submit(manual, valid_request, webhook=sd35_webhooks.url)
    manual.complete(job)
    calls = sd35_webhooks.expect(3)
    assert len({c.raw for c in calls}) == 1 and calls[0].json["status"] == "SUCCESS"
    assert sorted(r["fault"] for r in manual.webhooks(job)) == [
        f"webhook_duplicate x2 (copy {n} of 3)" for n in (1, 2, 3)]


def test_drop_loses_the_first_attempts_then_the_retry_arrives(manual, sd35_webhooks, valid_request):
    manual.configure(webhook_max_attempts=3)
    manual.fault(type="webhook_drop", attempts=2)
    job = submit(manual, valid_request, webhook=sd35_webhooks.url)
    manual.complete(job)
    [call] = sd35_webhooks.expect(1)
    records = manual.webhooks(job)
    assert [(r["attempt"], r["outcome"]) for r in records] == [(1, "dropped"), (2, "dropped"), (3, "delivered")]
    assert len(sd35_webhooks.calls) == 1 and call.json["id"] == job


def test_drop_past_the_mocks_attempts_is_never_delivered(manual, sd35_webhooks, valid_request):
    manual.configure(webhook_max_attempts=2)
    manual.fault(type="webhook_drop", attempts=5)
    job = submit(manual, valid_request, webhook=sd35_webhooks.url)
    manual.complete(job)
    assert [r["outcome"] for r in manual.webhooks(job)] == ["dropped", "dropped"]
    assert sd35_webhooks.calls == []


def test_out_of_order_a_held_delivery_goes_after_the_next_one(manual, sd35_webhooks, valid_request):
    manual.fault(type="webhook_out_of_order")
    first = submit(manual, valid_request, webhook=sd35_webhooks.url)
    second = submit(manual, valid_request, webhook=sd35_webhooks.url)
    manual.complete(first)   # held: it waits for another delivery
    manual.complete(second)  # sent, and then the held one
    calls = sd35_webhooks.expect(2)
    assert [c.json["id"] for c in calls] == [second, first]
    assert manual.webhooks(first)[0]["fault"].startswith("webhook_out_of_order")


def test_out_of_order_alone_goes_out_after_its_hold(manual, sd35_webhooks, valid_request):
    manual.fault(type="webhook_out_of_order", ms=50)
    job = submit(manual, valid_request, webhook=sd35_webhooks.url)
    manual.complete(job)
    [call] = sd35_webhooks.expect(1)
    assert call.json["id"] == job


def test_a_rule_scopes_a_webhook_fault_to_its_jobs(manual, sd35_webhooks, valid_request):
    manual.add_rule({"batch_id": "twice"}, fault={"type": "webhook_duplicate"})
    doubled = submit(manual, valid_request, webhook=sd35_webhooks.url, batch_id="twice")
    single = submit(manual, valid_request, webhook=sd35_webhooks.url, batch_id="once")
    manual.complete(doubled)
    manual.complete(single)
    calls = sd35_webhooks.expect(3)
    assert sorted(c.json["batch_id"] for c in calls) == ["once", "twice", "twice"]
    assert len(manual.webhooks(single)) == 1 and "fault" not in manual.webhooks(single)[0]


def test_resend_on_demand_to_the_jobs_url_or_another(manual, sd35_webhooks, valid_request):
    job = submit(manual, valid_request, webhook=sd35_webhooks.url)
    manual.fail(job, "nsfw")
    sd35_webhooks.expect(1)
    with WebhookReceiver() as other:
        manual.resend_webhook(job)
        manual.resend_webhook(job, other.url)
        [again, _] = sd35_webhooks.expect(2)
        [elsewhere] = other.expect(1)
    assert again.json == elsewhere.json == {"status": "FAILURE", "id": job, "error": "nsfw"}
    records = manual.webhooks(job)  # two workers: the resends may be recorded in either order
    assert sorted((r["url"], r.get("resent", False)) for r in records) == sorted([
        (sd35_webhooks.url, False), (sd35_webhooks.url, True), (other.url, True)])


def test_resend_is_checked_like_any_webhook(manual, sd35_webhooks, valid_request):
    job = submit(manual, valid_request)
    refused = manual.request("POST", f"/jobs/{job}/webhook", json={})
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "url"
    assert manual.request("POST", "/jobs/no-such-job/webhook", json={}).status_code == 404
    bad = manual.request("POST", f"/jobs/{job}/webhook", json={"url": 7})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "url"
    for url, rule in ((f"{manual.url}/__mock__/reset", "allowed"),   # the mock itself
                      ("http://example.com/hook", "allowed"),          # not loopback, not allowed
                      ("file:///etc/passwd", "format")):
        refused = manual.request("POST", f"/jobs/{job}/webhook", json={"url": url})
        assert refused.status_code == 400, url
        assert [(e["field"], e["rule"]) for e in refused.json()["errors"]] == [("url", rule)], refused.json()
    assert manual.webhooks(job) == [] and manual.jobs()[0]["id"] == job  # nothing sent, nothing recorded


def test_the_receiver_says_what_it_got_when_too_few_came(manual, sd35_webhooks, valid_request):
    job = submit(manual, valid_request, webhook=sd35_webhooks.url, batch_id="b7")
    manual.complete(job)
    with pytest.raises(AssertionError) as info:
        sd35_webhooks.expect(2, timeout=0.5)
    message = str(info.value)
    assert "expected 2 webhook call(s)" in message and "got 1" in message
    assert f"status='SUCCESS' id={job!r} batch_id='b7'" in message
