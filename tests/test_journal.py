"""The journal in the core: each entry whole, each bound at its edge, each filter alone, the counts. Written
against the survivors of a mutation run (docs/mutation.md); the HTTP tests (test_control, test_verification)
read it through the control plane."""

from __future__ import annotations

import hashlib
import json

import pytest

from sd35_twin.mockserver.journal import (
    DIGEST_OF_BODY,
    HEADER_CHARS,
    MAX_COUNTED_BATCH_IDS,
    MAX_HEADERS,
    MAX_RETRY_AFTER,
    Journal,
    canonical_digest,
)


def record(journal: Journal, **fields) -> int | None:
    defaults = dict(at=1.5, method="GET", path="/x", query="", headers={}, body=b"", status=200, duration_ms=1.0)
    return journal.record(**{**defaults, **fields})


def test_an_entry_whole():
    journal = Journal(size=10, body_chars=100)
    journal.record(at=12.5, method="POST", path="/sd3_5/v1", query="a=1", headers={"API-Key": "secret",
                   "X-Test": "t1"}, body=b'{"prompt": "x"}', status=200, duration_ms=3.14159, fault="latency 5 ms",
                   kind="submit", job_id="j1", batch_id="b1", retry_after="2", rule="r3", rows=("L11", "L15"),
                   body_digest="d" * 64)
    [entry] = journal.entries()
    key_id = entry.pop("api_key_id")   # salted per journal: the same key the same id, never the key
    assert len(key_id) == 16 and int(key_id, 16) >= 0 and "secret" not in key_id
    assert entry == {
        "at": 12.5, "method": "POST", "path": "/sd3_5/v1", "query": "a=1",
        "headers": {"API-Key": "***", "X-Test": "t1"}, "body": '{"prompt": "x"}', "body_truncated": False,
        "status": 200, "duration_ms": 3.142, "seq": 1, "kind": "submit", "rows": ["L11", "L15"], "job_id": "j1",
        "batch_id": "b1", "retry_after": 2, "body_digest": "d" * 64, "fault": "latency 5 ms", "rule": "r3"}


@pytest.mark.parametrize("padding", [0, 400], ids=["kept whole: worked out when read", "cut: worked out at once"])
def test_a_digest_of_the_body_is_that_of_its_json_whether_the_body_is_kept_whole_or_cut(padding):
    journal = Journal(size=10, body_chars=100)  # bodies are kept up to 400 bytes
    document = {"prompt": "x" * padding, "b": [1, 2.5, None, "\u00e9"], "a": {"z": True, "y": "\ud83d\ude00"}}
    body = ('{ "prompt" : "%s", "b": [1, 2.5, null, "\\u00e9"], "a": {"z": true, "y": "\U0001f600"} }'
            % ("x" * padding)).encode()
    record(journal, body=body, body_digest=DIGEST_OF_BODY)
    record(journal, body=b"[", body_digest=DIGEST_OF_BODY)  # not JSON (the route refused it): no digest
    whole, broken = journal.entries()
    assert whole["body_truncated"] is (padding > 0)
    assert whole["body_digest"] == canonical_digest(document) == canonical_digest(dict(reversed(document.items())))
    assert "body_digest" not in broken


def test_the_canonical_form_is_sorted_keys_no_spaces_and_ascii_escapes():
    """docs/wire.md: a submit's ``body_digest`` is the SHA-256 of its JSON with keys sorted, no spaces, ASCII only,
    so anyone can work it out from the body they sent."""
    text = '{"a":["\\u00e9",2.5,null],"b":{"c":true,"d":"\\ud83d\\ude00"}}'
    assert canonical_digest({"b": {"d": "\U0001f600", "c": True}, "a": ["\u00e9", 2.5, None]}) == \
        hashlib.sha256(text.encode("ascii")).hexdigest()


def test_only_a_digest_of_the_body_is_worked_out_from_a_cut_body():
    """A body cut by the journal gets its digest at once only when the digest asked for is the body's own; an entry
    given no digest, or one of its own, keeps that."""
    journal = Journal(size=10, body_chars=10)  # bodies are kept up to 40 bytes
    body = json.dumps({"prompt": "x" * 100}).encode()
    record(journal, body=body)
    record(journal, body=body, body_digest="d" * 64)
    none, given = journal.entries()
    assert none["body_truncated"] and "body_digest" not in none
    assert given["body_digest"] == "d" * 64


