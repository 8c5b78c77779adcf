"""Webhook contracts (L19, L31), mock-only: they need a receiver the target can reach and the mock's
webhook journal. On a terminal state the status body is POSTed to the URL, and retried on failure; by default
once per job, in the order jobs finish."""

from __future__ import annotations

import pytest

from sd35_twin.contracts.support import CHEAPEST, as_request

pytestmark = [pytest.mark.mock_only, pytest.mark.billable(priority=90)]


@pytest.mark.ledger("L19")
@pytest.mark.parametrize("end", ["complete", "fail"])
def test_the_final_status_body_is_posted_to_the_webhook(contract, webhook_receiver, end):
    contract.control.configure(lifecycle="manual")
    job = contract.client.submit(as_request(dict(CHEAPEST, webhook=webhook_receiver.url, batch_id="hook-1")),
                                 validate=False)
    assert not webhook_receiver.calls, "the webhook was called before the job ended"
    getattr(contract.control, end)(job.id)
    calls = webhook_receiver.wait_for(1)
    assert len(calls) == 1, f"{len(calls)} webhook calls"
    status = contract.client.status(job.id)
    assert calls[0].json == dict(status.raw), "the webhook body is not the status body"
    assert calls[0].headers.get("Content-Type", "").startswith("application/json")
    contract.observe("L19", {"delivered": calls[0].json})


@pytest.mark.ledger("L19")
def test_a_failed_delivery_is_retried(contract, webhook_receiver):
    contract.control.configure(lifecycle="manual", webhook_backoff=0.05, webhook_max_attempts=3)
    webhook_receiver.fail_next = 1
    job = contract.client.submit(as_request(dict(CHEAPEST, webhook=webhook_receiver.url)), validate=False)
    contract.control.complete(job.id)
    calls = webhook_receiver.wait_for(2)
    assert [c.answered for c in calls] == [500, 200], calls
    assert calls[0].json == calls[1].json, "the retry sent another body"
    records = contract.control.webhooks(job.id)
    assert [r["outcome"] for r in records] == ["http_error", "delivered"], records


@pytest.mark.ledger("L31")
def test_each_job_is_called_once_in_the_order_jobs_finish(contract, webhook_receiver):
    contract.control.configure(lifecycle="manual")
    first, second = (contract.client.submit(as_request(dict(CHEAPEST, webhook=webhook_receiver.url, batch_id=b)),
                                            validate=False) for b in ("order-1", "order-2"))
    contract.control.complete(second.id)
    assert [c.json["id"] for c in webhook_receiver.expect(1)] == [second.id]  # finished first, called first
    contract.control.complete(first.id)
    calls = webhook_receiver.expect(2)
    assert [c.json["id"] for c in calls] == [second.id, first.id], webhook_receiver.describe()
    assert len(contract.control.webhooks(first.id)) == len(contract.control.webhooks(second.id)) == 1
    assert len(webhook_receiver.calls) == 2, webhook_receiver.describe()
    contract.observe("L31", {"calls": [c.json["id"] for c in calls]})
