"""Rules, stated whole: each refusal as (field, rule, message) in order, each bound at its edge, each match
condition failing alone, what a rule shows and keeps. Written against the survivors of a mutation run
(docs/mutation.md): each test here fails if one of those changes is made to rules.py."""

from __future__ import annotations

import pytest

from sd35_twin.mockserver.config import redact_key
from sd35_twin.mockserver.errors import InvalidRequest, NotFound
from sd35_twin.mockserver.rules import MAX_RULES, Facts, RuleBook, parse_rule
from sd35_twin.mockserver.validation import compile_pattern

REQ = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
       "guidance_scale": 0.0, "width": 256, "height": 256}
TEXT = "must be a non-empty string of at most 2000 characters"
HEADERS = "must map at most 20 header names to the exact values to match (strings)"
SECONDS = 'must be seconds from 0 to 86400, with lifecycle "seconds" or "polls_and_seconds" (or none)'
POLLS = 'must be a whole number from 1 to 10000, with lifecycle "polls" or "polls_and_seconds" (or none)'
ERROR = 'must be a non-empty string of at most 2000 characters, with outcome "FAILURE"'


def refusal(data) -> list[tuple[str, str, str]]:
    with pytest.raises(InvalidRequest) as info:
        parse_rule("r1", data)
    return [(e.field, e.rule, e.message) for e in info.value.errors]


def re2_reason(pattern: str) -> str:
    with pytest.raises(ValueError) as info:
        compile_pattern(pattern)
    return str(info.value)


# --- every refusal, whole -------------------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    ([], [("body", "type", "must be a JSON object")]),
    ({"outcome": "SUCCESS", "colour": 1, "after": 2},
     [("after", "unknown", "is not a rule key: one of match, lifecycle, pending_seconds, pending_polls, outcome, "
                           "error, fault, times"),
      ("colour", "unknown", "is not a rule key: one of match, lifecycle, pending_seconds, pending_polls, outcome, "
                            "error, fault, times")]),
    ({"lifecycle": "later"}, [("lifecycle", "enum", "must be one of immediate, seconds, polls, polls_and_seconds, manual")]),
    ({"lifecycle": "polls", "pending_seconds": 2}, [("pending_seconds", "range", SECONDS)]),
    ({"pending_polls": 0}, [("pending_polls", "range", POLLS)]),
    ({"outcome": "DONE"}, [("outcome", "enum", "must be SUCCESS or FAILURE")]),
    ({"outcome": "SUCCESS", "error": "x"}, [("error", "type", ERROR)]),
    ({"outcome": "SUCCESS", "times": 0}, [("times", "minimum", "must be a whole number >= 1 (leave it out: until "
                                                                "deleted)")]),
    ({}, [("body", "effect", "a rule needs an effect: lifecycle, pending_seconds, pending_polls, outcome or fault")]),
    ({"match": [], "outcome": "SUCCESS"}, [("match", "type", "must be a JSON object (empty: every request)")]),
    ({"match": {"key": "k"}, "outcome": "SUCCESS"},
     [("match.key", "unknown", "is not a match key: one of api_key, batch_id, prompt_contains, prompt_pattern, "
                               "headers")]),
    ({"match": {"headers": {"X-A": 1}}, "outcome": "SUCCESS"}, [("match.headers", "type", HEADERS)]),
    ({"fault": {"type": "status", "status": 503, "times": 2, "rate": 0.5}},
     [("fault.times", "rule", "is the rule's to say (its times)"),
      ("fault.rate", "rule", "is the rule's to say (its times)")]),
])
def test_each_refusal_is_whole_and_in_order(data, expected):
    assert refusal(data) == expected


def test_every_broken_part_is_named_in_the_order_of_the_body():
    """Unknown keys, the match, timing, outcome, error, times, then the fault: none replaces another."""
    data = {"zzz": 1, "match": {"api_key": ""}, "pending_seconds": -1, "outcome": "X", "error": 5, "times": 0,
            "fault": {"type": "status", "status": 503, "times": 1}}
    assert [e[:2] for e in refusal(data)] == [
        ("zzz", "unknown"), ("match.api_key", "type"), ("pending_seconds", "range"), ("outcome", "enum"),
        ("error", "type"), ("times", "minimum"), ("fault.times", "rule")]


@pytest.mark.parametrize("name", ["api_key", "batch_id", "prompt_contains", "prompt_pattern"])
@pytest.mark.parametrize("value", ["", 5, None, ["a"], "x" * 2001])
def test_each_match_string_must_be_a_short_non_empty_string(name, value):
    assert refusal({"match": {name: value}, "outcome": "SUCCESS"}) == [(f"match.{name}", "type", TEXT)]


