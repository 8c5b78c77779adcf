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
    for n, (seconds, polls) in enumerate(((1.0001, 1), (9.0, 3), (4.0, 2))):
        ev.read(submit(200, {"status": "PENDING", "id": f"j{n}"}, at=0.0))
        for poll in range(polls):
            state = "SUCCESS" if poll == polls - 1 else "PENDING"
            ev.read(Exchange("status", 200, body={"status": state, "id": f"j{n}", "download_urls": ["u"]},
                             job_id=f"j{n}", at=seconds if state == "SUCCESS" else 0.5))
    assert ev.summary()["jobs"] == {"tracked": 3, "ended": 3, "median_seconds_to_end": 4.0, "median_polls_to_end": 2}
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
