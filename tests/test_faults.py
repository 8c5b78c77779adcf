"""Fault rules in the core: each refusal whole, each bound at its edge, the defaults, and how the injector picks
(latencies add up to a cap, the first other rule acts, spent rules go). Written against the survivors of a
mutation run (docs/mutation.md); the HTTP layer's faults are tested in test_control, test_download_faults and
test_webhook_faults."""

from __future__ import annotations

import random

import pytest

from sd35_twin.mockserver.errors import InvalidRequest
from sd35_twin.mockserver.faults import (
    MAX_LATENCY_MS,
    MAX_RULES,
    OUT_OF_ORDER_MS,
    FaultInjector,
    FaultPlan,
    FaultRule,
    plan_of,
)

TYPES = ("latency, status, drop, malformed, trickle, truncate, wrong_length, reset, webhook_delay, webhook_duplicate, "
         "webhook_drop, webhook_out_of_order")
TRICKLE = ("must be whole bytes a second from 1024 to 104857600 (a trickle holds a server thread; it also ends "
           "within 30 s)")
WEBHOOK_ONLY = 'the webhook_* types, and only they, take endpoint "webhook" (their default)'


def refusal(data) -> list[tuple[str, str, str]]:
    with pytest.raises(InvalidRequest) as info:
        FaultRule.parse(data)
    return [(e.field, e.rule, e.message) for e in info.value.errors]


# --- every refusal, whole ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    ([], [("body", "type", "must be a JSON object")]),
    ({"type": "drop", "zz": 1, "aa": 2}, [("aa", "unknown", "is not a fault rule key"),
                                          ("zz", "unknown", "is not a fault rule key")]),
    ({"type": "boom"}, [("type", "enum", f"must be one of {TYPES}")]),
    ({"type": "drop", "endpoint": "jobs"}, [("endpoint", "enum", "must be one of any, submit, status, download, "
                                                                 "webhook")]),
    ({"type": "drop", "phase": "during"}, [("phase", "enum", "must be 'before' (nothing is handled) or 'after' "
                                                             "(handled, then the answer is lost)")]),
    ({"type": "drop", "times": 0}, [("times", "minimum", "must be an integer >= 1")]),
    ({"type": "drop", "rate": 1.5}, [("rate", "range", "must be a number from 0 to 1")]),
    ({"type": "drop", "times": 1, "rate": 0.5}, [("rate", "exclusive", "give either times or rate, not both")]),
    ({"type": "status", "status": 399}, [("status", "range", "must be an HTTP error status from 400 to 599")]),
    ({"type": "status", "status": 503, "retry_after": -1}, [("retry_after", "range",
                                                             "must be whole seconds from 0 to 86400")]),
    ({"type": "latency", "ms": -1}, [("ms", "range", "must be whole milliseconds from 0 to 60000")]),
    ({"type": "drop", "bytes_per_second": 5000}, [("bytes_per_second", "type", "applies only to type trickle")]),
    ({"type": "drop", "bytes": 5}, [("bytes", "type", "applies only to type truncate or reset or wrong_length")]),
    ({"type": "truncate", "endpoint": "status"}, [("endpoint", "download_only",
                                                   'type truncate breaks an image body: endpoint must be "download"')]),
    ({"type": "trickle", "endpoint": "download", "bytes_per_second": 1023}, [("bytes_per_second", "range", TRICKLE)]),
    ({"type": "truncate", "endpoint": "download", "bytes": -1}, [("bytes", "range",
                                                                  "must be a whole number of bytes, 0 or more")]),
    ({"type": "wrong_length", "endpoint": "download", "length": "wide"}, [
        ("length", "enum", "must be 'short' (declared below the body) or 'long'")]),
    ({"type": "drop", "copies": 2}, [("copies", "type", "applies only to type webhook_duplicate")]),
    ({"type": "drop", "attempts": 2}, [("attempts", "type", "applies only to type webhook_drop")]),
    ({"type": "drop", "length": "long"}, [("length", "type", "applies only to type wrong_length")]),
    ({"type": "drop", "endpoint": "webhook"}, [("endpoint", "webhook_only", WEBHOOK_ONLY)]),
    ({"type": "webhook_drop", "endpoint": "submit"}, [("endpoint", "webhook_only", WEBHOOK_ONLY)]),
    ({"type": "webhook_delay", "ms": 5, "phase": "after"}, [("phase", "type",
                                                            "applies only to the API endpoints' faults")]),
    ({"type": "webhook_duplicate", "copies": 11}, [("copies", "range", "must be a whole number from 1 to 10")]),
    ({"type": "webhook_drop", "attempts": 101}, [("attempts", "range", "must be a whole number from 1 to 100 "
                                                  "(attempts past the mock's webhook_max_attempts are never made)")]),
    ({"type": "webhook_out_of_order", "ms": 60_001}, [("ms", "range", "must be whole milliseconds from 0 to 60000")]),
])
def test_each_refusal_is_whole(data, expected):
    assert refusal(data) == expected