@pytest.mark.parametrize("name", ["api_key", "batch_id", "prompt_contains", "prompt_pattern"])
def test_each_match_string_may_be_2000_characters(name):
    assert parse_rule("r1", {"match": {name: "x" * 2000}, "outcome": "SUCCESS"}).match == {name: "x" * 2000}


@pytest.mark.parametrize("pattern", ["(a", "(?=a)", "(a)\\1"])
def test_a_pattern_re2_cannot_run_names_re2s_reason(pattern):
    assert refusal({"match": {"prompt_pattern": pattern}, "outcome": "SUCCESS"}) == [
        ("match.prompt_pattern", "pattern", f"is not a pattern RE2 can run: {re2_reason(pattern)}")]


# --- the edges of every bound ----------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [0, 0.5, 86_400, 86_400.0])
def test_pending_seconds_from_0_to_a_day_inclusive(seconds):
    rule = parse_rule("r1", {"pending_seconds": seconds})
    assert (rule.lifecycle, rule.pending_seconds) == ("seconds", seconds)


@pytest.mark.parametrize("seconds", [-0.001, 86_400.001, 86_401, "5", True, float("nan")])
def test_pending_seconds_outside_the_bound_is_refused(seconds):
    assert refusal({"pending_seconds": seconds}) == [("pending_seconds", "range", SECONDS)]


@pytest.mark.parametrize("polls", [1, 2, 10_000])
def test_pending_polls_from_1_to_10000_inclusive(polls):
    rule = parse_rule("r1", {"pending_polls": polls})
    assert (rule.lifecycle, rule.pending_polls) == ("polls", polls)


@pytest.mark.parametrize("polls", [0, 10_001, 2.0, True])
def test_pending_polls_outside_the_bound_is_refused(polls):
    assert refusal({"pending_polls": polls}) == [("pending_polls", "range", POLLS)]


def test_an_error_text_of_2000_characters_is_kept_2001_refused():
    assert parse_rule("r1", {"outcome": "FAILURE", "error": "e" * 2000}).error == "e" * 2000
    assert refusal({"outcome": "FAILURE", "error": "e" * 2001}) == [("error", "type", ERROR)]


def test_times_from_1():
    assert parse_rule("r1", {"outcome": "SUCCESS", "times": 1}).times == 1
    assert refusal({"outcome": "SUCCESS", "times": 1.0})[0][:2] == ("times", "minimum")


@pytest.mark.parametrize("headers,valid", [
    ({f"X-{n}": "v" for n in range(20)}, True), ({f"X-{n}": "v" for n in range(21)}, False),
    ({"x" * 200: "v"}, True), ({"x" * 201: "v"}, False), ({"": "v"}, False),
    ({"X-A": "v" * 2000}, True), ({"X-A": "v" * 2001}, False), ({"X-A": ""}, True),
])
def test_header_conditions_at_their_bounds(headers, valid):
    data = {"match": {"headers": headers}, "outcome": "SUCCESS"}
    if valid:
        assert parse_rule("r1", data).match == {"headers": headers}
    else:
        assert refusal(data) == [("match.headers", "type", HEADERS)]


# --- matching: each condition failing alone --------------------------------------------------------

ALL = {"api_key": "k", "batch_id": "b", "prompt_contains": "red", "prompt_pattern": "^a .* fox$",
       "headers": {"X-Test": "one"}}
MATCHING = Facts(api_key="k", headers={"x-test": "one"}, batch_id="b", prompt="a red fox")


@pytest.mark.parametrize("condition,changed", [
    ("api_key", {"api_key": "K"}), ("api_key", {"api_key": None}),
    ("batch_id", {"batch_id": "B"}), ("batch_id", {"batch_id": None}),
    ("prompt_contains", {"prompt": "a blue fox"}),       # the pattern still holds
    ("prompt_pattern", {"prompt": "a red fox!"}),        # the substring still holds
    ("headers", {"headers": {"x-test": "two"}}), ("headers", {"headers": {"x-other": "one"}}),
])
def test_each_condition_alone_can_refuse_a_match(condition, changed):
    rule = parse_rule("r1", {"match": ALL, "outcome": "FAILURE"})
    assert rule.matches(MATCHING)
    assert not rule.matches(Facts(**{**MATCHING.__dict__, **changed}))
    alone = parse_rule("r1", {"match": {condition: ALL[condition]}, "outcome": "FAILURE"})
    assert alone.matches(MATCHING) and not alone.matches(Facts(**{**MATCHING.__dict__, **changed}))


@pytest.mark.parametrize("condition", ["prompt_contains", "prompt_pattern"])
def test_a_prompt_condition_never_matches_a_request_without_a_prompt(condition):
    rule = parse_rule("r1", {"match": {condition: ALL[condition]}, "outcome": "FAILURE"})
    assert not rule.matches(Facts(api_key="k"))