def test_an_entry_leaves_out_what_is_unset():
    journal = Journal(size=10, body_chars=100)
    record(journal, fault="")
    assert journal.entries() == [{"at": 1.5, "method": "GET", "path": "/x", "query": "", "headers": {}, "body": "",
                                  "body_truncated": False, "status": 200, "duration_ms": 1.0, "seq": 1,
                                  "kind": "other", "rows": []}]


@pytest.mark.parametrize("name", ["API-Key", "api-key", "Authorization", "COOKIE", "Proxy-Authorization"])
def test_secret_headers_are_redacted_by_any_case_and_an_empty_one_stays_empty(name):
    journal = Journal(size=10, body_chars=100)
    record(journal, headers=[(name, "s3cret"), ("X-Other", "shown")])
    record(journal, headers=[(name, "")])
    first, second = journal.entries()
    assert first["headers"] == {name: "***", "X-Other": "shown"} and second["headers"] == {name: ""}


def test_headers_are_kept_whole_up_to_their_bounds():
    journal = Journal(size=10, body_chars=100)
    exact = [(f"H{n}", "v" * HEADER_CHARS) for n in range(MAX_HEADERS)]
    record(journal, headers=exact)
    record(journal, headers=exact + [("H-extra", "v")])
    record(journal, headers=[("K" * 600, "v" * (HEADER_CHARS + 1))])
    whole, capped, cut = journal.entries()
    assert whole["headers"] == dict(exact) and capped["headers"] == dict(exact)
    assert cut["headers"] == {"K" * HEADER_CHARS: "v" * HEADER_CHARS}


def test_the_body_is_cut_to_body_chars_and_says_so():
    journal = Journal(size=10, body_chars=4)
    record(journal, body=b"abcd")
    record(journal, body=b"abcde")
    record(journal, body="éééé".encode())        # 4 characters, 8 bytes: whole
    record(journal, body=b"\xff\xfeab")            # not UTF-8: replaced, never a failure
    assert [(e["body"], e["body_truncated"]) for e in journal.entries()] == [
        ("abcd", False), ("abcd", True), ("éééé", False), ("\ufffd\ufffdab", False)]


def test_long_ids_and_texts_are_cut_and_what_is_not_text_is_escaped():
    journal = Journal(size=10, body_chars=10)
    record(journal, job_id="j" * 600, batch_id="b" * 600, retry_after="9" * 200, query="q" * 600,
           path="/x\udc00", method="G\udc00")
    [entry] = journal.entries()
    assert (entry["job_id"], entry["batch_id"]) == ("j" * HEADER_CHARS, "b" * HEADER_CHARS)
    assert ("retry_after" not in entry, entry["query"]) == (True, "q" * 500)   # 9…9 s is no wait: left out
    assert (entry["path"], entry["method"]) == ("/x\\udc00", "G\\udc00")


def test_the_journal_keeps_the_newest_size_entries_numbered_from_1():
    journal = Journal(size=3, body_chars=10)
    for n in range(5):
        record(journal, path=f"/{n}")
    assert (journal.size, len(journal)) == (3, 3)
    assert [(e["seq"], e["path"]) for e in journal.entries()] == [(3, "/2"), (4, "/3"), (5, "/4")]
    assert [e["path"] for e in journal.entries(limit=2)] == ["/3", "/4"]
    assert journal.counts()["total"] == 5  # counts outlive the cap
    journal.clear()
    assert (journal.entries(), len(journal), journal.counts()["total"]) == ([], 0, 0)


# --- filters: each one alone ----------------------------------------------------------------------------

@pytest.fixture
def two() -> Journal:
    journal = Journal(size=10, body_chars=10)
    record(journal, method="POST", path="/sd3_5/v1", kind="submit", status=200, job_id="j1", batch_id="b1",
           rule="r1", headers={"API-Key": "k1"})
    record(journal, method="GET", path="/sd3_5/v1/status/j1", kind="status", status=503, job_id="j2",
           batch_id="b2", rule="r2", headers={"api-key": "k2"})
    return journal


@pytest.mark.parametrize("filters,seqs", [
    ({}, [1, 2]), ({"since": 1}, [2]), ({"since": 0}, [1, 2]), ({"since": 2}, []),
    ({"method": "post"}, [1]), ({"method": "GET"}, [2]),
    ({"path": "/sd3_5/v1"}, [1]), ({"path_prefix": "/sd3_5/v1"}, [1, 2]), ({"path_prefix": "/sd3_5/v1/"}, [2]),
    ({"kind": "status"}, [2]), ({"status": 503}, [2]), ({"status": 200}, [1]),
    ({"batch_id": "b1"}, [1]), ({"job_id": "j2"}, [2]), ({"rule": "r1"}, [1]),
    ({"key": "k1"}, [1]), ({"key": "k2"}, [2]), ({"key": "k3"}, []),
    ({"kind": "submit", "status": 503}, []), ({"method": "GET", "job_id": "j2", "rule": "r2"}, [2]),
])
def test_each_filter_compares_its_own_field(two, filters, seqs):
    assert [e["seq"] for e in two.entries(**filters)] == seqs


