"""Verification over real HTTP: journal filters and counts, and MockControl's assertions on client behaviour."""

import json

import pytest
import requests

from sd35_twin.mockserver import journal as journal_module
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.journal import Journal
from sd35_twin.mockserver.server import serve
from sd35_twin.mockserver.testing import MockControl

KEY_A, KEY_B = "verify-key-aaa", "verify-key-bbb"


def submit(mock, request, key=KEY_A, **fields):
    return requests.post(f"{mock.url}/sd3_5/v1", json={**request, **fields}, headers={"API-Key": key}, timeout=10)


def poll(mock, job_id, key=KEY_A):
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers={"API-Key": key}, timeout=10)


def journal(mock, **params):
    return requests.get(f"{mock.url}/__mock__/journal", params=params, timeout=10)


def test_journal_filters(sd35_mock, valid_request):
    first = submit(sd35_mock, valid_request, batch_id="b1").json()["id"]
    submit(sd35_mock, valid_request, batch_id="b1")
    other = submit(sd35_mock, valid_request, key=KEY_B, batch_id="b2").json()["id"]
    urls = poll(sd35_mock, first).json()["download_urls"]
    assert requests.get(urls[0], timeout=10).status_code == 200
    poll(sd35_mock, "no-such-job")

    everything = sd35_mock.requests()
    assert [e["kind"] for e in everything] == ["submit", "submit", "submit", "status", "download", "status"]
    assert [e["seq"] for e in everything] == sorted(e["seq"] for e in everything)
    assert len(sd35_mock.requests(method="post")) == 3 == len(sd35_mock.requests(path="/sd3_5/v1"))
    assert len(sd35_mock.requests(path_prefix="/sd3_5/v1/status/")) == 2
    assert sd35_mock.requests(path="/sd3_5/v1/status/") == []            # path is exact
    by_key = sd35_mock.requests(key=KEY_B)
    assert [e["job_id"] for e in by_key] == [other] and by_key[0]["headers"]["Api-Key"] == "***"
    response = journal(sd35_mock, key=KEY_A)
    assert KEY_A not in response.text and len(response.json()["requests"]) == 4   # 2 submits, 2 reads
    assert [e["batch_id"] for e in sd35_mock.requests(batch_id="b1")] == ["b1", "b1"]
    submit_read_download = sd35_mock.requests(job_id=first)  # the download names the job it served
    assert [(e["kind"], e["status"]) for e in submit_read_download] == [("submit", 200), ("status", 200),
                                                                         ("download", 200)]
    [missing] = sd35_mock.requests(status=404)
    assert missing["job_id"] == "no-such-job"
    assert sd35_mock.requests(kind="download")[0]["path"].startswith("/files/")
    since = everything[2]["seq"]
    assert [e["seq"] for e in sd35_mock.requests(since=since)] == [e["seq"] for e in everything[3:]]
    assert [e["seq"] for e in sd35_mock.requests(kind="submit", limit=1)] == [everything[2]["seq"]]
    assert sd35_mock.requests(kind="submit", key=KEY_B, batch_id="b1") == []  # every filter must match


@pytest.mark.parametrize("name, value", [("status", "abc"), ("status", "99"), ("since", "-1"), ("since", "1.5"),
                                         ("kind", "poll"), ("method", "G-T"), ("path", "sd3_5"),
                                         ("path_prefix", "x"), ("key", ""), ("batch_id", ""), ("job_id", ""),
                                         ("bogus", "1"), ("limit", "0")])
def test_bad_journal_filters_are_400s_naming_the_parameter(sd35_mock, name, value):
    response = journal(sd35_mock, **{name: value})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == name


def test_a_filter_given_twice_is_refused(sd35_mock):
    response = requests.get(f"{sd35_mock.url}/__mock__/journal?status=200&status=404", timeout=10)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "status"


