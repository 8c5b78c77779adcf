"""Contracts that a valid request at an edge of the documented (or assumed) ranges is accepted.
Each creates one job (billable) with the cheapest request changed in one place: guidance_scale 20
(L06), the extreme sizes 256 x 1536 (L08), one inference step (L09), an unknown field (L20), a JSON body sent
without a Content-Type (L32)."""

from __future__ import annotations

import json

import pytest

from sd35_twin.contracts.support import body, submit_accepted


@pytest.mark.ledger("L20")
@pytest.mark.billable(priority=2)
def test_unknown_fields_are_ignored(contract):
    submit_accepted(contract, "L20", body(contracts_unknown_field="ignore me", another_unknown={"nested": [1, 2]}))


@pytest.mark.ledger("L09")
@pytest.mark.billable(priority=3)
def test_one_inference_step_is_valid(contract):
    submit_accepted(contract, "L09", body(num_inference_steps=1))


@pytest.mark.ledger("L06")
@pytest.mark.billable(priority=4)
def test_guidance_scale_20_is_valid(contract):
    submit_accepted(contract, "L06", body(guidance_scale=20))


@pytest.mark.ledger("L08")
@pytest.mark.billable(priority=5)
def test_the_extreme_sizes_256_by_1536_are_valid(contract):
    submit_accepted(contract, "L08", body(width=256, height=1536))


@pytest.mark.ledger("L32")
@pytest.mark.billable(priority=6)
def test_a_json_body_sent_without_a_content_type_is_read(contract):
    """What ``requests.post(url, data=json.dumps(body))`` sends: the JSON, and no Content-Type header."""
    resp = contract.post_raw(json.dumps(body()), content_type=None)
    contract.observe("L32", {"content_type": None, "http_status": resp.status_code, "body": resp.text[:200]})
    assert 200 <= resp.status_code < 300, f"a JSON body without Content-Type answered HTTP {resp.status_code}: " \
                                          f"{resp.text[:200]}"
    data = resp.json()
    assert data.get("status") in ("PENDING", "SUCCESS") and data.get("id"), f"the job was not created: {data!r}"
