"""``mockserver.evidence``: how an exchange is read for the ledger's rows (the proxy's, the contracts' recording's
and ``drift``'s one definition), without HTTP."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sd35_twin.contracts.report import load_ledger
from sd35_twin.mockserver.evidence import ROWS, Evidence, Exchange, classify_failure, exchange_from_entry

BASE = {"prompt": "p", "negative_prompt": "", "num_inference_steps": 1, "samples": 1, "guidance_scale": 0}


def submit(status, body, request=None, **kw):
    return Exchange("submit", status, request=dict(BASE, **(request or {})), body=body, **kw)


def test_every_row_the_evidence_reads_is_a_ledger_row():
    assert set(ROWS) <= {row["id"] for row in load_ledger()}


def test_a_pending_submit_answered_202_drifts_l15_with_the_issue_s_wording():
    ev = Evidence()
    readings = ev.read(submit(202, {"status": "PENDING", "id": "j"}))
    (l15,) = [r for r in readings if r.row == "L15"]
    assert not l15.held and l15.text == "L15: submit_pending answered HTTP 202, the profile assumes 200"
    assert ev.learned() == {"http_status": {"submit_pending": 202}}


def test_a_job_s_rows_are_read_across_its_exchanges():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, {"batch_id": "b"}, who="w"))
    ev.read(Exchange("status", 200, body={"status": "PENDING", "id": "j", "batch_id": "b"}, job_id="j", who="w"))
    ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "j", "download_urls": ["u1"]}, job_id="j", who="w"))
    ev.read(Exchange("status", 200, body={"status": "PENDING", "id": "j"}, job_id="j", who="w"))   # a final state moved
    rows = {r["id"]: r for r in ev.rows()}
    assert rows["L18"]["result"] == "drifted" and ev.learned(["L18"]) == {"echo_batch_id": False}
    assert rows["L28"]["result"] == "drifted" and rows["L13"]["result"] == "held"
    assert ev.summary()["jobs"]["median_polls_to_end"] == 2
    assert ev.job_of_url("u1") == "j"


def test_bounds_are_learned_from_accepted_and_refused_numbers():
    ev = Evidence()
    for side in (960, 1024):
        ev.read(submit(200, {"status": "PENDING", "id": f"j{side}"}, {"width": side, "height": side}))
    ev.read(submit(400, {"status": "FAILURE", "error": "width: not allowed"}, {"width": 992}))   # no rule named
    for samples in (3, 4):
        ev.read(submit(200, {"status": "PENDING", "id": f"s{samples}"}, {"samples": samples}))
    ev.read(submit(400, {"status": "FAILURE", "error": "samples: too many"}, {"samples": 5}))
    assert ev.learned() == {"limits": {"width": {"multiple_of": 64}, "samples": {"max": 4}}}


def test_refusals_are_told_apart_by_rule_or_words():
    def kind(status, body, **kw):
        return classify_failure(Exchange(kw.pop("kind", "submit"), status, body=body, request=dict(BASE), **kw))

    assert kind(429, {"error": "slow down"}, headers={"retry-after": "5"}) == "rate_limited"
    assert kind(403, {"message": "Not enough credits"}) == "no_credits"
    assert kind(403, {"detail": "Invalid API key"}) == "unauthorized"
    assert kind(404, {"error": "no job"}, kind="status") == "not_found"
    assert kind(422, {"detail": [{"loc": ["body", "samples"]}]}) == "invalid"
    assert kind(400, {"error": "too large"}, request_bytes=2_000_000) == "body_too_large"


def test_bounded_however_many_jobs_it_sees():
    ev = Evidence(max_jobs=10)
    for i in range(500):
        ev.read(submit(200, {"status": "SUCCESS", "id": f"j{i}", "download_urls": [f"u{i}"]}))
    assert ev.summary()["jobs"]["tracked"] == 10
    assert len(ev._url_jobs) <= 40
    assert all(len(r.get("seen", [])) <= 3 for r in ev.rows())


def test_a_recorded_entry_is_read_as_the_proxy_reads_it():
    ev = Evidence()
    entry = {"request": {"method": "GET", "path": "/sd3_5/v1/status/a%20b"},
             "response": {"status": 404, "headers": {"Content-Type": "application/json"},
                          "body": {"status": "FAILURE", "error": "id: no job"}}}
    ex = exchange_from_entry(entry, ev)
    assert ex.kind == "status" and ex.job_id == "a b"
    assert exchange_from_entry({**entry, "error": "upstream: timeout"}, ev) is None
    assert exchange_from_entry({"request": {"method": "GET", "url": "http://h/__mock__/jobs"},
                                "response": {"status": 200, "body": []}}, ev) is None


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["submit", "status", "download"]), status=st.integers(100, 599), body=json_values,
       request=json_values, headers=st.dictionaries(st.sampled_from(["retry-after", "content-type", "x"]),
                                                    st.text(max_size=10)),
       image=st.none() | st.fixed_dictionaries({"type": st.text(max_size=5), "width": st.integers(0, 5000) | st.none(),
                                               "height": st.integers(0, 5000), "decodable": st.booleans()}))
def test_any_answer_is_read_without_an_error(kind, status, body, request, headers, image):
    """Whatever an upstream answers, reading it never raises, and the report is JSON."""
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j", "download_urls": ["u"]}, {"batch_id": "b"}))
    ev.read(Exchange(kind, status, request=request, body=body, headers=headers, job_id="j", url="u", image=image))
    ev.read(Exchange("submit", status, request=request, body=body, headers=headers))
    json.dumps(ev.summary())
    json.dumps(ev.contracts_report({"kind": "proxy"}))
    json.dumps(ev.learned())


def test_a_url_that_served_and_later_is_refused_reads_as_expired_with_its_seen_lifetime():
    ev = Evidence()
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]}, at=100.0))
    image = {"type": "jpeg", "width": 1024, "height": 1024, "decodable": True}
    ev.read(Exchange("download", 200, headers={"content-type": "image/jpeg"}, job_id="j", url="u", image=image,
                     at=160.0))
    (expired,) = ev.read(Exchange("download", 410, body={"error": "gone"}, job_id="j", url="u", at=3700.0))
    assert (expired.row, expired.held) == ("L22", False)
    assert expired.value == {"http_status": 410, "lifetime_s_between": [60.0, 3600.0]}
    assert ev.learned() == {"http_status": {"image_expired": 410}}


def test_a_refusal_answered_200_drifts_l15_and_a_server_error_says_nothing():
    ev = Evidence()
    readings = ev.read(submit(200, {"status": "FAILURE", "error": "samples must be at most 2"}, {"samples": 3}))
    assert [r.text for r in readings if r.row == "L15"] == ["L15: invalid answered HTTP 200, the profile assumes 400"]
    assert ev.learned(["L15"]) == {"http_status": {"invalid": 200}}
    other = Evidence()
    assert [r for r in other.read(submit(500, {"status": "FAILURE", "error": "prompt service down"})) if r.row == "L15"] == []


def test_a_submit_typed_other_than_json_reads_l32_accepted_or_refused():
    held = Evidence()
    (reading,) = [r for r in held.read(submit(200, {"status": "PENDING", "id": "j"}, request_type="")) if r.row == "L32"]
    assert reading.held and reading.text == "L32: a submit with no Content-Type: refused = false"
    refused = Evidence()
    readings = refused.read(submit(400, {"status": "FAILURE", "error": "Content-Type: must be application/json"},
                                   request_type="text/plain"))
    assert sorted((r.row, r.held) for r in readings if r.row == "L32") == [("L32", False), ("L32", False)]
    assert refused.learned() == {"require_json_content_type": True, "http_status": {"unsupported_media_type": 400}}
    typed = Evidence()   # sent as JSON, or not recorded: nothing to say of L32
    assert not [r for r in typed.read(submit(200, {"status": "PENDING", "id": "j"}, request_type="application/json"))
                + typed.read(submit(200, {"status": "PENDING", "id": "k"})) if r.row == "L32"]


def test_a_recorded_submit_keeps_the_type_it_was_sent_with():
    entry = {"request": {"method": "POST", "path": "/sd3_5/v1", "headers": {"content-type": "Text/Plain; charset=x"},
                         "body": BASE},
             "response": {"status": 200, "headers": {}, "body": {"status": "PENDING", "id": "j"}}}
    assert exchange_from_entry(entry, Evidence()).request_type == "text/plain"
    del entry["request"]["headers"]
    assert exchange_from_entry(entry, Evidence()).request_type is None