def test_the_key_filter_reads_the_key_and_still_shows_it_redacted(two):
    [entry] = two.entries(key="k2")
    assert entry["headers"] == {"api-key": "***"}


# --- counts ------------------------------------------------------------------------------------------------

def test_counts_by_kind_status_and_batch():
    journal = Journal(size=2, body_chars=10)
    record(journal, kind="submit", status=200, batch_id="b")
    record(journal, kind="submit", status=400, batch_id="b")
    record(journal, kind="submit", status=200)
    record(journal, kind="status", status=200, batch_id="not a submit")
    record(journal, kind="strange", status=404)
    assert journal.counts() == {
        "total": 5, "by_kind": {"submit": 3, "status": 1, "download": 0, "other": 1},
        "by_status": {"200": 3, "400": 1, "404": 1},
        "by_kind_status": {"submit": {"200": 2, "400": 1}, "status": {"200": 1}, "download": {}, "other": {"404": 1}},
        "submits_by_batch_id": {"b": 2}, "other_batch_ids": 0}


def test_batch_ids_past_the_first_thousand_are_counted_together():
    journal = Journal(size=1, body_chars=10)
    for n in range(MAX_COUNTED_BATCH_IDS):
        record(journal, kind="submit", batch_id=f"b{n}")
    record(journal, kind="submit", batch_id="late")
    record(journal, kind="submit", batch_id="late")
    record(journal, kind="submit", batch_id="b0")  # a counted one still counts by name
    counts = journal.counts()
    assert len(counts["submits_by_batch_id"]) == MAX_COUNTED_BATCH_IDS and "late" not in counts["submits_by_batch_id"]
    assert (counts["submits_by_batch_id"]["b0"], counts["other_batch_ids"]) == (2, 2)


# --- retry_after and api_key_id ---------------------------------------------------------------------------

@pytest.mark.parametrize("header,seconds", [
    ("2", 2), ("0", 0), ("1.5", 1.5), ("2.0", 2), (" 7 ", 7), (str(MAX_RETRY_AFTER), MAX_RETRY_AFTER),
    (str(MAX_RETRY_AFTER + 1), None), ("-1", None), ("-0.5", None), ("inf", None), ("nan", None), ("soon", None),
    ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("", None), (None, None),
])
def test_retry_after_is_a_number_of_seconds_or_left_out(header, seconds):
    journal = Journal(size=10, body_chars=10)
    record(journal, retry_after=header)
    [entry] = journal.entries()
    assert entry.get("retry_after", None) == seconds and ("retry_after" in entry) == (seconds is not None)
    assert type(entry.get("retry_after")) is type(seconds)      # whole seconds stay an int


def test_api_key_id_is_the_same_for_the_same_key_and_differs_otherwise_and_between_journals():
    journal, other = Journal(size=10, body_chars=10), Journal(size=10, body_chars=10)
    for headers in ({"API-Key": "k1"}, {"api-key": "k1"}, {"API-Key": "k2"}, {"API-Key": "k\udc80"}, {"X-Key": "k1"}):
        record(journal, headers=headers)
        record(other, headers=headers)
    ids = [e.get("api_key_id") for e in journal.entries()]
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3]}) == 3 and ids[4] is None
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids[:4])
    assert [e.get("api_key_id") for e in other.entries()][0] != ids[0]      # salted per journal
    [first] = journal.entries(key="k1", limit=1)
    assert first["api_key_id"] == ids[1]


def test_a_request_that_began_before_a_clear_is_not_recorded_after_it():
    """A reset between tests clears the journal while an earlier test's faulted request may still run: its
    entry belongs to what was cleared, not to the next test's journal."""
    journal = Journal(size=10, body_chars=100)
    began = journal.era
    journal.clear()
    journal.clear()
    assert journal.era == began + 2
    assert record(journal, path="/late", era=began) is None
    assert journal.entries() == [] and journal.counts()["total"] == 0
    assert record(journal, path="/now", era=journal.era) == 1
    assert record(journal, path="/any") == 2  # no era: always recorded
    assert [e["path"] for e in journal.entries()] == ["/now", "/any"]
