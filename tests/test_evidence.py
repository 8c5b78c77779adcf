"""``mockserver.evidence``: how an exchange is read for the ledger's rows (the proxy's, the contracts' recording's
and ``drift``'s one definition), without HTTP."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import astuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sd35_twin.contracts.report import load_ledger
from sd35_twin.mockserver.evidence import (
    MAX_TEXT,
    REDACTED,
    ROWS,
    Evidence,
    Exchange,
    Reading,
    Redactor,
    classify_failure,
    exchange_from_entry,
    format_rows,
    key_fingerprint,
    load_default_profile,
    status_kind,
    summarise_body,
)

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


# --- keys, redaction, bodies: what a recording keeps ------------------------------------------------------------

def test_a_key_fingerprint_is_a_short_stable_hash_and_no_key_has_none():
    assert key_fingerprint(None) == key_fingerprint("") == ""
    assert key_fingerprint("k-1") == hashlib.sha256(b"k-1").hexdigest()[:16] != key_fingerprint("k-2")
    # a header's lone surrogate never raises: it is hashed as "?"
    assert key_fingerprint("k\udc80") == hashlib.sha256(b"k?").hexdigest()[:16]


def test_the_redactor_removes_a_longer_key_whole_before_a_key_it_contains():
    assert Redactor().text("nothing to hide") == "nothing to hide"
    assert Redactor(["zz", "azzz"]).text("azzz and zz") == f"{REDACTED} and {REDACTED}"


def test_the_redactor_forgets_the_least_recently_added_key_past_its_bound():
    r = Redactor(["a-key", "b-key"], max_secrets=2)
    r.add("a-key")            # seen again: now the newest
    r.add("c-key")
    assert r.text("a-key b-key c-key") == f"{REDACTED} b-key {REDACTED}"
    r.add(None)
    r.add("")
    assert r.text("a-key b-key c-key") == f"{REDACTED} b-key {REDACTED}"


def test_the_redactor_remembers_1024_keys_by_default():
    r = Redactor(f"key-{n:04d}" for n in range(1025))
    assert (r.text("key-0000"), r.text("key-0001"), r.text("key-1024")) == ("key-0000", REDACTED, REDACTED)


def test_header_values_are_text_and_secret_headers_are_redacted_whatever_their_value():
    r = Redactor(["k-1"])
    assert r.headers({"X-Raw": b"caf\xe9", "X-Num": 5, "Cookie": "a=b", "X-Echo": "k-1!"}) == {
        "X-Raw": "café", "X-Num": "5", "Cookie": REDACTED, "X-Echo": f"{REDACTED}!"}
    assert r.headers(None) == {}
    assert r.value([1, None, True, {"k-1": 2.5}]) == [1, None, True, {REDACTED: 2.5}]


def test_an_empty_body_is_none_and_json_is_kept_parsed_and_redacted():
    r = Redactor(["k-1"])
    assert [summarise_body(raw, "application/json", r) for raw in (None, b"", "")] == [None, None, None]
    assert summarise_body(b'{"key": "k-1", "n": [1, 2]}', "application/json", r) == {"key": REDACTED, "n": [1, 2]}
    assert summarise_body('"k-1 \udc80"', "application/json", r) == f"{REDACTED} ?"   # a str body, surrogate replaced


def test_a_body_that_is_not_json_is_kept_as_redacted_text():
    r = Redactor(["k-1"])
    assert summarise_body(b"k-1 is \xff", "text/plain", r) == f"{REDACTED} is \ufffd"
    assert summarise_body(b'{"a": "\x00"}', "application/json", r) == '{"a": "\x00"}'   # JSON typed: never binary
    assert summarise_body(b"[" * 5_000, "application/json", r) == "[" * 5_000           # too deep to parse: text
    nul_late = b"a" * 512 + b"\x00"                                                     # past the first 512 bytes
    assert summarise_body(nul_late, "text/plain", r) == nul_late.decode()


def test_images_and_binary_bodies_are_summarised_never_kept():
    r = Redactor()
    gif = b"GIF89a-no-nul"
    assert summarise_body(gif, "Image/GIF; q=1", r) == {"_binary": "image/gif", "bytes": len(gif),
                                                        "sha256": hashlib.sha256(gif).hexdigest()}
    blob = b"ab\x00cd"
    assert summarise_body(blob, "", r) == {"_binary": "application/octet-stream", "bytes": 5,
                                           "sha256": hashlib.sha256(blob).hexdigest()}
    assert summarise_body(blob, "text/plain", r)["_binary"] == "text/plain"


def test_a_body_past_max_text_is_clipped_and_says_its_length():
    r = Redactor(["k-1"])
    assert summarise_body(b"x" * MAX_TEXT, "text/plain", r) == "x" * MAX_TEXT
    long = "k-1" + "x" * MAX_TEXT
    assert summarise_body(long.encode(), "text/plain", r) == {"_text": REDACTED + "x" * (MAX_TEXT - 3),
                                                             "truncated_from": MAX_TEXT + 3}


# --- a recorded line as an exchange ---------------------------------------------------------------------------

PENDING = {"status": "PENDING", "id": "j"}


def entry(method, url, status, body=None, *, sent=None, **kw):
    req = {"method": method, "url": url, **({"body": sent} if sent is not None else {})}
    req.update(kw.pop("request", {}))
    return {"at": 12.5, "request": req, "response": {"status": status, "headers": kw.pop("headers", {}), "body": body,
                                                     **kw}}


def test_a_recorded_submit_is_read_whole():
    line = entry("POST", "https://api.test/sd3_5/v1?x=1", 200, PENDING, sent=BASE, headers={"Content-Type": "a/b",
                 "X-Req": "r"}, request={"headers": {"CONTENT-TYPE": "Application/JSON; charset=utf-8"}, "bytes": 321})
    assert exchange_from_entry(line, Evidence(), who="w") == Exchange(
        "submit", 200, request=BASE, request_bytes=321, body=PENDING, headers={"content-type": "a/b", "x-req": "r"},
        who="w", at=12.5, request_type="application/json")
    line["request"].update(headers={"X-Other": "1"}, bytes="many")        # no Content-Type sent; size from the body
    assert exchange_from_entry(line, Evidence()) == Exchange(
        "submit", 200, request=BASE, request_bytes=len(json.dumps(BASE)), body=PENDING,
        headers={"content-type": "a/b", "x-req": "r"}, at=12.5, request_type="")


def test_a_recorded_submit_whose_bodies_were_summarised_keeps_only_their_size():
    clipped = {"_text": "x" * 10, "truncated_from": 2_000_000}
    binary = {"_binary": "application/octet-stream", "bytes": 5, "sha256": "0" * 64}
    for sent, size in ((clipped, 2_000_000), (binary, 0)):
        ex = exchange_from_entry(entry("POST", "/sd3_5/v1", 413, binary, sent=sent), Evidence())
        assert (ex.kind, ex.request, ex.request_bytes, ex.body) == ("submit", None, size, None)
    ex = exchange_from_entry(entry("POST", "/sd3_5/v1", 400, "Bad Request"), Evidence())
    assert (ex.request, ex.request_bytes, ex.body, ex.request_type) == (None, 0, None, None)
    ex = exchange_from_entry(entry("POST", "/sd3_5/v1", 400, [{"loc": "x"}], sent=["not", "a", "mapping"]), Evidence())
    assert (ex.request, ex.request_bytes, ex.body) == (None, len('["not", "a", "mapping"]'), [{"loc": "x"}])


def test_a_recorded_line_without_a_time_is_read_as_now():
    line = entry("GET", "/sd3_5/v1/status/j", 200, PENDING)
    for at in (None, "yesterday"):
        line["at"] = at
        before = time.time()
        assert before <= exchange_from_entry(line, Evidence()).at <= time.time()


def test_a_recorded_status_read_is_read_whole():
    line = entry("GET", "https://api.test/sd3_5/v1/status/a%2Fb", 404, {"error": "no job"}, headers={"X-A": "1"})
    assert exchange_from_entry(line, Evidence(), who="w") == Exchange(
        "status", 404, body={"error": "no job"}, headers={"x-a": "1"}, job_id="a/b", who="w", at=12.5)


def test_a_recorded_download_is_read_whole_with_its_job_known_by_its_url():
    ev = Evidence()
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["https://img.test/u1"]}))
    image = {"type": "jpeg", "width": 8, "height": 8, "decodable": True}
    served = entry("GET", "https://img.test/u1", 200, {"_binary": "image/jpeg"}, headers={"Content-Type": "image/jpeg"},
                   image=image)
    assert exchange_from_entry(served, ev, who="w") == Exchange(
        "download", 200, headers={"content-type": "image/jpeg"}, job_id="j", url="https://img.test/u1", image=image,
        who="w", at=12.5)
    gone = entry("GET", "https://img.test/u1", 404, {"error": "expired"})
    assert exchange_from_entry(gone, ev).body == {"error": "expired"}
    for status in (200, 299):     # a 2xx download's body is the image, never an answer to read
        assert exchange_from_entry(entry("GET", "https://img.test/u1", status, {"a": 1}), ev).body is None
    assert exchange_from_entry(entry("GET", "https://img.test/u1", 300, {"a": 1}), ev).body == {"a": 1}
    # the contracts' recorder names a download by kind, known URL or not
    unknown = {**entry("GET", "https://img.test/other", 200), "kind": "download"}
    assert exchange_from_entry(unknown, ev) == Exchange("download", 200, url="https://img.test/other", at=12.5)


def test_only_an_api_call_is_an_exchange():
    ev = Evidence()
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["https://img.test/u1"]}))
    assert exchange_from_entry(entry("POST", "https://img.test/u1", 200), ev) is None      # a URL is only downloaded
    assert exchange_from_entry(entry("GET", "/sd3_5/v1", 405), ev) is None                  # a submit is a POST
    assert exchange_from_entry(entry("POST", "/sd3_5/v1/status/j", 405), ev) is None        # a status read a GET
    assert exchange_from_entry(entry("GET", "/sd3_5/v1", "200"), ev) is None                # no status code
    assert exchange_from_entry({"request": "GET /", "response": {"status": 200}}, ev) is None


# --- an exchange's readings, whole ----------------------------------------------------------------------------

def said(readings) -> list[tuple]:
    return [astuple(r) for r in readings]


ACCEPTED_NUMBERS = [("L05", True, "L05: samples=1 accepted", None, {"samples": 1, "accepted": True}),
                    ("L09", True, "L09: num_inference_steps=1 accepted", None,
                     {"num_inference_steps": 1, "accepted": True}),
                    ("L06", True, "L06: guidance_scale=0 accepted", None, {"guidance_scale": 0, "accepted": True})]


def test_an_accepted_submit_and_its_job_s_answers_are_read_row_by_row():
    ev = Evidence()
    readings = ev.read(submit(200, {"status": "PENDING", "id": "j", "batch_id": "b"},
                              {"foo": 1, "batch_id": "b", "direct_link": True}, who="w", at=100.0))
    assert said(readings) == [
        ("L15", True, "L15: submit_pending answered HTTP 200", {"http_status": {"submit_pending": 200}}, 200),
        *ACCEPTED_NUMBERS,
        ("L20", True, "L20: a submit with unknown field(s) ['foo']: refused = false", {"reject_unknown_fields": False},
         False),
        ("L11", True, "L11: a submit answered PENDING", None, "PENDING"),
        ("L12", True, "L12: a PENDING body carries its id", None, ["batch_id", "id", "status"]),
        ("L18", True, "L18: batch_id echoed: true", {"echo_batch_id": True}, True)]
    success = {"status": "SUCCESS", "id": "j", "download_urls": ["u1", "u2", 3]}
    assert said(ev.read(Exchange("status", 200, body=success, job_id="j", who="w", at=130.1234))) == [
        ("L15", True, "L15: success answered HTTP 200", {"http_status": {"success": 200}}, 200),
        ("L13", False, "L13: SUCCESS carries 3 download_urls for samples=1", None, {"download_urls": 3, "samples": 1}),
        ("L18", False, "L18: batch_id echoed: false, the profile assumes true", {"echo_batch_id": False}, False)]
    assert said(ev.read(Exchange("status", 200, body=success, job_id="j", who="w", at=140.0)))[1] == (
        "L28", True, "L28: a SUCCESS job stays SUCCESS", None, {"state": "SUCCESS"})
    assert (ev.job_of_url("u1"), ev.job_of_url("u2"), ev.job_of_url("3")) == ("j", "j", None)
    assert ev.summary()["jobs"] == {"tracked": 1, "ended": 1, "median_seconds_to_end": 30.123, "median_polls_to_end": 1}
    image = {"type": "png", "width": 1024, "height": 1024, "decodable": True}
    assert said(ev.read(Exchange("download", 200, headers={"content-type": "IMAGE/PNG; q=1"}, job_id="j", url="u1",
                                 image=image, at=150.0))) == [
        ("L17", True, 'L17: a download (direct) served "png"', {"urls": {"direct_link_format": "png"}}, "png"),
        ("L27", True, "L27: a download is png 1024x1024, asked 1024x1024", None,
         {"size": [1024, 1024], "asked": [1024, 1024], "decodable": True}),
        ("L07", True, "L07: the default size 1024x1024", None, [1024, 1024])]


def test_a_submit_refused_for_unknown_fields_it_names_drifts_l20():
    ev = Evidence()
    body = {"status": "FAILURE", "error": "not allowed", "errors": [{"field": "foo", "rule": "additionalProperties"}]}
    assert said(ev.read(submit(400, body, {"foo": 1, "bar": 2, "baz": 3, "qux": 4}))) == [
        ("L15", True, "L15: invalid answered HTTP 400", {"http_status": {"invalid": 400}}, 400),
        ("L23", True, "L23: invalid answered HTTP 400", {"http_status": {"invalid": 400}}, 400),
        ("L20", False, "L20: a submit with unknown field(s) ['foo', 'bar', 'baz']: refused = true, the profile assumes "
                       "false", {"reject_unknown_fields": True}, True),
        ("L23", True, 'L23: a rejection\'s text is under "error"', {"rejection_text_key": "error"}, "error"),
        ("L14", True, "L14: a rejection's body has ['error', 'errors', 'status']", None,
         {"status": "FAILURE", "text_key": "error"})]
    assert ev.learned() == {"reject_unknown_fields": True}
    named_in_words = Evidence().read(submit(400, {"status": "FAILURE", "error": "bar: unknown"}, {"foo": 1, "bar": 2}))
    assert [r.held for r in named_in_words if r.row == "L20"] == [False]
    other_field = Evidence().read(submit(400, {"status": "FAILURE", "error": "samples: too many"}, {"foo": 1}))
    assert [r for r in other_field if r.row == "L20"] == []      # refused for something else: says nothing of L20
    not_invalid = Evidence().read(submit(401, {"status": "FAILURE", "error": "foo: API key"}, {"foo": 1}))
    assert [r for r in not_invalid if r.row == "L20"] == []


def test_a_rejection_under_another_key_and_code_drifts_l15_l23_and_l14():
    ev = Evidence()
    assert said(ev.read(submit(422, {"detail": "samples: must be <= 4"}, {"samples": 5}))) == [
        ("L15", False, "L15: invalid answered HTTP 422, the profile assumes 400", {"http_status": {"invalid": 422}}, 422),
        ("L23", False, "L23: invalid answered HTTP 422, the profile assumes 400", {"http_status": {"invalid": 422}}, 422),
        ("L05", True, "L05: samples=5 refused (maximum)", None, {"samples": 5, "accepted": False}),
        ("L23", False, 'L23: a rejection\'s text is under "detail", the profile assumes "error"',
         {"rejection_text_key": "detail"}, "detail"),
        ("L14", False, "L14: a rejection's body has ['detail']", None, {"status": None, "text_key": "detail"})]
    assert ev.learned() == {"http_status": {"invalid": 422}, "rejection_text_key": "detail"}
    for body, key in (({"message": ["samples: too many"]}, "message"), ({"error": "", "message": "samples"}, "message"),
                      ({"errors": [{"field": "samples", "rule": "maximum"}], "status": "FAILURE"}, None)):
        readings = Evidence().read(submit(400, body, {"samples": 5}))
        assert [r.value for r in readings if r.row == "L23"][1:] == ([key] if key else [])
        assert [r.value for r in readings if r.row == "L14"] == [{"status": body.get("status"), "text_key": key}]


def test_a_failed_job_s_body_is_read_for_its_id_and_message():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, who="w", at=10.0))
    assert said(ev.read(Exchange("status", 200, body={"status": "FAILURE", "message": "boom"}, job_id="j", who="w",
                                 at=15.5))) == [
        ("L15", True, "L15: job_failure answered HTTP 200", {"http_status": {"job_failure": 200}}, 200),
        ("L24", False, "L24: a failed job's body carries its id: false, the profile assumes true",
         {"job_failure_includes_id": False}, False),
        ("L14", True, "L14: a failed job's body carries a message", None, ["message", "status"])]
    assert said(ev.read(Exchange("status", 200, body={"status": "PENDING", "id": "j"}, job_id="j", who="w")))[1:] == [
        ("L28", False, "L28: job answered PENDING after FAILURE", None, {"after": "FAILURE", "then": "PENDING"}),
        ("L12", True, "L12: a PENDING body carries its id", None, ["id", "status"])]
    assert ev.summary()["jobs"] == {"tracked": 1, "ended": 1, "median_seconds_to_end": 5.5, "median_polls_to_end": 1}
    silent = Evidence()
    silent.read(submit(200, {"status": "FAILURE", "id": "k", "errors": []}))
    assert [r.held for r in silent.read(Exchange("status", 200, body={"status": "FAILURE", "id": "k"}, job_id="k"))
            if r.row == "L14"] == [False]


def test_a_job_s_median_life_is_counted_over_the_jobs_that_ended():
    ev = Evidence()
    for n, (seconds, polls) in enumerate(((1.0001, 1), (9.0, 3), (4.0, 2), (6.0, 4))):
        ev.read(submit(200, {"status": "PENDING", "id": f"j{n}"}, at=0.0))
        for poll in range(polls):
            state = "SUCCESS" if poll == polls - 1 else "PENDING"
            ev.read(Exchange("status", 200, body={"status": state, "id": f"j{n}", "download_urls": ["u"]},
                             job_id=f"j{n}", at=seconds if state == "SUCCESS" else 0.5))
    assert ev.summary()["jobs"] == {"tracked": 4, "ended": 4, "median_seconds_to_end": 6.0, "median_polls_to_end": 3}
    assert Evidence().summary()["jobs"] == {"tracked": 0, "ended": 0}


def test_a_status_read_of_a_job_the_evidence_never_saw_submitted_starts_its_trace():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, who="owner"))
    readings = ev.read(Exchange("status", 200, body={"status": "PENDING", "id": "j"}, job_id="j", who="someone else"))
    assert [r.row for r in readings] == ["L15", "L12"]
    assert [r.row for r in ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "new", "download_urls": []},
                                            job_id="new"))] == ["L15", "L13"]
    assert ev.summary()["jobs"]["tracked"] == 2
    assert [r.row for r in ev.read(Exchange("status", 404, body={"error": "no job"}, job_id="gone"))] == ["L15"]
    assert ev.summary()["jobs"]["tracked"] == 2                 # a refusal starts no trace
    assert ev.read(Exchange("status", 200, body={"status": "PENDING"})) == [
        Reading("L15", True, "L15: poll_pending answered HTTP 200", {"http_status": {"poll_pending": 200}}, 200)]
    assert ev.read(Exchange("other", 200)) == [] and ev.summary()["exchanges"] == 6


@pytest.mark.parametrize("finished,state,held,hint", [
    ("lifecycle", "SUCCESS", True, None), ("lifecycle", "PENDING", True, None),
    ("always", "SUCCESS", True, None), ("always", "PENDING", False, {"submit": {"finished": "never"}}),
    ("never", "PENDING", True, None), ("never", "SUCCESS", False, {"submit": {"finished": "always"}}),
])
def test_a_submit_s_outcome_is_held_against_the_profile_s_submit_finished(finished, state, held, hint):
    ev = Evidence(dict(load_default_profile(), submit={"finished": finished}))
    (l11,) = [r for r in ev.read(submit(200, {"status": state, "id": "j", "download_urls": ["u"]})) if r.row == "L11"]
    text = f"L11: a submit answered {state}" + ("" if held else f", the profile assumes submit.finished={finished}")
    assert astuple(l11) == ("L11", held, text, hint, state)


def test_a_submit_answered_both_ways_teaches_the_lifecycle():
    ev = Evidence(dict(load_default_profile(), submit={"finished": "always"}))
    ev.read(submit(200, {"status": "PENDING", "id": "a"}))
    ev.read(submit(200, {"status": "PENDING", "id": "b"}))
    assert ev.learned() == {"submit": {"finished": "never"}}
    ev.read(submit(200, {"status": "SUCCESS", "id": "c", "download_urls": ["u"]}))   # held, yet not "always" either
    assert ev.learned() == {"submit": {"finished": "lifecycle"}}
    ev = Evidence(dict(load_default_profile(), submit={"finished": "never"}))
    ev.read(submit(200, {"status": "SUCCESS", "id": "c", "download_urls": ["u"]}))
    ev.read(Exchange("submit", 200, request=dict(BASE), body={"status": "SUCCESS", "id": "d", "download_urls": ["u"]}))
    assert ev.learned(["L11"]) == {"submit": {"finished": "always"}}


def test_a_submit_that_made_no_job_reads_no_outcome():
    for status, body in ((200, {"status": "PENDING"}), (200, {"status": "FAILURE", "id": "j"}),
                         (300, {"status": "PENDING", "id": "j"}), (199, {"status": "PENDING", "id": "j"})):
        assert [r for r in Evidence().read(submit(status, body)) if r.row in ("L11", "L12")] == []
    for status in (200, 299):
        assert [r.row for r in Evidence().read(submit(status, {"status": "PENDING", "id": "j"}))][-2:] == ["L11", "L12"]


# --- which kind of answer: each condition alone ---------------------------------------------------------------

def errors(*pairs):
    return {"status": "FAILURE", "errors": [{"field": f, "rule": r} for f, r in pairs]}


@pytest.mark.parametrize("kind,status,body,kw,expected", [
    ("submit", 400, errors(("x", "rate_limit")), {}, "rate_limited"),
    ("submit", 400, errors(("x", "max_pending")), {}, "rate_limited"),
    ("submit", 503, {}, {"headers": {"retry-after": "1"}}, "rate_limited"),
    ("submit", 400, {"error": "Rate Limit exceeded"}, {}, "rate_limited"),
    ("status", 400, {"message": "Too Many Requests"}, {}, "rate_limited"),
    ("submit", 500, {"error": "samples: too many"}, {}, None),
    ("submit", 499, {"error": "samples: too many"}, {}, "invalid"),
    ("submit", 415, {}, {"request_type": "text/plain"}, "unsupported_media_type"),
    ("submit", 415, {}, {"request_type": ""}, "unsupported_media_type"),
    ("submit", 400, errors(("Content-Type", "enum")), {"request_type": "text/plain"}, "unsupported_media_type"),
    ("submit", 400, {"error": "Content-Type: must be JSON"}, {"request_type": "text/plain"}, "unsupported_media_type"),
    ("submit", 415, {}, {"request_type": None}, None),
    ("submit", 415, {}, {"request_type": "application/json"}, None),
    ("submit", 415, {}, {"request_type": "application/problem+json"}, None),
    ("status", 415, {}, {"request_type": "text/plain"}, None),
    ("submit", 403, errors(("API-Key", "credits")), {}, "no_credits"),
    ("status", 402, {"detail": "Out of Credit"}, {}, "no_credits"),
    ("status", 401, errors(("API-Key", "required")), {}, "unauthorized"),
    ("status", 401, {"error": "bad API-Key"}, {}, "unauthorized"),
    ("status", 401, {"error": "bad api key"}, {}, "unauthorized"),
    ("status", 401, {"error": "apikey?"}, {}, "unauthorized"),
    ("status", 401, {"error": "Unauthorized"}, {}, "unauthorized"),
    ("status", 401, {"error": "not authenticated"}, {}, "unauthorized"),
    ("submit", 413, {}, {"request_bytes": 1_048_577}, "body_too_large"),
    ("submit", 413, {}, {"request_bytes": 1_048_576}, None),
    ("submit", 400, errors(("body", "maxLength")), {}, "body_too_large"),
    ("submit", 403, errors(("body", "type")), {}, None),
    ("status", 413, {}, {"request_bytes": 2_000_000}, None),
    ("status", 404, errors(("id", "pattern")), {}, "not_found"),
    ("status", 404, {"error": "Job Not Found"}, {}, "not_found"),
    ("status", 404, {"error": "no job like that"}, {}, "not_found"),
    ("submit", 403, {"error": "not found"}, {}, None),
    ("submit", 403, errors(("samples[0]", "type")), {}, "invalid"),
    ("submit", 403, errors(("guidance_scale.value", "type")), {}, "invalid"),
    ("submit", 403, {"error": "prompt is odd"}, {}, "invalid"),
    ("submit", 403, {"error": "odd"}, {}, None),
    ("submit", 403, {"error": "odd"}, {"request": None}, None),
    ("submit", 400, {}, {}, "invalid"),
    ("submit", 422, {}, {}, "invalid"),
    ("submit", 404, {}, {}, None),
    ("status", 400, {}, {}, None),
])
def test_each_refusal_is_told_by_its_own_sign(kind, status, body, kw, expected):
    kw.setdefault("request", dict(BASE))
    assert classify_failure(Exchange(kind, status, body=body, **kw)) == expected


def test_a_refusal_s_words_are_read_only_from_its_text_fields():
    def kind(body):
        return classify_failure(Exchange("status", 401, body=body))

    assert [kind({"error": ["Unauthorized"]}), kind({"error": 401}), kind({"hint": "unauthorized"}), kind("unauthorized"),
            kind({"errors": {"field": "API-Key"}}), kind({"errors": ["API-Key", {"field": "API-Key"}]})] == [
        "unauthorized", None, None, None, None, "unauthorized"]
    assert classify_failure(Exchange("status", 404, body={"errors": [{"rule": "x"}, {"field": "id"}]})) == "not_found"


@pytest.mark.parametrize("kind,status,body,known,expected", [
    ("submit", 200, {"status": "PENDING"}, False, "submit_pending"),
    ("status", 200, {"status": "PENDING"}, False, "poll_pending"),
    ("status", 302, {"status": "PENDING"}, False, "poll_pending"),
    ("status", 399, {"status": "SUCCESS"}, False, "success"),
    ("status", 400, {"status": "SUCCESS"}, False, None),
    ("submit", 400, {"status": "PENDING", "error": "samples"}, False, "invalid"),
    ("status", 199, {"status": "FAILURE", "id": "j"}, False, None),
    ("status", 200, {"status": "FAILURE", "id": "j"}, False, "job_failure"),
    ("status", 299, {"status": "FAILURE"}, True, "job_failure"),
    ("status", 300, {"status": "FAILURE", "id": "j"}, False, None),
    ("status", 200, {"status": "FAILURE"}, False, None),
    ("submit", 200, {"status": "FAILURE", "error": "samples: too many"}, False, "invalid"),
    ("submit", 200, {"status": "FAILURE"}, False, None),
    ("status", 200, {}, False, None),
    ("status", 200, ["PENDING"], False, None),
    ("status", 404, {"status": "FAILURE"}, True, "job_failure"),
    ("status", 499, {"status": "FAILURE", "error": "failed"}, True, "job_failure"),
    ("status", 404, {"status": "FAILURE", "error": "no job"}, False, "not_found"),
    ("status", 500, {"status": "FAILURE", "error": "no job"}, True, None),
    ("status", 401, {"status": "FAILURE", "error": "Unauthorized"}, True, "unauthorized"),
    ("status", 403, {"status": "FAILURE", "error": "Unauthorized"}, True, "unauthorized"),
    ("status", 429, {"status": "FAILURE", "error": "Unauthorized"}, True, "unauthorized"),
    ("status", 404, {"status": "FAILURE", "errors": [{"field": "id", "rule": "x"}]}, True, "not_found"),
    ("submit", 404, {"status": "FAILURE"}, True, None),
])
def test_a_job_answer_s_kind(kind, status, body, known, expected):
    assert status_kind(Exchange(kind, status, body=body, request=dict(BASE)), known_job=known) == expected


# --- numbers: accepted, refused, and the bounds they teach ----------------------------------------------------

def test_each_number_sent_is_read_against_the_profile_s_limits():
    ev = Evidence()
    readings = ev.read(submit(200, {"status": "PENDING", "id": "j"}, {"samples": 3, "width": 1001, "height": 1536,
                                                                       "guidance_scale": 20.5, "num_inference_steps": 0}))
    limits = load_default_profile()["limits"]
    assert [(r.row, r.held, r.text) for r in readings if r.row in ("L05", "L06", "L08", "L09")] == [
        ("L05", False, f"L05: samples=3 accepted, the profile has {json.dumps(limits['samples'])}"),
        ("L08", False, f"L08: width=1001 accepted, the profile has {json.dumps(limits['width'])}"),
        ("L08", True, "L08: height=1536 accepted"),
        ("L09", False, f"L09: num_inference_steps=0 accepted, the profile has {json.dumps(limits['num_inference_steps'])}"),
        ("L06", False, f"L06: guidance_scale=20.5 accepted, the profile has {json.dumps(limits['guidance_scale'])}")]
    skipped = ev.read(submit(200, {"status": "PENDING", "id": "k"}, {"samples": True, "width": "512", "height": None}))
    assert [r.row for r in skipped if r.row in ("L05", "L08")] == []


def test_a_refused_number_is_read_only_when_the_refusal_names_it():
    def read(body, request, profile=None):
        return [(r.row, r.held, r.text) for r in Evidence(profile).read(submit(400, body, request))
                if r.row in ("L05", "L08", "L09", "L06")]

    assert read(errors(("width", "multipleOf")), {"width": 1001}) == [
        ("L08", True, "L08: width=1001 refused (multipleOf)")]
    assert read(errors(("width", "maximum")), {"width": 1000, "samples": 2}) == [
        ("L08", False, 'L08: width=1000 refused (maximum), the profile has {"min": 256, "max": 1536, "multiple_of": 8, '
                       '"default": 1024}')]
    assert read({"error": "samples: too many"}, {"samples": 5, "width": 1024}) == [
        ("L05", True, "L05: samples=5 refused (maximum)")]
    assert read({"error": "bad", "errors": [{"field": "prompt"}]}, {"samples": 1}) == []       # another field named
    assert read({"error": "bad: samples", "errors": [{"field": "prompt"}]}, {"samples": 1}) == [
        ("L05", False, 'L05: samples=1 refused (multipleOf), the profile has {"min": 1, "max": 2}')]
    assert read({"error": "samples"}, {"samples": 1}, {"limits": {}}) == [("L05", False, "L05: samples=1 refused "
                                                                                         "(multipleOf), the profile has {}")]
    assert read({"error": "samples"}, {"samples": 0}) == [("L05", True, "L05: samples=0 refused (minimum)")]


def test_a_refused_number_past_the_largest_accepted_is_read_as_too_big():
    ev = Evidence({"limits": {}})
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, {"samples": 4}))
    (above,) = [r for r in ev.read(submit(400, {"error": "samples"}, {"samples": 5})) if r.row == "L05"]
    (below,) = [r for r in ev.read(submit(400, {"error": "samples"}, {"samples": 3})) if r.row == "L05"]
    (same,) = [r for r in ev.read(submit(400, {"error": "samples"}, {"samples": 4})) if r.row == "L05"]
    assert [above.text, below.text, same.text] == ["L05: samples=5 refused (maximum), the profile has {}",
                                                   "L05: samples=3 refused (multipleOf), the profile has {}",
                                                   "L05: samples=4 refused (multipleOf), the profile has {}"]


PROFILE = {"limits": {"width": {"min": 256, "max": 1024, "multiple_of": 64}}}


def learned_width(accepted=(), refused=(), profile=None) -> dict:
    """The width bounds learned from these accepted and (value, rule) refused submits."""
    ev = Evidence(profile or PROFILE)
    for n, value in enumerate(accepted):
        ev.read(submit(200, {"status": "PENDING", "id": f"a{n}"}, {"width": value}))
    for value, rule in refused:
        ev.read(submit(400, errors(("width", rule)), {"width": value}))
    return ev.learned().get("limits", {}).get("width", {})


def test_bounds_are_learned_from_what_was_accepted_past_them():
    assert learned_width([192, 1280]) == {"max": 1280, "min": 192}
    assert learned_width([256, 1024]) == {}
    assert learned_width([1088], profile={"limits": {"width": {"min": 1}}}) == {}


def test_a_bound_is_learned_from_the_nearest_refusal_inside_it():
    assert learned_width([512], [(960, "maximum"), (896, "maximum")]) == {"max": 512}     # the largest accepted
    assert learned_width([], [(960, "maximum"), (896, "maximum")]) == {"max": 832}        # a step below the least refused
    assert learned_width([512, 768], [(896, "maximum")]) == {"max": 768}
    assert learned_width([896], [(896, "maximum")]) == {"max": 832}
    assert learned_width([], [(1024, "maximum")]) == {"max": 960}
    assert learned_width([], [(1088, "maximum")]) == {}
    assert learned_width([], [(1024, "maximum")], {"limits": {"width": {"max": 2000}}}) == {"max": 1023}
    assert learned_width([], [(1024, "maximum")], {"limits": {"width": {"min": 1}}}) == {}
    assert learned_width([1024], [(320, "minimum"), (256, "minimum")]) == {"min": 384}
    assert learned_width([], [(192, "minimum")]) == {}
    assert learned_width([], [(300, "minimum")], {"limits": {"width": {"min": 300}}}) == {"min": 301}
    assert learned_width([], [(300, "minimum")], {"limits": {"width": {"max": 3000}}}) == {}


def test_a_step_is_learned_from_the_values_refused_for_it_and_those_accepted():
    assert learned_width([512, 1024], [(544, "multipleOf"), (576, "multipleOf")]) == {"multiple_of": 128}
    assert learned_width([320], [(336, "multipleOf")]) == {}                    # the profile's 64 held: nothing to learn
    assert learned_width([288, 352]) == {"multiple_of": 1}                      # none refused for a step: the least
    assert learned_width([288, 352], [(300, "multipleOf")]) == {"multiple_of": 8}
    assert learned_width([288, 352], [(300, "multipleOf"), (264, "multipleOf")]) == {"multiple_of": 16}
    assert learned_width([260], [(258, "multipleOf")]) == {"multiple_of": 4}
    assert learned_width([258], [(257, "multipleOf")]) == {"multiple_of": 2}
    assert learned_width([], [(257, "multipleOf"), (259, "multipleOf")], {"limits": {"width": {"multiple_of": 1}}}) == {
        "multiple_of": 2}
    assert learned_width([384], [(385, "multipleOf")]) == {}
    assert learned_width([], [(300, "multipleOf")], {"limits": {"width": {}}}) == {}


def test_refused_values_are_kept_at_the_ends_that_bound_a_limit():
    wide = {"limits": {"width": {"min": 50, "max": 2000, "multiple_of": 64}}}
    too_big = [(value, "maximum") for value in range(1984, 1039, -16)]               # 60 values: the least is kept
    assert learned_width([], too_big, wide) == {"max": 1040 - 64}
    too_small = [(value, "minimum") for value in range(104, 1001, 8)]                # 113 values: the largest is kept
    assert learned_width([], too_small + [(104, "minimum")], wide) == {"min": 1000 + 64}
    odd_then_even = [(value, "multipleOf") for value in (*range(1, 32, 2), *range(1000, 1100, 2))]
    assert learned_width([], odd_then_even, wide) == {"multiple_of": 2}              # the 16 least: all odd


# --- downloads ------------------------------------------------------------------------------------------------

def test_a_download_before_its_job_ended_reads_l16_and_an_image_reads_l17_l27():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, {"width": 512, "height": 768}, at=0.0))
    assert said(ev.read(Exchange("download", 404, body={"error": "not ready"}, job_id="j", url="u1", at=1.0))) == [
        ("L16", True, "L16: image_not_ready answered HTTP 404", {"http_status": {"image_not_ready": 404}}, 404)]
    ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "j", "download_urls": ["u1"]}, job_id="j", at=2.0))
    assert ev.read(Exchange("download", 404, body={"error": "x"}, job_id="j", url="u1", at=3.0)) == []  # never served
    blurry = {"type": "webp", "width": 512, "height": 760, "decodable": False}
    assert said(ev.read(Exchange("download", 200, job_id="j", url="u1", image=blurry, at=4.0))) == [
        ("L17", False, 'L17: a download (opaque) served "none", the profile assumes "jpeg"',
         {"urls": {"opaque_format": "none"}}, "none"),
        ("L27", False, "L27: a download is webp 512x760 (not decodable), asked 512x768", None,
         {"size": [512, 760], "asked": [512, 768], "decodable": False})]
    sharp = {"type": "webp", "width": 512, "height": 768, "decodable": True}
    assert said(ev.read(Exchange("download", 299, headers={"content-type": "image/webp"}, job_id="j", url="u1",
                                 image=sharp, at=5.0))) == [
        ("L17", False, 'L17: a download (opaque) served "webp", the profile assumes "jpeg"',
         {"urls": {"opaque_format": "webp"}}, "webp"),
        ("L27", True, "L27: a download is webp 512x768, asked 512x768", None,
         {"size": [512, 768], "asked": [512, 768], "decodable": True})]
    assert said(ev.read(Exchange("download", 200, headers={"content-type": "text/html"}, job_id="j", url="u1"))) == [
        ("L17", False, 'L17: a download (opaque) served "text/html", the profile assumes "jpeg"',
         {"urls": {"opaque_format": "text/html"}}, "text/html")]
    assert ev.read(Exchange("download", 200, job_id="unknown", url="u1")) == []
    assert ev.read(Exchange("download", 200, url="u1")) == []


def test_a_url_refused_after_it_served_reads_l22_with_the_ages_it_was_seen_at():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, at=0.0))
    ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "j", "download_urls": ["u1"]}, job_id="j",
                     at=2.0))
    ev.read(Exchange("download", 200, job_id="j", url="u1", at=5.12345))
    (gone,) = ev.read(Exchange("download", 300, job_id="j", url="u1", at=6.98765))
    assert astuple(gone) == ("L22", False, "L22: image_expired answered HTTP 300, the profile assumes 404",
                             {"http_status": {"image_expired": 300}}, {"http_status": 300,
                                                                       "lifetime_s_between": [3.123, 4.988]})
    unended = Evidence()           # a job whose end was never seen: the URL's refusal, with no ages
    unended.read(Exchange("download", 200, job_id="j", url="u1"))
    unended.read(submit(200, {"status": "PENDING", "id": "j"}))
    unended.read(Exchange("download", 200, job_id="j", url="u1"))
    (gone,) = unended.read(Exchange("download", 404, job_id="j", url="u1"))
    assert (gone.row, gone.held, gone.value) == ("L22", True, 404)


def test_a_direct_link_download_is_held_against_the_direct_format():
    ev = Evidence()
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]}, {"direct_link": True}))
    (l17,) = ev.read(Exchange("download", 200, headers={"content-type": "image/png"}, job_id="j", url="u"))
    assert astuple(l17) == ("L17", True, 'L17: a download (direct) served "png"', {"urls": {"direct_link_format": "png"}},
                            "png")
    ev.read(submit(200, {"status": "SUCCESS", "id": "k", "download_urls": ["v"]}, {"direct_link": "yes"}))
    (l17,) = ev.read(Exchange("download", 200, headers={"content-type": "image/jpeg"}, job_id="k", url="v"))
    assert l17.text == 'L17: a download (opaque) served "jpeg"'


def test_an_image_of_another_size_than_the_default_teaches_the_default():
    ev = Evidence()
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]}))
    image = {"type": "jpeg", "width": 1152, "height": 896, "decodable": True}
    assert said(ev.read(Exchange("download", 200, headers={"content-type": "image/jpeg"}, job_id="j", url="u",
                                 image=image)))[1:] == [
        ("L27", False, "L27: a download is jpeg 1152x896, asked 1024x1024", None,
         {"size": [1152, 896], "asked": [1024, 1024], "decodable": True}),
        ("L07", False, "L07: an image without width/height is 1152x896",
         {"limits": {"width": {"default": 1152}, "height": {"default": 896}}}, [1152, 896])]
    assert ev.learned() == {"limits": {"width": {"default": 1152}, "height": {"default": 896}}}
    custom = Evidence({"limits": {"width": {"default": 1152}, "height": {"default": 896}}})
    custom.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]}))
    assert [r.text for r in custom.read(Exchange("download", 200, job_id="j", url="u", image=image))][1:] == [
        "L27: a download is jpeg 1152x896, asked 1152x896", "L07: the default size 1152x896"]
    bare = Evidence({})          # no default in the profile: 1024 each way
    bare.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]}))
    assert [r.text for r in bare.read(Exchange("download", 200, job_id="j", url="u", image=image))][1] == (
        "L27: a download is jpeg 1152x896, asked 1024x1024")


@pytest.mark.parametrize("request_,decodable,rows", [
    ({"width": 512}, True, ["L17", "L27"]), ({"height": 512}, True, ["L17", "L27"]),
    ({}, False, ["L17", "L27"]), ({}, True, ["L17", "L27", "L07"]),
])
def test_l07_is_read_only_from_a_decodable_image_of_a_submit_without_a_size(request_, decodable, rows):
    ev = Evidence()
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]}, request_))
    image = {"type": "jpeg", "width": 640, "height": 640, "decodable": decodable}
    assert [r.row for r in ev.read(Exchange("download", 200, job_id="j", url="u", image=image))] == rows


# --- the report: rows, summary, the contracts' format, the table ----------------------------------------------

def two_rows_seen() -> Evidence:
    ev = Evidence()
    ev.read(submit(202, {"status": "PENDING", "id": "j"}))
    ev.read(submit(202, {"status": "PENDING", "id": "k"}))
    ev.read(submit(200, {"status": "PENDING", "id": "m"}))
    return ev


def test_rows_say_each_row_held_drifted_or_not_seen_with_examples_and_the_hint():
    rows = {r["id"]: r for r in two_rows_seen().rows()}
    assert list(rows) == list(ROWS)
    assert rows["L15"] == {"id": "L15", "behaviour": "HTTP codes", "profile_key": "http_status", "result": "drifted",
                           "held": 1, "drifted": 2, "seen": [202, 202, 200],
                           "examples": ["L15: submit_pending answered HTTP 202, the profile assumes 200"] * 2,
                           "profile_hint": {"http_status": {"submit_pending": 202}}}
    assert rows["L12"] == {"id": "L12", "behaviour": "PENDING body", "result": "held", "held": 3, "drifted": 0,
                           "seen": [["id", "status"]] * 3}
    assert rows["L22"] == {"id": "L22", "behaviour": "download URL lifetime", "profile_key": "http_status.image_expired",
                           "result": "not_seen", "held": 0, "drifted": 0}
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, {"batch_id": "b"}))
    ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "j", "download_urls": ["u", "v"]}, job_id="j"))
    l13 = next(r for r in ev.rows() if r["id"] == "L13")
    assert l13["result"] == "drifted" and "profile_hint" not in l13      # nothing in a profile changes it


def test_a_tally_keeps_the_last_three_examples_and_at_most_16_distinct_drifted_values():
    ev = Evidence()
    for code in range(201, 231):
        ev.read(submit(code, {"status": "PENDING", "id": f"j{code}"}))
    ev.read(submit(201, {"status": "PENDING", "id": "again"}))
    ev.read(submit(201, {"status": "PENDING", "id": "and again"}))
    l15 = next(r for r in ev.rows() if r["id"] == "L15")
    assert l15["examples"] == [f"L15: submit_pending answered HTTP {c}, the profile assumes 200" for c in (230, 201, 201)]
    assert l15["seen"] == [230, 201, 201] and l15["drifted"] == 32
    assert l15["profile_hint"] == {"http_status": {"submit_pending": 201}}    # 3 times: the most often seen
    ev = Evidence()
    for code in range(201, 217):                                             # 16 distinct codes, once each
        ev.read(submit(code, {"status": "PENDING", "id": f"j{code}"}))
    for code in (217, 217, 217, 217, 216, 216):    # a 17th distinct code is never counted; one counted always is
        ev.read(submit(code, {"status": "PENDING", "id": "late"}))
    assert ev.learned() == {"http_status": {"submit_pending": 216}}


def test_summary_counts_rows_by_result():
    summary = two_rows_seen().summary()
    assert {k: summary[k] for k in ("exchanges", "held", "drifted", "not_seen")} == {
        "exchanges": 3, "held": 5, "drifted": 1, "not_seen": len(ROWS) - 6}


def test_the_contracts_report_says_held_failed_or_not_checked_per_row(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_000.25)
    report = two_rows_seen().contracts_report({"kind": "proxy", "url": "https://api.test"}, started_at=990.12345)
    rows = {r["id"]: r for r in report["rows"]}
    assert {k: report[k] for k in ("schema", "target", "summary", "started_at", "duration_s")} == {
        "schema": "sd35-contracts-report/1", "target": {"kind": "proxy", "url": "https://api.test"},
        "summary": {"held": 5, "failed": 1, "not_checked": len(ROWS) - 6}, "started_at": 990.123, "duration_s": 10.127}
    assert rows["L15"] == {
        "id": "L15", "behaviour": "HTTP codes", "profile_key": "http_status", "result": "failed",
        "tests": [{"nodeid": "proxy::L15", "outcome": "failed",
                   "message": "; ".join(["L15: submit_pending answered HTTP 202, the profile assumes 200"] * 2)}],
        "observed": [{"test": "proxy::L15", "value": {"held": 1, "drifted": 2, "seen": [202, 202, 200]},
                      "profile": {"http_status": {"submit_pending": 202}}}],
        "note": "; ".join(["L15: submit_pending answered HTTP 202, the profile assumes 200"] * 2)}
    assert rows["L12"] == {
        "id": "L12", "behaviour": "PENDING body", "result": "held", "tests": [{"nodeid": "proxy::L12", "outcome": "passed"}],
        "observed": [{"test": "proxy::L12", "value": {"held": 3, "drifted": 0, "seen": [["id", "status"]] * 3}}],
        "note": "3 readings held"}
    assert rows["L22"] == {
        "id": "L22", "behaviour": "download URL lifetime", "profile_key": "http_status.image_expired",
        "result": "not_checked", "tests": [{"nodeid": "proxy::L22", "outcome": "skipped",
                                            "reason": "not seen by the proxy"}], "note": "not seen by the proxy"}
    assert "started_at" not in Evidence().contracts_report({"kind": "proxy"})


def test_a_failed_row_s_message_is_cut_to_500_characters_and_has_no_profile_when_none_is_learned():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}))
    ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "j", "download_urls": ["u", "v"]}, job_id="j"))
    (l13,) = [r for r in ev.contracts_report({})["rows"] if r["id"] == "L13"]
    assert l13["observed"] == [{"test": "proxy::L13", "value": {"held": 0, "drifted": 1,
                                                                 "seen": [{"download_urls": 2, "samples": 1}]}}]
    long = Evidence()
    name = "f" * 200
    for n in range(3):
        long.read(submit(400, {"status": "FAILURE", "error": "bad", "errors": [{"field": name}]}, {name: n}))
    (l20,) = [r for r in long.contracts_report({})["rows"] if r["id"] == "L20"]
    assert len(l20["tests"][0]["message"]) == 500 and l20["note"] == l20["tests"][0]["message"]


def test_the_table_has_a_line_per_row_cut_to_its_width_and_a_total():
    summary = two_rows_seen().summary()
    lines = format_rows(summary, width=200).splitlines()
    assert lines[0] == f"{'row':<4} {'result':<9} {'held':>5} {'drift':>5}  {'behaviour':<24} example / learned"
    l15 = ("L15  drifted       1     2  HTTP codes               L15: submit_pending answered HTTP 202, the profile "
           'assumes 200  learned {"http_status": {"submit_pending": 202}}')
    assert lines[1 + list(ROWS).index("L15")] == l15
    assert format_rows(summary).splitlines()[1 + list(ROWS).index("L15")] == l15[:117] + "..."   # 120 by default
    assert lines[1 + list(ROWS).index("L12")] == "L12  held          3     0  PENDING body             "
    assert lines[-1] == f"3 exchanges: 5 rows held, 1 drifted, {len(ROWS) - 6} not seen"
    assert len(lines) == len(ROWS) + 2
    narrow = format_rows(summary, width=60).splitlines()
    assert narrow[1 + list(ROWS).index("L15")] == l15[:57] + "..." and len(l15[:57] + "...") == 60
    assert narrow[1 + list(ROWS).index("L12")] == lines[1 + list(ROWS).index("L12")][:60]
    assert format_rows({}) == lines[0] + "\n0 exchanges: 0 rows held, 0 drifted, 0 not seen"
    hint_only = {"rows": [{"id": "L08", "result": "drifted", "behaviour": "width, height bounds and more words",
                           "profile_hint": {"b": 1, "a": 2}}]}
    assert format_rows(hint_only).splitlines()[1] == (
        'L08  drifted       0     0  width, height bounds and   learned {"a": 2, "b": 1}')


def test_a_recording_is_read_line_by_line_and_what_is_no_exchange_is_skipped():
    lines = [json.dumps(entry("POST", "/sd3_5/v1", 202, PENDING, sent=BASE)), "not json", "[1, 2]",
             json.dumps({"request": {"method": "GET", "url": "/__mock__/jobs"}, "response": {"status": 200}}),
             json.dumps(entry("GET", "/sd3_5/v1/status/j", 200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]})),
             json.dumps(entry("GET", "u", 200))]
    ev = Evidence()
    assert ev.read_recording(lines) == 3
    assert ev.summary()["exchanges"] == 3 and ev.job_of_url("u") == "j"
    assert [r["result"] for r in ev.rows() if r["id"] in ("L15", "L17")] == ["drifted", "drifted"]


# --- closing the survivors of a mutation run (docs/mutation.md) ----------------------------------------------

def test_a_recorded_download_without_a_url_keeps_an_empty_one():
    line = {"kind": "download", "request": {"method": "GET"}, "response": {"status": 200}}
    assert exchange_from_entry(line, Evidence()).url == ""


def test_the_words_of_error_message_and_detail_are_read_as_one_text():
    assert classify_failure(Exchange("status", 400, body={"error": "Too many", "detail": "requests"})) == "rate_limited"
    assert classify_failure(Exchange("submit", 403, body=["x"], request={"x": 1})) is None   # no mapping: no words


def test_an_error_without_a_field_or_rule_names_none():
    nameless = {"status": "FAILURE", "errors": [{"rule": "type"}]}
    assert classify_failure(Exchange("submit", 403, body=nameless, request={"None": 1, "XXXX": 2})) is None
    ruleless = Evidence().read(submit(400, {"status": "FAILURE", "errors": [{"field": "samples"}]}, {"samples": 5}))
    assert [r.text for r in ruleless if r.row == "L05"] == ["L05: samples=5 refused (maximum)"]


def test_a_2xx_answer_without_a_state_is_no_kind():
    assert status_kind(Exchange("submit", 200, body={"error": "rate limit"}, request=dict(BASE)), known_job=False) is None


def test_the_largest_and_smallest_accepted_are_kept_in_any_order():
    assert learned_width([1280, 1152, 128, 192]) == {"max": 1280, "min": 128}


def test_no_step_is_learned_when_none_fits_what_was_accepted_and_refused():
    assert learned_width([288, 256], [(320, "multipleOf")]) == {}


def test_a_refused_number_with_no_rule_named_is_read_with_the_profile_s_cause():
    (l08,) = [r for r in Evidence().read(submit(400, {"error": "width: bad"}, {"width": 1001})) if r.row == "L08"]
    assert l08.text == "L08: width=1001 refused (multipleOf)" and l08.held


def test_the_evidence_tracks_10000_jobs_by_default_and_forgets_the_oldest():
    ev = Evidence()
    for n in range(10_001):
        ev.read(Exchange("submit", 200, body={"status": "PENDING", "id": f"j{n}"}))
    assert ev.summary()["jobs"]["tracked"] == 10_000
    small = Evidence(max_jobs=2)
    for job in ("j1", "j2", "j3"):
        small.read(submit(200, {"status": "PENDING", "id": job}))
    done = {"status": "SUCCESS", "download_urls": ["u"]}
    assert [[r.text for r in small.read(Exchange("status", 200, body=dict(done, id=job), job_id=job)) if r.row == "L13"]
            for job in ("j3", "j1")] == [["L13: SUCCESS carries 1 download_urls for samples=1"],
                                         ["L13: SUCCESS carries 1 download_urls for samples=None"]]


def test_a_job_s_urls_are_bounded_at_four_per_tracked_job_keeping_the_newest():
    ev = Evidence(max_jobs=1)
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u1", "u2", "u3", "u4", "u5"]}))
    assert [ev.job_of_url(u) for u in ("u1", "u2", "u3", "u4", "u5")] == [None, "j", "j", "j", "j"]


def test_a_submit_s_content_type_is_quoted_in_l32_and_cut_to_60_characters():
    def l32(request_type):
        readings = Evidence().read(submit(200, {"status": "PENDING", "id": "j"}, request_type=request_type))
        return [r.text for r in readings if r.row == "L32"]

    assert l32("text/plain") == ["L32: a submit with 'text/plain': refused = false"]
    long = "text/" + "x" * 70
    assert l32(long) == [f"L32: a submit with {repr(long)[:60]}: refused = false"]


def test_a_rejection_s_body_names_at_most_six_keys():
    body = {"error": "samples", **{k: 1 for k in "abcdefg"}}
    (l14,) = [r for r in Evidence().read(submit(400, body, {"samples": 5})) if r.row == "L14"]
    assert l14.text == "L14: a rejection's body has ['a', 'b', 'c', 'd', 'e', 'error']"


def test_a_profile_without_submit_finished_allows_either_outcome():
    for state in ("PENDING", "SUCCESS"):
        readings = Evidence({}).read(submit(200, {"status": state, "id": "j", "download_urls": ["u"]}))
        assert [r.held for r in readings if r.row == "L11"] == [True]


def test_a_job_first_seen_by_a_status_read_is_traced_under_its_id_and_reader():
    ev = Evidence()
    ev.read(Exchange("status", 200, body={"status": "PENDING", "id": "j"}, job_id="j", who="w", at=10.0))
    ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "j", "download_urls": ["u"]}, job_id="j", who="w",
                     at=12.5))
    assert ev.job_of_url("u") == "j"
    assert ev.summary()["jobs"] == {"tracked": 1, "ended": 1, "median_seconds_to_end": 2.5, "median_polls_to_end": 2}


def test_a_success_without_a_list_of_urls_says_so():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}))
    l13 = [astuple(r) for r in ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": "j",
                                                                     "download_urls": "u"}, job_id="j")) if r.row == "L13"]
    assert l13 == [("L13", False, "L13: SUCCESS carries no download_urls for samples=1", None,
                    {"download_urls": None, "samples": 1})]


def test_a_failed_job_s_body_with_its_id_holds_l24():
    ev = Evidence()
    ev.read(submit(200, {"status": "PENDING", "id": "j"}))
    readings = ev.read(Exchange("status", 200, body={"status": "FAILURE", "id": "j", "error": "x"}, job_id="j"))
    assert [(r.held, r.text) for r in readings if r.row == "L24"] == [
        (True, "L24: a failed job's body carries its id: true")]


def test_a_batch_id_that_is_not_text_is_not_read_for_its_echo():
    ev = Evidence()
    assert [r for r in ev.read(submit(200, {"status": "PENDING", "id": "j", "batch_id": 5}, {"batch_id": 5}))
            if r.row == "L18"] == []


def test_the_last_1000_ended_jobs_make_the_medians():
    ev = Evidence()
    for n, seconds in enumerate([0.5] + [1.0] * 500 + [2.0] * 500):
        ev.read(Exchange("submit", 200, body={"status": "PENDING", "id": f"j{n}"}, at=0.0))
        ev.read(Exchange("status", 200, body={"status": "SUCCESS", "id": f"j{n}"}, job_id=f"j{n}", at=seconds))
    assert ev.summary()["jobs"]["median_seconds_to_end"] == 2.0           # the first job's 0.5 s is forgotten


def test_a_download_refused_while_its_job_went_back_to_pending_reads_l16_and_after_a_failure_nothing():
    ev = Evidence()
    ev.read(submit(200, {"status": "SUCCESS", "id": "j", "download_urls": ["u"]}))
    ev.read(Exchange("status", 200, body={"status": "PENDING", "id": "j"}, job_id="j"))     # L28 drifts: PENDING again
    assert [r.row for r in ev.read(Exchange("download", 404, job_id="j", url="u"))] == ["L16"]
    failed = Evidence()
    failed.read(submit(200, {"status": "PENDING", "id": "k"}))
    failed.read(Exchange("status", 200, body={"status": "FAILURE", "id": "k"}, job_id="k"))
    assert failed.read(Exchange("download", 404, job_id="k", url="u")) == []


def test_learned_keeps_to_the_rows_asked_for():
    ev = Evidence()
    ev.read(submit(202, {"status": "PENDING", "id": "j", "batch_id": "other"}, {"batch_id": "b"}))
    assert ev.learned() == {"http_status": {"submit_pending": 202}, "echo_batch_id": False}
    assert ev.learned(["L18"]) == {"echo_batch_id": False} and ev.learned([]) == {}


def test_a_drifted_number_row_carries_its_learned_bounds():
    ev = Evidence(PROFILE)
    ev.read(submit(200, {"status": "PENDING", "id": "j"}, {"width": 1280}))
    (l08,) = [r for r in ev.rows() if r["id"] == "L08"]
    assert l08["profile_hint"] == {"limits": {"width": {"max": 1280}}}


def test_the_table_shows_a_row_s_last_example_and_keeps_a_line_of_exactly_its_width():
    summary = {"rows": [{"id": "L15", "result": "drifted", "held": 0, "drifted": 3, "behaviour": "HTTP codes",
                         "examples": ["first", "second", "third"]}]}
    line = format_rows(summary).splitlines()[1]
    assert line == "L15  drifted       0     3  HTTP codes               third"
    assert format_rows(summary, width=len(line)).splitlines()[1] == line
    assert format_rows(summary, width=len(line) - 1).splitlines()[1] == line[:len(line) - 4] + "..."
