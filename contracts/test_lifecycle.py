"""Lifecycle contracts.

Live-safe ones read the shared basic job (the cheapest valid request, created once per run and
walked to its end): submit (L01), status (L02), guidance 0.0 (L06), default size (L07), POST outcome
(L11), PENDING body (L12), SUCCESS body (L13), HTTP 200 (L15), images (L27), final states (L28).
Mock-only ones drive the lifecycle through the control plane: immediate SUCCESS (L11), a job held
PENDING (L12), a forced FAILURE (L14, L24), final states (L28), URL expiry (L22). HTTP 404 (L15) is free.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest

from sd35_twin.client import JobFailedError, NotFoundError

from sd35_twin.contracts.support import CHEAPEST, SUBMIT_PATH, as_request, describe
from sd35_twin.mockserver.evidence import Exchange, status_kind

shared_basic = pytest.mark.billable(shared="basic", priority=0)


def _jsonish(step) -> bool:
    return bool(step.content_type) and "application/json" in step.content_type


# -- on the shared basic job (live-safe) ---------------------------------------------------------


@pytest.mark.ledger("L01")
@shared_basic
def test_submit_creates_a_job(contract, basic_job):
    step = basic_job.submit
    assert step is not None and step.error is None, f"the submit failed: {basic_job.error}"
    contract.observe("L01", {"http_status": step.http_status, "content_type": step.content_type,
                             "body": step.body})
    assert urlsplit(step.url).path.endswith(SUBMIT_PATH)
    assert step.http_status is not None and 200 <= step.http_status < 300, basic_job.error
    assert _jsonish(step), f"the answer is {step.content_type}, not JSON"
    assert basic_job.first is not None and basic_job.first.id, f"no job id: {step.body}"


@pytest.mark.ledger("L02")
@shared_basic
def test_status_endpoint_answers_for_the_job(contract, basic_job):
    basic_job.require_final()
    reads = basic_job.polls + basic_job.after
    assert reads, "the status endpoint was never read"
    for step, status in reads:
        assert urlsplit(step.url).path.endswith(f"/sd3_5/v1/status/{basic_job.first.id}"), step.url
        assert 200 <= (step.http_status or 0) < 300 and _jsonish(step), f"HTTP {step.http_status} {step.body}"
        assert status.id == basic_job.first.id
    contract.observe("L02", {"reads": len(reads), "statuses": [s.status.value for _, s in reads]})


@pytest.mark.ledger("L06")
@shared_basic
def test_guidance_scale_zero_is_valid(contract, basic_job):
    assert basic_job.request["guidance_scale"] == 0.0
    assert basic_job.first is not None, f"guidance_scale 0.0 was refused: {basic_job.error}"
    contract.observe("L06", {"guidance_scale": 0.0, "status": basic_job.first.status.value})


@pytest.mark.ledger("L07")
@shared_basic
def test_width_and_height_default_to_1024(contract, basic_job):
    basic_job.require_success()
    assert "width" not in basic_job.request and "height" not in basic_job.request
    sizes = [d.image[1] if d.image else None for d in basic_job.downloads]
    contract.observe("L07", {"image_sizes": sizes})
    assert sizes and all(size == (1024, 1024) for size in sizes), f"images are {sizes}, not 1024x1024"


@pytest.mark.ledger("L11")
@shared_basic
def test_the_post_answers_pending_or_success_with_an_id(contract, basic_job):
    first = basic_job.first
    assert first is not None, basic_job.error
    contract.observe("L11", {"post_status": first.status.value, "body": dict(first.raw)})
    assert first.status.value in ("PENDING", "SUCCESS"), describe(first, basic_job.submit.http_status)
    assert isinstance(first.raw.get("id"), (str, int)) and str(first.raw["id"]), f"no id: {dict(first.raw)}"
    if first.is_success:
        assert first.download_urls, "SUCCESS without download_urls"


@pytest.mark.ledger("L12")
@shared_basic
def test_a_pending_body_is_status_and_id(contract, basic_job):
    pending = [(step, s) for step, s in basic_job.answers if s.is_pending]
    if not pending:
        pytest.skip("the target never answered PENDING for this job (it was done at once)")
    for step, status in pending:
        raw = dict(status.raw)
        contract.observe("L12", {"body": raw})
        assert raw.get("status") == "PENDING"
        assert isinstance(raw.get("id"), (str, int)) and str(raw["id"]) == basic_job.first.id, raw
        assert "error" not in raw, f"a PENDING body carries an error: {raw}"
        assert "download_urls" not in raw, f"PENDING carries download_urls without queued_image_urls: {raw}"


@pytest.mark.ledger("L13")
@shared_basic
def test_a_success_body_has_one_download_url_per_sample(contract, basic_job):
    final = basic_job.require_success()
    raw = dict(final.raw)
    contract.observe("L13", {"body": raw})
    assert raw.get("status") == "SUCCESS"
    assert str(raw.get("id")) == basic_job.first.id, raw
    urls = raw.get("download_urls")
    assert isinstance(urls, list) and len(urls) == basic_job.request["samples"], raw
    assert all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls), urls


@pytest.mark.ledger("L15")
@shared_basic
def test_pending_and_success_answer_200(contract, basic_job):
    basic_job.require_success()
    codes: dict[str, set[int]] = {}
    for step, status in basic_job.answers:
        codes.setdefault(status.status.value, set()).add(step.http_status)
    seen = {k: sorted(v) for k, v in codes.items()}
    # the profile names the submit's PENDING apart from a poll's: one hint per answer that was seen, each answer
    # read as the shadow proxy reads it (sd35_twin.mockserver.evidence)
    kinds: dict[str, set[int]] = {}
    for step, status in basic_job.answers:
        kind = status_kind(Exchange("submit" if step is basic_job.submit else "status", step.http_status,
                                    body=dict(status.raw)), known_job=True)
        if kind in ("submit_pending", "poll_pending", "success", "job_failure"):
            kinds.setdefault(kind, set()).add(step.http_status)
    hint = {"http_status": {k: min(v) for k, v in kinds.items() if len(v) == 1}}
    contract.observe("L15", {"job_http_status": seen}, profile=hint)
    for state, values in seen.items():
        assert values == [200], f"{state} answered HTTP {values}, not 200"


@pytest.mark.ledger("L27")
@shared_basic
def test_download_urls_serve_the_images_without_a_key(contract, basic_job):
    final = basic_job.require_success()
    assert len(basic_job.downloads) == len(final.download_urls) == basic_job.request["samples"]
    for step in basic_job.downloads:
        contract.observe("L27", {"url_status": step.http_status, "content_type": step.content_type,
                                 "image": step.image})
        assert step.error is None, f"{step.url}: {step.error}"
        assert step.image is not None, f"{step.url} is not an image ({step.content_type})"
        assert step.image[1] == (1024, 1024), f"{step.url} is {step.image[1]}, not 1024x1024"


@pytest.mark.ledger("L28")
@shared_basic
def test_a_final_state_does_not_change(contract, basic_job):
    final = basic_job.require_final()
    assert basic_job.after, "the job was not read again after its end"
    for step, again in basic_job.after:
        contract.observe("L28", {"final": final.status.value, "again": again.status.value})
        assert again.status == final.status, f"{final.status.value} became {again.status.value}"
        assert again.download_urls == final.download_urls, "the download URLs changed after the end"


# -- free ----------------------------------------------------------------------------------------


@pytest.mark.ledger("L01")
def test_the_submit_endpoint_takes_a_json_body(contract):
    """POST /sd3_5/v1 is there and reads JSON: an incomplete JSON body is refused as invalid (not
    as an unknown route or method), with a JSON answer."""
    from sd35_twin.contracts.support import expect_rejected

    err = expect_rejected(contract, "L01", {"prompt": "only a prompt"}, fields=("negative_prompt",))
    ex = contract.last("POST", SUBMIT_PATH)
    assert err.status_code not in (404, 405), f"POST {SUBMIT_PATH} answered HTTP {err.status_code}"
    assert "application/json" in ex.response.headers.get("Content-Type", ""), ex.response.headers


@pytest.mark.ledger("L02")
def test_the_status_endpoint_answers_json_for_an_unknown_id(contract):
    job_id = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as caught:
        contract.client.status(job_id)
    ex = contract.last("GET", f"/sd3_5/v1/status/{job_id}")
    contract.observe("L02", {"http_status": caught.value.status_code, "body": caught.value.body})
    assert ex is not None and "application/json" in ex.response.headers.get("Content-Type", "")
    assert isinstance(caught.value.body, dict) and isinstance(caught.value.body.get("error"), str), caught.value.body


@pytest.mark.ledger("L15")
def test_an_unknown_id_answers_404(contract):
    with pytest.raises(NotFoundError) as caught:
        contract.client.status(str(uuid.uuid4()))
    code = caught.value.status_code
    contract.observe("L15", {"unknown_id_http_status": code}, profile={"http_status": {"not_found": code}})
    assert code == 404


# -- mock-only: the lifecycle under control ------------------------------------------------------


@pytest.mark.ledger("L11")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
def test_the_post_answers_success_when_the_job_is_already_done(contract):
    contract.control.configure(lifecycle="immediate")
    first = contract.client.submit(as_request(dict(CHEAPEST, samples=2)), validate=False)
    raw = dict(first.raw)
    assert raw["status"] == "SUCCESS" and raw.get("id"), raw
    assert len(raw.get("download_urls", [])) == 2, raw


@pytest.mark.ledger("L12")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
def test_a_job_stays_pending_until_done(contract):
    contract.control.configure(lifecycle="manual")
    first = contract.client.submit(as_request(dict(CHEAPEST)), validate=False)
    assert dict(first.raw) == {"status": "PENDING", "id": first.id}
    for _ in range(3):
        assert dict(contract.client.status(first.id).raw) == {"status": "PENDING", "id": first.id}
    contract.control.complete(first.id)
    assert contract.client.status(first.id).is_success


@pytest.mark.ledger("L14")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
def test_a_failed_job_answers_failure_with_an_error_message(contract):
    contract.control.configure(lifecycle="manual")
    first = contract.client.submit(as_request(dict(CHEAPEST)), validate=False)
    contract.control.fail(first.id, "the GPU caught fire (contract check)")
    status = contract.client.status(first.id)
    raw = dict(status.raw)
    assert raw["status"] == "FAILURE" and raw["error"] == "the GPU caught fire (contract check)", raw
    assert "download_urls" not in raw, raw
    assert set(raw) <= {"status", "error", "id"}, f"a FAILURE carries more than an error message: {raw}"
    with pytest.raises(JobFailedError) as caught:
        contract.client.wait(first.id, timeout=5)
    assert caught.value.error == "the GPU caught fire (contract check)"


@pytest.mark.ledger("L14")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
def test_a_failure_from_the_failure_rate_has_the_same_shape(contract):
    contract.control.configure(failure_rate=1.0, lifecycle="polls", pending_polls=1)
    first = contract.client.submit(as_request(dict(CHEAPEST)), validate=False)
    with pytest.raises(JobFailedError) as caught:
        contract.client.wait(first.id, timeout=5)
    raw = dict(caught.value.status.raw)
    assert raw["status"] == "FAILURE" and isinstance(raw["error"], str) and raw["error"], raw


@pytest.mark.ledger("L24")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
def test_a_failed_job_keeps_its_id(contract):
    contract.control.configure(lifecycle="manual")
    first = contract.client.submit(as_request(dict(CHEAPEST)), validate=False)
    contract.control.fail(first.id)
    contract.client.status(first.id)
    ex = contract.last("GET", f"/status/{first.id}")
    body = ex.response.json()
    contract.observe("L24", {"body": body}, profile={"job_failure_includes_id": "id" in body})
    assert body.get("id") == first.id, f"the FAILURE body has no id: {body}"


@pytest.mark.ledger("L28")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
@pytest.mark.parametrize("first_end, then", [("complete", "fail"), ("fail", "complete")])
def test_a_final_state_cannot_be_changed(contract, first_end, then):
    contract.control.configure(lifecycle="manual")
    job = contract.client.submit(as_request(dict(CHEAPEST)), validate=False)
    assert contract.control.request("POST", f"/jobs/{job.id}/{first_end}").status_code == 200
    before = dict(contract.client.status(job.id).raw)
    resp = contract.control.request("POST", f"/jobs/{job.id}/{then}")
    assert resp.status_code == 409, f"changing a {before['status']} job answered HTTP {resp.status_code}"
    assert dict(contract.client.status(job.id).raw) == before


@pytest.mark.ledger("L28")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
def test_the_status_endpoint_answers_for_every_id_the_post_returned(contract):
    contract.control.configure(lifecycle="manual")
    ids = [contract.client.submit(as_request(dict(CHEAPEST)), validate=False).id for _ in range(5)]
    assert len(set(ids)) == 5, f"ids repeat: {ids}"
    for job_id in ids:
        assert contract.client.status(job_id).id == job_id


@pytest.mark.ledger("L22")
@pytest.mark.billable(priority=90)
@pytest.mark.mock_only
def test_download_urls_expire_24_hours_after_the_job_is_done(contract, tmp_path):
    contract.control.configure(lifecycle="immediate")
    done = contract.client.submit(as_request(dict(CHEAPEST, width=256, height=256)), validate=False)
    contract.control.advance(86_400 - 60)
    assert contract.client.download(done, tmp_path / "before"), "the URL expired before 24 h"
    contract.control.advance(120)
    with pytest.raises(NotFoundError) as caught:
        contract.client.download(done, tmp_path / "after")
    contract.observe("L22", {"after_24h_http_status": caught.value.status_code})