def test_header_names_match_in_any_case_values_exactly():
    rule = parse_rule("r1", {"match": {"headers": {"X-TEST": "One"}}, "outcome": "FAILURE"})
    assert rule.matches(Facts(headers={"x-test": "One"}))
    assert not rule.matches(Facts(headers={"x-test": "one"}))


# --- what a rule keeps and shows ---------------------------------------------------------------------

def test_a_rule_keeps_every_part_it_was_given():
    rule = parse_rule("r7", {"match": {"batch_id": "b"}, "lifecycle": "polls", "pending_polls": 3,
                             "outcome": "FAILURE", "error": "nsfw", "times": 2,
                             "fault": {"type": "webhook_delay", "ms": 10}})
    assert (rule.id, rule.match, rule.lifecycle, rule.pending_seconds, rule.pending_polls, rule.outcome,
            rule.error, rule.times, rule.fault.type) == ("r7", {"batch_id": "b"}, "polls", None, 3, "FAILURE",
                                                         "nsfw", 2, "webhook_delay")
    timed = parse_rule("r8", {"lifecycle": "seconds", "pending_seconds": 4.5})
    assert (timed.pending_seconds, timed.pending_polls) == (4.5, None)


def test_as_dict_shows_what_was_set_the_key_redacted_and_the_fault_without_its_counters():
    rule = parse_rule("r3", {"match": {"api_key": "secret-key-1", "batch_id": "b"}, "lifecycle": "seconds",
                             "pending_seconds": 5, "fault": {"type": "status", "status": 503, "endpoint": "status"},
                             "times": 4})
    fault = rule.fault.as_dict()
    assert {"times", "applied"} <= set(fault)
    assert rule.as_dict() == {
        "id": "r3", "match": {"api_key": redact_key("secret-key-1"), "batch_id": "b"}, "lifecycle": "seconds",
        "pending_seconds": 5, "fault": {k: v for k, v in fault.items() if k not in ("times", "applied")},
        "times": 4, "applied": 0}
    assert rule.match["api_key"] == "secret-key-1"  # only what is shown is redacted
    assert parse_rule("r4", {"outcome": "SUCCESS"}).as_dict() == {"id": "r4", "match": {}, "outcome": "SUCCESS",
                                                                 "times": None, "applied": 0}


# --- the book -----------------------------------------------------------------------------------------

def test_ids_count_up_one_by_one_across_clears_and_refusals():
    book = RuleBook()
    assert [book.add({"outcome": "SUCCESS"}).id for _ in range(3)] == ["r1", "r2", "r3"]
    book.clear()
    with pytest.raises(InvalidRequest):
        book.add({"outcome": "NO"})
    assert book.add({"outcome": "SUCCESS"}).id == "r4"


def test_the_book_refuses_the_101st_rule_whole():
    book = RuleBook()
    for _ in range(MAX_RULES):
        book.add({"outcome": "SUCCESS"})
    with pytest.raises(InvalidRequest) as info:
        book.add({"outcome": "SUCCESS"})
    assert [(e.field, e.rule, e.message) for e in info.value.errors] == [("rules", "maxItems",
                                                                          "at most 100 rules at once")]
    assert len(book.rules()) == MAX_RULES


@pytest.mark.parametrize("rule_id,shown", [("r9", "'r9'"), ("x" * 150, repr("x" * 100)), ("\udc00", "'\\\\udc00'")])
def test_removing_an_unknown_rule_names_its_id_cut_to_100(rule_id, shown):
    book = RuleBook()
    book.add({"outcome": "SUCCESS"})
    with pytest.raises(NotFound) as info:
        book.remove(rule_id)
    assert [(e.field, e.rule, e.message) for e in info.value.errors] == [("id", "exists", f"no rule with id {shown}")]
    assert len(book.rules()) == 1


# --- a rule's own timing, in the backend -----------------------------------------------------------------

def test_a_rules_seconds_are_its_own_not_the_configurations(backend):
    job = backend.submit("k", REQ, "http://mock", rule=backend.rules.add({"pending_seconds": 30}))
    backend.advance_clock(29.5)
    assert backend.status("k", job.id).status == "PENDING"
    backend.advance_clock(0.5)
    assert backend.status("k", job.id).status == "SUCCESS"


def test_a_rules_polls_are_its_own_not_the_configurations(backend):
    job = backend.submit("k", REQ, "http://mock", rule=backend.rules.add({"pending_polls": 3}))
    assert [backend.status("k", job.id).status for _ in range(3)] == ["PENDING", "PENDING", "SUCCESS"]
