"""Auth contracts: the API-Key header on both endpoints (L03), HTTP 401 (L15), the jobs of
another key (L21), and a key without credits (L29, mock-only). All but L21 send only requests that are
refused, so they are free on live."""

from __future__ import annotations

import json
import uuid

import pytest

from sd35_twin.client import AuthenticationError, NotFoundError

from sd35_twin.contracts.support import CHEAPEST, as_request, expect_rejected

WRONG_KEY = "contracts-wrong-key-000000000000"


def _make_key_matter(contract) -> None:
    """A mock accepts any non-empty key unless told otherwise: tell it which keys are valid. Only a
    mock that accepts any key is told (and the contract's end lifts the restriction again): one with
    keys of its own keeps them, as GET answers them redacted and they could not be put back."""
    if contract.target.has_control and not contract.control.found["api_keys"]:
        keys = [contract.target.api_key] + ([contract.target.other_key] if contract.target.other_key else [])
        contract.control.configure(api_keys=keys)


@pytest.mark.ledger("L03")
def test_submit_without_key_is_refused(contract):
    err = expect_rejected(contract, "L03", dict(CHEAPEST), error_type=AuthenticationError,
                          client=contract.client_for(no_key=True), what="a submit without API-Key")
    assert err.status_code in (401, 403)


@pytest.mark.ledger("L03")
def test_submit_with_wrong_key_is_refused(contract):
    _make_key_matter(contract)
    expect_rejected(contract, "L03", dict(CHEAPEST), error_type=AuthenticationError,
                    client=contract.client_for(WRONG_KEY), what="a submit with an unknown API-Key")


@pytest.mark.ledger("L03")
@pytest.mark.parametrize("key", [None, WRONG_KEY], ids=["no-key", "wrong-key"])
def test_status_needs_a_valid_key(contract, key):
    _make_key_matter(contract)
    api = contract.client_for(no_key=True) if key is None else contract.client_for(key)
    with pytest.raises(AuthenticationError) as caught:
        api.status(str(uuid.uuid4()))
    contract.observe("L03", {"status_endpoint": "no key" if key is None else "wrong key",
                             "http_status": caught.value.status_code})


@pytest.mark.ledger("L03")
def test_api_key_header_is_what_authenticates(contract):
    """With the key in API-Key, an invalid body is refused as invalid (400), not as unauthorised."""
    _make_key_matter(contract)
    err = expect_rejected(contract, "L03", {"prompt": "x"}, what="a valid key with an incomplete body")
    assert err.status_code not in (401, 403), f"the valid key was refused: HTTP {err.status_code}"


@pytest.mark.ledger("L03")
def test_key_in_another_header_is_not_accepted(contract):
    """The key must travel in API-Key; the same key as a bearer token is not a key (raw request)."""
    _make_key_matter(contract)
    resp = contract.http.post(contract.url("/sd3_5/v1"), data=json.dumps(CHEAPEST),
                              headers={"Content-Type": "application/json",
                                       "Authorization": f"Bearer {contract.target.api_key}"},
                              timeout=30, allow_redirects=False)
    contract.observe("L03", {"sent": "key as Authorization: Bearer", "http_status": resp.status_code})
    assert resp.status_code in (401, 403), f"a key outside API-Key was accepted: HTTP {resp.status_code}"


@pytest.mark.ledger("L15")
def test_bad_key_answers_401(contract):
    _make_key_matter(contract)
    err = expect_rejected(contract, "L15", dict(CHEAPEST), error_type=AuthenticationError,
                          client=contract.client_for(WRONG_KEY), what="an unknown API-Key")
    contract.observe("L15", {"bad_key_http_status": err.status_code},
                     profile={"http_status": {"unauthorized": err.status_code}})
    assert err.status_code == 401, f"a bad key answered HTTP {err.status_code}, not 401"


@pytest.mark.ledger("L21")
@pytest.mark.billable(priority=60)
def test_jobs_of_another_key_are_not_visible(contract):
    other = contract.target.other_key
    if not other:
        pytest.skip("needs a second valid key: set $CONTRACTS_OTHER_API_KEY")
    _make_key_matter(contract)
    job = contract.client.submit(as_request(dict(CHEAPEST)), validate=False)
    theirs = contract.client_for(other)
    with pytest.raises(NotFoundError) as foreign:
        theirs.status(job.id)
    with pytest.raises(NotFoundError) as unknown:
        theirs.status(str(uuid.uuid4()))
    contract.observe("L21", {"foreign_job": foreign.value.status_code, "unknown_id": unknown.value.status_code})
    assert foreign.value.status_code == unknown.value.status_code
    # the owner still sees it
    assert contract.client.status(job.id).id == job.id