def test_every_broken_part_is_named():
    data = {"type": "status", "status": 200, "endpoint": "x", "phase": "x", "times": 0, "retry_after": 1.5, "q": 1}
    assert [e[:2] for e in refusal(data)] == [("q", "unknown"), ("endpoint", "enum"), ("phase", "enum"),
                                              ("times", "minimum"), ("status", "range"), ("retry_after", "range")]


# --- bounds at their edges -----------------------------------------------------------------------------------

@pytest.mark.parametrize("data,valid", [
    ({"type": "status", "status": 400}, True), ({"type": "status", "status": 599}, True),
    ({"type": "status", "status": 600}, False), ({"type": "status", "status": 500.0}, False),
    ({"type": "status", "status": 503, "retry_after": 0}, True),
    ({"type": "status", "status": 503, "retry_after": 86_400}, True),
    ({"type": "status", "status": 503, "retry_after": 86_401}, False),
    ({"type": "latency", "ms": 0}, True), ({"type": "latency", "ms": MAX_LATENCY_MS}, True),
    ({"type": "latency", "ms": MAX_LATENCY_MS + 1}, False), ({"type": "latency"}, False),
    ({"type": "webhook_delay", "ms": MAX_LATENCY_MS}, True), ({"type": "webhook_delay", "ms": -1}, False),
    ({"type": "drop", "rate": 0}, True), ({"type": "drop", "rate": 1}, True), ({"type": "drop", "rate": 1.0}, True),
    ({"type": "drop", "rate": -0.001}, False), ({"type": "drop", "rate": True}, False),
    ({"type": "drop", "times": 1}, True), ({"type": "drop", "times": True}, False),
    ({"type": "trickle", "endpoint": "download", "bytes_per_second": 1024}, True),
    ({"type": "trickle", "endpoint": "download", "bytes_per_second": 100 * 1024 * 1024}, True),
    ({"type": "trickle", "endpoint": "download", "bytes_per_second": 100 * 1024 * 1024 + 1}, False),
    ({"type": "trickle", "endpoint": "download"}, False),
    ({"type": "truncate", "endpoint": "download", "bytes": 0}, True),
    ({"type": "reset", "endpoint": "download", "bytes": 1 << 30}, True),
    ({"type": "reset", "endpoint": "download", "bytes": (1 << 30) + 1}, False),
    ({"type": "webhook_duplicate", "copies": 1}, True), ({"type": "webhook_duplicate", "copies": 10}, True),
    ({"type": "webhook_duplicate", "copies": 0}, False),
    ({"type": "webhook_drop", "attempts": 1}, True), ({"type": "webhook_drop", "attempts": 100}, True),
    ({"type": "webhook_drop", "attempts": 0}, False),
    ({"type": "webhook_out_of_order", "ms": 0}, True), ({"type": "webhook_out_of_order", "ms": MAX_LATENCY_MS}, True),
    ({"type": "webhook_out_of_order", "ms": -1}, False),
])
def test_bounds_at_their_edges(data, valid):
    if valid:
        rule = FaultRule.parse(data)
        assert all(getattr(rule, k) == v for k, v in data.items())
    else:
        assert len(refusal(data)) == 1