def test_counts_outlive_the_journal_cap_and_reset(valid_request):
    with serve(MockConfig(journal_size=5, lifecycle="immediate")) as running:
        control = MockControl(running.url)
        try:
            for n in range(8):
                submit(running, valid_request, batch_id=f"batch-{n % 3}")
            for _ in range(3):
                poll(running, "unknown")
            assert len(control.requests()) == 5
            counts = control.counts()
            assert counts["total"] == 11
            assert counts["by_kind"] == {"submit": 8, "status": 3, "download": 0, "other": 0}
            assert counts["by_status"] == {"200": 8, "404": 3}
            assert counts["by_kind_status"]["status"] == {"404": 3}
            assert counts["submits_by_batch_id"] == {"batch-0": 3, "batch-1": 3, "batch-2": 2}
            assert counts["other_batch_ids"] == 0
            control.clear_journal()
            assert control.counts()["total"] == 0 and control.requests() == []
            submit(running, valid_request)
            assert control.counts()["by_kind"]["submit"] == 1
            control.reset()
            assert control.counts()["total"] == 0
        finally:
            control.close()


def test_batch_id_counts_are_bounded(monkeypatch):
    monkeypatch.setattr(journal_module, "MAX_COUNTED_BATCH_IDS", 2)
    log = Journal(size=3, body_chars=10)
    for batch in ("a", "b", "c", "a", "d"):
        log.record(at=0, method="POST", path="/sd3_5/v1", query="", headers={}, body=b"", status=200,
                   duration_ms=1, kind="submit", batch_id=batch)
    counts = log.counts()
    assert counts["submits_by_batch_id"] == {"a": 2, "b": 1} and counts["other_batch_ids"] == 2
    assert counts["total"] == 5 and len(log) == 3


def test_assert_submits(sd35_mock, valid_request):
    submit(sd35_mock, valid_request, batch_id="x")
    submit(sd35_mock, {"prompt": ""}, batch_id="y")   # refused, still a submit that reached the mock
    assert len(sd35_mock.assert_submits(2)) == 2
    sd35_mock.assert_submits(1, batch_id="x")
    sd35_mock.assert_submits(1, status=400)
    sd35_mock.assert_submits(0, key=KEY_B)
    with pytest.raises(AssertionError) as failure:
        sd35_mock.assert_submits(3, key=KEY_A)
    message = str(failure.value)
    assert "expected 3 submit(s) matching key=" in message and "found 2" in message
    assert "POST /sd3_5/v1 -> 200 at=" in message and "POST /sd3_5/v1 -> 400" in message
    assert KEY_A not in message.replace(f"key={KEY_A!r}", "")  # the key only as the caller wrote it


def test_assert_no_duplicate_submit(sd35_mock, valid_request):
    submit(sd35_mock, valid_request, batch_id="once")
    submit(sd35_mock, valid_request)
    submit(sd35_mock, {**valid_request, "prompt": "another"})  # another body: another job
    sd35_mock.assert_no_duplicate_submit()
    sd35_mock.assert_no_duplicate_submit(batch_id="once")
    submit(sd35_mock, valid_request, batch_id="twice")
    submit(sd35_mock, {**valid_request, "prompt": "not the same"}, batch_id="twice")  # one batch_id: one job
    sd35_mock.assert_no_duplicate_submit(batch_id="once")
    with pytest.raises(AssertionError) as failure:
        sd35_mock.assert_no_duplicate_submit()
    message = str(failure.value)
    assert "batch_id 'twice' submitted 2 times" in message and message.count("POST /sd3_5/v1 -> 200") == 2
    assert "batch_id='twice'" in message and "'once'" not in message
    with pytest.raises(AssertionError, match="'twice' submitted 2 times"):
        sd35_mock.assert_no_duplicate_submit(batch_id="twice")


def test_two_identical_submits_without_batch_id_are_duplicates(sd35_mock, valid_request):
    submit(sd35_mock, valid_request)
    reordered = dict(reversed(list(valid_request.items())))  # the same JSON, its keys in another order
    assert json.dumps(reordered) != json.dumps(valid_request)
    submit(sd35_mock, reordered)
    with pytest.raises(AssertionError) as failure:
        sd35_mock.assert_no_duplicate_submit()
    message = str(failure.value)
    assert "the same body with the same key submitted 2 times" in message
    assert message.count("POST /sd3_5/v1 -> 200") == 2


def test_the_same_body_from_two_keys_is_two_jobs(sd35_mock, valid_request):
    submit(sd35_mock, valid_request, key=KEY_A)
    submit(sd35_mock, valid_request, key=KEY_B)
    sd35_mock.assert_no_duplicate_submit()
    entries = sd35_mock.requests(kind="submit")
    assert entries[0]["body_digest"] == entries[1]["body_digest"]
    assert entries[0]["api_key_id"] != entries[1]["api_key_id"]
    assert KEY_A not in json.dumps(entries) and KEY_B not in json.dumps(entries)


