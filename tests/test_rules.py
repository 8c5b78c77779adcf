"""Rules: outcomes scoped to the requests that match them (docs/wire.md, "Rules"), in the core and over HTTP."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given, settings, strategies as st

from sd35_twin.mockserver.backend import MockBackend
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.errors import InvalidRequest, NotFound
from sd35_twin.mockserver.rules import MAX_RULES, Facts, RuleBook, parse_rule

REQ = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
       "guidance_scale": 0.0, "width": 256, "height": 256}


def submit(mock, key="rules-key-a", headers=None, **fields):
    return requests.post(f"{mock.url}/sd3_5/v1", json={**REQ, **fields}, headers={"API-Key": key, **(headers or {})},
                         timeout=10)


def status(mock, job_id, key="rules-key-a", headers=None):
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers={"API-Key": key, **(headers or {})},
                        timeout=10)


def errors_of(exc: InvalidRequest) -> list[tuple[str, str]]:
    return [(e.field, e.rule) for e in exc.errors]


# --- the rule book: parsing, matching, order, spending ------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    ({}, [("body", "effect")]),
    ({"match": {}}, [("body", "effect")]),
    ([], [("body", "type")]),
    ({"outcome": "DONE"}, [("outcome", "enum")]),
    ({"outcome": "SUCCESS", "error": "x"}, [("error", "type")]),
    ({"outcome": "FAILURE", "error": ""}, [("error", "type")]),
    ({"lifecycle": "later"}, [("lifecycle", "enum")]),
    ({"lifecycle": "polls", "pending_seconds": 2}, [("pending_seconds", "range")]),
    ({"lifecycle": "seconds", "pending_seconds": 2, "pending_polls": 2}, [("pending_polls", "range")]),
    ({"pending_polls": 0}, [("pending_polls", "range")]),
    ({"pending_seconds": float("inf")}, [("pending_seconds", "range")]),
    ({"outcome": "SUCCESS", "times": 0}, [("times", "minimum")]),
    ({"outcome": "SUCCESS", "times": True}, [("times", "minimum")]),
    ({"outcome": "SUCCESS", "colour": 1}, [("colour", "unknown")]),
    ({"match": [], "outcome": "SUCCESS"}, [("match", "type")]),
    ({"match": {"key": "k"}, "outcome": "SUCCESS"}, [("match.key", "unknown")]),
    ({"match": {"api_key": ""}, "outcome": "SUCCESS"}, [("match.api_key", "type")]),
    ({"match": {"batch_id": 7}, "outcome": "SUCCESS"}, [("match.batch_id", "type")]),
    ({"match": {"prompt_pattern": "(a"}, "outcome": "SUCCESS"}, [("match.prompt_pattern", "pattern")]),
    ({"match": {"prompt_pattern": "(?=a)"}, "outcome": "SUCCESS"}, [("match.prompt_pattern", "pattern")]),
    ({"match": {"headers": {"X-A": 1}}, "outcome": "SUCCESS"}, [("match.headers", "type")]),
    ({"match": {"headers": "X-A: 1"}, "outcome": "SUCCESS"}, [("match.headers", "type")]),
    ({"fault": {"type": "status", "status": 503, "times": 2}}, [("fault.times", "rule")]),
    ({"fault": {"type": "status", "status": 503, "rate": 0.5}}, [("fault.rate", "rule")]),
    ({"fault": {"type": "status", "status": 200}}, [("fault.status", "range")]),
    ({"fault": {"type": "webhook_drop", "endpoint": "submit"}}, [("fault.endpoint", "webhook_only")]),
])
def test_a_bad_rule_is_refused_naming_every_field(data, expected):
    with pytest.raises(InvalidRequest) as info:
        parse_rule("r1", data)
    assert errors_of(info.value) == expected


def test_a_timing_alone_says_which_lifecycle():
    assert parse_rule("r1", {"pending_seconds": 5}).lifecycle == "seconds"
    assert parse_rule("r1", {"pending_polls": 3}).lifecycle == "polls"
    assert parse_rule("r1", {"lifecycle": "manual"}).lifecycle == "manual"


def test_every_condition_must_hold():
    rule = parse_rule("r1", {"match": {"api_key": "k", "batch_id": "b", "prompt_contains": "fox",
                                       "prompt_pattern": "^a .* fox$", "headers": {"X-Test": "one"}},
                             "outcome": "FAILURE"})
    facts = Facts(api_key="k", headers={"x-test": "one"}, batch_id="b", prompt="a red fox")
    assert rule.matches(facts)
    for changed in ({"api_key": "K"}, {"batch_id": None}, {"prompt": "a red cat"}, {"prompt": "the red fox"},
                    {"headers": {"x-test": "two"}}, {"headers": {}}):
        assert not rule.matches(Facts(**{**facts.__dict__, **changed})), changed


def test_the_first_matching_rule_wins_and_spends_only_itself():
    book = RuleBook()
    narrow = book.add({"match": {"batch_id": "b"}, "outcome": "FAILURE", "times": 2})
    broad = book.add({"outcome": "SUCCESS"})
    facts = Facts(batch_id="b")
    assert [book.take("submit", lambda _: facts).id for _ in range(3)] == [narrow.id, narrow.id, broad.id]
    assert [r["id"] for r in book.rules()] == [broad.id]  # spent: gone
    assert book.take("submit", lambda _: Facts()).id == broad.id and broad.times is None


def test_a_rule_applies_only_to_the_endpoints_its_effect_touches():
    book = RuleBook()
    book.add({"outcome": "FAILURE"})
    downloads = book.add({"fault": {"type": "truncate", "endpoint": "download"}})
    assert book.take("status", lambda _: Facts()) is None      # an outcome is for submits
    assert book.take("download", lambda _: Facts()).id == downloads.id
    webhooks = RuleBook()
    webhooks.add({"fault": {"type": "webhook_delay", "ms": 10}})
    assert webhooks.take("status", lambda _: Facts()) is None  # a webhook fault shapes the job: submits only
    assert webhooks.take("submit", lambda _: Facts()) is not None


def test_the_job_is_read_only_when_a_rule_needs_it():
    book = RuleBook()
    book.add({"match": {"api_key": "k"}, "fault": {"type": "status", "status": 503}})
    asked = []
    book.take("status", lambda with_job: asked.append(with_job) or Facts(api_key="k"))
    book.add({"match": {"batch_id": "b"}, "fault": {"type": "status", "status": 503}})
    book.take("status", lambda with_job: asked.append(with_job) or Facts())
    assert asked == [False, True]
    assert RuleBook().take("submit", lambda _: pytest.fail("no rule: no facts")) is None


def test_ids_are_never_reused_and_the_book_is_bounded():
    book = RuleBook()
    first = book.add({"outcome": "SUCCESS"})
    book.clear()
    assert book.add({"outcome": "SUCCESS"}).id != first.id
    for _ in range(MAX_RULES - 1):
        book.add({"outcome": "SUCCESS"})
    with pytest.raises(InvalidRequest) as info:
        book.add({"outcome": "SUCCESS"})
    assert errors_of(info.value) == [("rules", "maxItems")]
    with pytest.raises(NotFound):
        book.remove("r999999")


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["match", "lifecycle", "pending_seconds", "pending_polls", "outcome",
                                        "error", "fault", "times", "other"]),
                       st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5),
                                 st.dictionaries(st.text(max_size=8), st.text(max_size=5), max_size=3)),
                       max_size=5))
def test_any_rule_body_is_accepted_or_refused_naming_fields_and_the_book_is_unchanged_on_refusal(data):
    book = RuleBook()
    try:
        book.add(data)
    except InvalidRequest as exc:
        assert exc.errors and all(e.field and e.rule and e.message for e in exc.errors)
        assert book.rules() == []
    else:
        assert len(book.rules()) == 1


# --- in the backend: lifecycle, timing and outcome per job ------------------------------------------

def _submit(backend, rule_data=None, key="k", **fields):
    rule = backend.rules.add(rule_data) if rule_data else None
    return backend.submit(key, {**REQ, **fields}, "http://mock", rule=rule)


def test_a_rules_outcome_and_lifecycle_are_the_jobs_whatever_the_configuration(backend):
    failing = _submit(backend, {"outcome": "FAILURE", "error": "nsfw", "lifecycle": "manual"})
    plain = _submit(backend)
    assert backend.status("k", plain.id).status == "SUCCESS"           # the configuration: first poll
    assert backend.status("k", failing.id).status == "PENDING"          # the rule's: manual
    backend.update_config({"lifecycle": "immediate"})
    assert backend.status("k", failing.id).status == "PENDING"          # still the rule's
    done = backend.force(failing.id, "FAILURE", "forced")
    assert (done.status, done.error, done.rule_id) == ("FAILURE", "forced", "r1")


def test_a_rules_failure_text_and_its_seconds(backend):
    job = _submit(backend, {"outcome": "FAILURE", "error": "nsfw", "pending_seconds": 30})
    assert backend.status("k", job.id).status == "PENDING"
    backend.advance_clock(31)
    view = backend.status("k", job.id)
    assert (view.status, view.error) == ("FAILURE", "nsfw")


def test_a_rule_leaves_other_jobs_seeded_outcomes_as_they_were():
    def outcomes(with_rule: bool) -> list[str]:
        made = MockBackend(MockConfig(lifecycle="immediate", failure_rate=0.5, seed=11))
        try:
            result = []
            for n in range(12):
                rule = made.rules.add({"outcome": "SUCCESS", "times": 1}) if with_rule and n == 3 else None
                result.append(made.submit("k", REQ, "http://mock", rule=rule).status)
            return result[:3] + result[4:]
        finally:
            made.close()
    assert outcomes(True) == outcomes(False)


def test_reset_forgets_the_rules(backend):
    backend.rules.add({"outcome": "FAILURE"})
    backend.reset()
    assert backend.rules.rules() == []


# --- over HTTP -------------------------------------------------------------------------------------

def test_http_rules_crud_and_refusals(sd35_mock):
    rule = sd35_mock.add_rule({"api_key": "secret-key-1", "headers": {"X-Test-Id": "t1"}}, outcome="FAILURE",
                              error="nsfw", times=2)
    assert rule["id"].startswith("r") and rule["applied"] == 0 and rule["times"] == 2
    assert rule["match"]["api_key"] != "secret-key-1"  # redacted, like every key the mock shows
    assert [r["id"] for r in sd35_mock.rules()] == [rule["id"]]
    refused = sd35_mock.request("POST", "/rules", json={"match": {"prompt_pattern": "(a+)+\\1"}, "outcome": "X"})
    assert refused.status_code == 400
    assert [(e["field"], e["rule"]) for e in refused.json()["errors"]] == [("match.prompt_pattern", "pattern"),
                                                                           ("outcome", "enum")]
    assert sd35_mock.request("DELETE", "/rules/r0").status_code == 404
    assert sd35_mock.request("POST", "/rules", data="{}", headers={"Content-Type": "text/plain"}).status_code == 415
    sd35_mock.remove_rule(rule["id"])
    assert sd35_mock.rules() == []
    sd35_mock.add_rule(outcome="SUCCESS")
    sd35_mock.clear_rules()
    assert sd35_mock.rules() == []


def test_http_outcomes_per_key_and_the_journal_names_the_rule(sd35_mock):
    failing = sd35_mock.add_rule({"api_key": "rules-key-a"}, outcome="FAILURE", error="nsfw content")
    a = submit(sd35_mock, "rules-key-a").json()["id"]
    b = submit(sd35_mock, "rules-key-b").json()["id"]
    assert status(sd35_mock, a, "rules-key-a").json() == {"status": "FAILURE", "id": a, "error": "nsfw content"}
    assert status(sd35_mock, b, "rules-key-b").json()["status"] == "SUCCESS"
    [entry] = sd35_mock.requests(rule=failing["id"])
    assert (entry["kind"], entry["job_id"]) == ("submit", a)
    assert sd35_mock.job(a)["rule"] == failing["id"] and sd35_mock.job(b)["rule"] is None
    assert [r["applied"] for r in sd35_mock.rules()] == [1]


def test_http_a_fault_for_one_batch_and_its_status_reads_only(sd35_mock):
    rule = sd35_mock.add_rule({"batch_id": "flaky"}, fault={"type": "status", "status": 503, "retry_after": 2,
                                                            "endpoint": "status"}, times=1)
    flaky = submit(sd35_mock, batch_id="flaky").json()["id"]
    calm = submit(sd35_mock, batch_id="calm").json()["id"]
    assert status(sd35_mock, calm).status_code == 200
    refused = status(sd35_mock, flaky)
    assert (refused.status_code, refused.headers["Retry-After"]) == (503, "2")
    assert status(sd35_mock, flaky).json()["status"] == "SUCCESS"  # times 1: spent
    [entry] = sd35_mock.requests(status=503)
    assert entry["job_id"] == flaky and entry["rule"] == rule["id"] and entry["fault"] == "status"


def test_http_a_header_and_a_prompt_select_a_download_fault(sd35_mock):
    rule = sd35_mock.add_rule({"prompt_contains": "broken", "headers": {"X-Scenario": "cut"}},
                              fault={"type": "truncate", "endpoint": "download", "bytes": 10})
    job = submit(sd35_mock, prompt="a broken vase").json()["id"]
    url = status(sd35_mock, job).json()["download_urls"][0]
    assert requests.get(url, timeout=10).status_code == 200 and len(requests.get(url, timeout=10).content) > 10
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, headers={"X-Scenario": "cut"}, timeout=10).content
    [cut] = sd35_mock.requests(kind="download", rule=rule["id"])
    assert cut["fault"].startswith("truncate at 10 of ")


def test_http_a_rules_fault_replaces_the_server_wide_ones(sd35_mock):
    sd35_mock.fault(type="status", status=500, endpoint="submit", times=5)
    sd35_mock.add_rule({"api_key": "rules-key-a"}, fault={"type": "latency", "ms": 1, "endpoint": "submit"})
    assert submit(sd35_mock, "rules-key-a").status_code == 200
    assert submit(sd35_mock, "rules-key-b").status_code == 500
    assert sd35_mock.faults()[0]["applied"] == 1


def test_http_an_invalid_submit_matching_a_rule_spends_a_use_and_creates_nothing(sd35_mock):
    rule = sd35_mock.add_rule({"batch_id": "b"}, outcome="FAILURE", times=1)
    assert submit(sd35_mock, batch_id="b", samples=0).status_code == 400
    assert sd35_mock.rules() == [] and sd35_mock.jobs() == []
    assert sd35_mock.requests(rule=rule["id"])[0]["status"] == 400


def test_http_a_prompt_pattern_runs_in_linear_time(sd35_mock):
    """A backtracking engine would take centuries on this (the test's timeout would fail it); RE2 microseconds."""
    sd35_mock.add_rule({"prompt_pattern": "(a+)+$"}, outcome="FAILURE")
    assert submit(sd35_mock, prompt="a" * 900 + "!").status_code == 200
    assert sd35_mock.requests(kind="submit")[0].get("rule") is None


def test_http_rules_survive_nothing_of_a_reset(sd35_mock):
    sd35_mock.add_rule(outcome="FAILURE")
    sd35_mock.reset()
    assert sd35_mock.rules() == []


def test_a_refused_rule_spends_no_id():
    book = RuleBook()
    with pytest.raises(InvalidRequest):
        book.add({"outcome": "MAYBE"})
    assert book.add({"outcome": "SUCCESS"}).id == "r1"