# --- defaults and what a rule shows ------------------------------------------------------------------------------

@pytest.mark.parametrize("data,shown", [
    ({"type": "drop"}, {"type": "drop", "endpoint": "any", "times": 1, "phase": "before", "applied": 0}),
    ({"type": "drop", "rate": 0.5, "phase": "after", "endpoint": "status"},
     {"type": "drop", "endpoint": "status", "rate": 0.5, "phase": "after", "applied": 0}),
    ({"type": "status", "status": 503, "retry_after": 2, "times": 3},
     {"type": "status", "endpoint": "any", "times": 3, "status": 503, "retry_after": 2, "phase": "before",
      "applied": 0}),
    ({"type": "wrong_length", "endpoint": "download"},
     {"type": "wrong_length", "endpoint": "download", "times": 1, "phase": "before", "length": "short",
      "applied": 0}),
    ({"type": "wrong_length", "endpoint": "download", "length": "long", "bytes": 7},
     {"type": "wrong_length", "endpoint": "download", "times": 1, "phase": "before", "length": "long", "bytes": 7,
      "applied": 0}),
    ({"type": "trickle", "endpoint": "download", "bytes_per_second": 2048},
     {"type": "trickle", "endpoint": "download", "times": 1, "phase": "before", "bytes_per_second": 2048,
      "applied": 0}),
    ({"type": "webhook_duplicate"}, {"type": "webhook_duplicate", "endpoint": "webhook", "times": 1,
                                     "phase": "before", "copies": 1, "applied": 0}),
    ({"type": "webhook_drop", "attempts": 3}, {"type": "webhook_drop", "endpoint": "webhook", "times": 1,
                                               "phase": "before", "attempts": 3, "applied": 0}),
    ({"type": "webhook_drop"}, {"type": "webhook_drop", "endpoint": "webhook", "times": 1, "phase": "before",
                                "attempts": 1, "applied": 0}),
    ({"type": "webhook_out_of_order"}, {"type": "webhook_out_of_order", "endpoint": "webhook", "times": 1,
                                        "ms": OUT_OF_ORDER_MS, "phase": "before", "applied": 0}),
    ({"type": "latency", "ms": 5}, {"type": "latency", "endpoint": "any", "times": 1, "ms": 5, "phase": "before",
                                    "applied": 0}),
])
def test_defaults_and_what_a_rule_shows(data, shown):
    assert FaultRule.parse(data).as_dict() == shown


@pytest.mark.parametrize("data,text", [
    ({"type": "webhook_delay", "ms": 50}, "webhook_delay 50 ms"),
    ({"type": "webhook_duplicate", "copies": 3}, "webhook_duplicate x3"),
    ({"type": "webhook_drop", "attempts": 2}, "webhook_drop first 2"),
    ({"type": "webhook_out_of_order", "ms": 20}, "webhook_out_of_order (held up to 20 ms)"),
    ({"type": "drop"}, "drop"),
])
def test_describe(data, text):
    assert FaultRule.parse(data).describe() == text


@pytest.mark.parametrize("endpoint,matched", [
    ("any", {"submit", "status", "download"}), ("status", {"status"}), ("webhook", {"webhook"}),
])
def test_a_rule_matches_its_endpoint_and_any_means_the_three_api_ones(endpoint, matched):
    kind = "webhook_drop" if endpoint == "webhook" else "drop"
    rule = FaultRule.parse({"type": kind, "endpoint": endpoint})
    assert {e for e in ("submit", "status", "download", "webhook") if rule.matches(e)} == matched