@pytest.mark.ledger("L29")
@pytest.mark.mock_only
def test_a_key_without_credits_is_refused_with_402_and_nothing_is_created(contract):
    """A submit past the key's balance answers HTTP 402 with a FAILURE body naming API-Key (rule
    ``credits``), and creates no job. The key is given a balance of 0 and lifted again before the contract
    ends; a mock with balances of its own keeps them (GET answers them redacted: they could not be put back)."""
    if contract.control.found.get("credits"):
        pytest.skip("the target has credit balances of its own: they are redacted and could not be put back")
    contract.control.configure(credits={contract.target.api_key: 0})
    try:
        resp = contract.http.post(contract.url("/sd3_5/v1"), data=json.dumps(CHEAPEST),
                                  headers={"Content-Type": "application/json", "API-Key": contract.target.api_key},
                                  timeout=30, allow_redirects=False)
        spent = contract.control.credits()
    finally:
        contract.control.configure(credits={})
    body = resp.json()
    contract.observe("L29", {"sent": "a submit with a key of 0 credits", "http_status": resp.status_code,
                             "body": resp.text[:300]}, profile={"http_status": {"no_credits": resp.status_code}})
    assert resp.status_code == 402, f"a key without credits answered HTTP {resp.status_code}, not 402: {resp.text[:200]}"
    assert body.get("status") == "FAILURE" and isinstance(body.get("error"), str) and body["error"], body
    assert "API-Key" in body["error"] and any(e.get("field") == "API-Key" and e.get("rule") == "credits"
                                              for e in body.get("errors", [])), body
    assert [(a["spent"], a["balance"]) for a in spent] == [(0, 0)], f"the refused submit spent credits: {spent}"


@pytest.mark.ledger("L30")
@pytest.mark.mock_only
def test_a_key_over_its_rate_limit_is_refused_with_429_and_retry_after(contract):
    """With a limit of one request per minute, a status read fills the key's window and the next submit
    answers 429 with a Retry-After of at most 60 s and a FAILURE body naming API-Key (rule ``rate_limit``),
    creating no job. The limit is lifted again before the contract ends; a mock with limits of its own is
    left alone."""
    found = contract.control.found["profile"].get("rate_limits") or {}
    if any(value is not None for value in found.values()):
        pytest.skip("the target has rate limits of its own")
    batch = f"contracts-rate-limit-{uuid.uuid4()}"
    headers = {"Content-Type": "application/json", "API-Key": contract.target.api_key}
    contract.control.configure(profile={"rate_limits": {"requests_per_minute": 1, "max_pending": None}})
    try:
        first = contract.http.get(contract.url(f"/sd3_5/v1/status/{uuid.uuid4()}"), headers=headers, timeout=30,
                                  allow_redirects=False)
        resp = contract.http.post(contract.url("/sd3_5/v1"), data=json.dumps(dict(CHEAPEST, batch_id=batch)),
                                  headers=headers, timeout=30, allow_redirects=False)
        created = contract.control.jobs(batch_id=batch)
    finally:
        contract.control.configure(profile={"rate_limits": {"requests_per_minute": None, "max_pending": None}})
    body = resp.json()
    contract.observe("L30", {"sent": "a status read, then a submit, at 1 request per minute",
                             "http_status": resp.status_code, "retry_after": resp.headers.get("Retry-After"),
                             "body": resp.text[:300]}, profile={"http_status": {"rate_limited": resp.status_code}})
    assert first.status_code == 404, f"the first request was not counted as a status read: HTTP {first.status_code}"
    assert resp.status_code == 429, f"a key over its rate limit answered HTTP {resp.status_code}: {resp.text[:200]}"
    assert resp.headers.get("Retry-After", "").isdigit() and 1 <= int(resp.headers["Retry-After"]) <= 60, resp.headers
    assert body.get("status") == "FAILURE" and "API-Key" in body.get("error", ""), body
    assert any(e.get("field") == "API-Key" and e.get("rule") == "rate_limit" for e in body.get("errors", [])), body
    assert created == [], f"the refused submit created a job: {created}"