def test_a_refused_submit_then_a_retry_is_no_duplicate(sd35_mock, valid_request):
    sd35_mock.fault(endpoint="submit", type="status", status=429, times=2)
    assert submit(sd35_mock, valid_request, batch_id="b").status_code == 429
    assert submit(sd35_mock, valid_request, batch_id="b").status_code == 429
    assert submit(sd35_mock, valid_request, batch_id="b").status_code == 200
    sd35_mock.assert_no_duplicate_submit()           # a 4xx created no job: one submit of the job
    sd35_mock.assert_no_duplicate_submit(status=200)
    with pytest.raises(AssertionError, match="batch_id 'b' submitted 2 times") as failure:
        sd35_mock.assert_no_duplicate_submit(status=429)  # asked for: the refused ones are compared too
    assert str(failure.value).count("-> 429") == 2 and "-> 200" not in str(failure.value)


def test_assert_no_duplicate_submit_can_count_accepted_submits_only(sd35_mock, valid_request):
    sd35_mock.fault(endpoint="submit", type="status", status=503)
    assert submit(sd35_mock, valid_request, batch_id="retried").status_code == 503
    assert submit(sd35_mock, valid_request, batch_id="retried").status_code == 200
    sd35_mock.assert_no_duplicate_submit(status=200)
    with pytest.raises(AssertionError, match="-> 503"):
        sd35_mock.assert_no_duplicate_submit()


def test_assert_poll_interval(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="manual")
    job = submit(sd35_mock, valid_request).json()["id"]
    with pytest.raises(AssertionError, match="no status read of job"):
        sd35_mock.assert_poll_interval(job, at_least=2)
    poll(sd35_mock, job)
    sd35_mock.assert_poll_interval(job, at_least=2)   # one read: nothing to compare
    sd35_mock.advance(3)                              # the journal's `at` is the mock's clock
    poll(sd35_mock, job)
    sd35_mock.assert_poll_interval(job, at_least=2)
    poll(sd35_mock, job)                              # at once
    with pytest.raises(AssertionError) as failure:
        sd35_mock.assert_poll_interval(job, at_least=2)
    message = str(failure.value)
    assert f"job {job!r} polled sooner than every 2 s" in message
    assert message.count(f"GET /sd3_5/v1/status/{job} -> 200 at=") == 3


def test_assert_retry_after_honoured(sd35_mock, valid_request):
    sd35_mock.fault(endpoint="submit", type="status", status=429, retry_after=2)
    assert submit(sd35_mock, valid_request).headers["Retry-After"] == "2"
    sd35_mock.assert_retry_after_honoured()           # no later submit yet
    sd35_mock.advance(2.5)
    assert submit(sd35_mock, valid_request).status_code == 200
    poll(sd35_mock, "whatever")                       # another kind does not count
    sd35_mock.assert_retry_after_honoured()
    assert sd35_mock.requests(kind="submit")[0]["retry_after"] == 2  # a number of seconds, as the fault took it

    sd35_mock.fault(endpoint="status", type="status", status=503, retry_after=5)
    poll(sd35_mock, "whatever")
    poll(sd35_mock, "whatever")                       # at once
    sd35_mock.assert_retry_after_honoured(kind="submit")
    sd35_mock.assert_retry_after_honoured(key=KEY_B)  # no request of that key
    with pytest.raises(AssertionError) as failure:
        sd35_mock.assert_retry_after_honoured()
    message = str(failure.value)
    assert "Retry-After not honoured" in message and "answered Retry-After: 5" in message
    assert "GET /sd3_5/v1/status/whatever -> 503" in message and "retry_after=5 " in message
    assert "POST" not in message


def test_journal_entries_are_json_whatever_the_submit(sd35_mock):
    deep = b"[" * 100_000 + b"]" * 100_000
    response = requests.post(f"{sd35_mock.url}/sd3_5/v1", data=deep, timeout=10,
                             headers={"API-Key": KEY_A, "Content-Type": "application/json"})
    assert response.status_code == 400
    [entry] = sd35_mock.requests()
    assert entry["kind"] == "submit" and "batch_id" not in entry and "job_id" not in entry
    json.dumps(entry)