def test_plan_of_a_rules_fault():
    assert plan_of(FaultRule.parse({"type": "latency", "ms": 40})) == FaultPlan(before_ms=40, after_ms=0)
    assert plan_of(FaultRule.parse({"type": "latency", "ms": 40, "phase": "after"})) == FaultPlan(0, 40)
    drop = FaultRule.parse({"type": "drop"})
    assert plan_of(drop) == FaultPlan(action=drop)


# --- the injector ----------------------------------------------------------------------------------------------

def test_latencies_add_up_per_phase_the_first_other_rule_acts_and_spent_rules_go():
    faults = FaultInjector(seed=1)
    faults.add({"type": "latency", "ms": 10, "times": 2})
    faults.add({"type": "latency", "ms": 5, "phase": "after", "endpoint": "status"})
    first = faults.add({"type": "status", "status": 503, "endpoint": "status"})
    second = faults.add({"type": "drop", "endpoint": "status"})
    faults.add({"type": "latency", "ms": 7, "endpoint": "status"})
    plan = faults.pick("status")
    assert (plan.before_ms, plan.after_ms, plan.action) == (17, 5, first)
    assert (first.applied, second.applied) == (1, 0)  # the second action waits its turn
    assert [r["type"] for r in faults.rules()] == ["latency", "drop"]
    assert faults.pick("status") == FaultPlan(10, 0, second)
    assert faults.rules() == [] and faults.pick("status") == FaultPlan()


def test_latency_is_capped_and_other_endpoints_are_untouched():
    faults = FaultInjector()
    for _ in range(3):
        faults.add({"type": "latency", "ms": MAX_LATENCY_MS, "endpoint": "submit", "phase": "after"})
    assert faults.pick("status") == FaultPlan()
    assert faults.pick("submit") == FaultPlan(0, MAX_LATENCY_MS, None)


def test_a_rate_is_drawn_from_the_seed_and_replays():
    def picks(seed):
        faults = FaultInjector(seed=seed)
        faults.add({"type": "drop", "rate": 0.5})
        return [faults.pick("submit").action is not None for _ in range(40)]
    rng = random.Random(7)
    assert picks(7) == [rng.random() < 0.5 for _ in range(40)]
    never, always = FaultInjector(), FaultInjector()
    never.add({"type": "drop", "rate": 0})
    always.add({"type": "drop", "rate": 1})
    assert [never.pick("submit").action for _ in range(5)] == [None] * 5
    assert all(always.pick("submit").action is not None for _ in range(5))
    assert always.rules()[0]["applied"] == 5


def test_clear_forgets_the_rules_and_restarts_the_seed():
    faults = FaultInjector(seed=3)
    faults.add({"type": "drop", "rate": 0.5})
    first = [faults.pick("submit").action is not None for _ in range(20)]
    faults.clear(seed=3)
    assert faults.rules() == []
    faults.add({"type": "drop", "rate": 0.5})
    assert [faults.pick("submit").action is not None for _ in range(20)] == first


def test_at_most_100_rules_and_a_refusal_adds_none():
    faults = FaultInjector()
    with pytest.raises(InvalidRequest):
        faults.add({"type": "boom"})
    for _ in range(MAX_RULES):
        faults.add({"type": "drop"})
    with pytest.raises(InvalidRequest) as info:
        faults.add({"type": "drop"})
    assert [(e.field, e.rule, e.message) for e in info.value.errors] == [("faults", "maxItems",
                                                                          "at most 100 rules at once")]
    assert len(faults.rules()) == MAX_RULES


def test_a_rule_its_rate_skips_leaves_the_next_rule_to_act():
    faults = FaultInjector(seed=5)
    faults.add({"type": "drop", "rate": 0})
    second = faults.add({"type": "status", "status": 503})
    assert faults.pick("submit").action is second
