"""Rules: outcomes scoped to the requests that match them, so tests that share one mock never step on each other.

A rule matches on what a request carries (its API key, headers) and on its job (``batch_id``, the prompt),
every condition it names holding. Its effect is for the jobs it creates (lifecycle and timing, outcome, a
webhook fault) and for the requests themselves (any API fault, on the endpoint the fault names). Rules are
checked in order and the first one that matches and has an effect for the request's endpoint wins; each
request it applies to spends one of its ``times`` (none: it applies until deleted), whatever the answer.
A rule's fault takes the place of the server-wide faults for that request. Like WireMock's request
matchers and Prism's ``Prefer`` header, but set up front, so the app under test need not change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .config import LIFECYCLES, redact_key
from .errors import FieldError, InvalidRequest, NotFound
from .faults import WEBHOOK_FAULTS, FaultRule, _number, _whole
from .jobs import FAILURE, SUCCESS
from .validation import compile_pattern, search_text, shown

MATCH_KEYS = ("api_key", "batch_id", "prompt_contains", "prompt_pattern", "headers")
RULE_KEYS = ("match", "lifecycle", "pending_seconds", "pending_polls", "outcome", "error", "fault", "times")
MAX_RULES, MAX_TEXT, MAX_HEADERS = 100, 2_000, 20
MAX_PENDING_SECONDS, MAX_PENDING_POLLS = 86_400.0, 10_000
JOB_FACTS = ("batch_id", "prompt_contains", "prompt_pattern")  # what needs the job's request to be read


@dataclass(frozen=True)
class Facts:
    """What a rule can match a request on. ``headers``: looked up by lower-case name (werkzeug's headers take any
    case)."""

    api_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    batch_id: str | None = None
    prompt: str | None = None


@dataclass
class Rule:
    id: str
    match: dict
    lifecycle: str | None = None
    pending_seconds: float | None = None
    pending_polls: int | None = None
    outcome: str | None = None
    error: str | None = None
    fault: FaultRule | None = None
    times: int | None = None
    applied: int = 0

    @property
    def shapes_jobs(self) -> bool:
        """Whether it changes the jobs it creates (so it applies to submits)."""
        return bool(self.lifecycle or self.outcome or (self.fault and self.fault.type in WEBHOOK_FAULTS))

    @property
    def webhook_fault(self) -> FaultRule | None:
        return self.fault if self.fault is not None and self.fault.type in WEBHOOK_FAULTS else None

    def applies_to(self, endpoint: str) -> bool:
        return (endpoint == "submit" and self.shapes_jobs) or (
            self.fault is not None and self.webhook_fault is None and self.fault.matches(endpoint))

    @property
    def needs_job(self) -> bool:
        return any(k in self.match for k in JOB_FACTS)

    def matches(self, facts: Facts) -> bool:
        m = self.match
        if "api_key" in m and facts.api_key != m["api_key"]:
            return False
        if "batch_id" in m and facts.batch_id != m["batch_id"]:
            return False
        if "prompt_contains" in m and (facts.prompt is None or m["prompt_contains"] not in facts.prompt):
            return False
        if "prompt_pattern" in m and (facts.prompt is None
                                      or not search_text(compile_pattern(m["prompt_pattern"]), facts.prompt)):
            return False
        return all(facts.headers.get(name.lower()) == value for name, value in m.get("headers", {}).items())

    def as_dict(self) -> dict:
        """What the control plane shows: the match (its API key redacted), the effect, uses spent and left."""
        match = dict(self.match)
        if "api_key" in match:
            match["api_key"] = redact_key(match["api_key"])
        out: dict = {"id": self.id, "match": match}
        for name in ("lifecycle", "pending_seconds", "pending_polls", "outcome", "error"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.fault is not None:
            out["fault"] = {k: v for k, v in self.fault.as_dict().items() if k not in ("times", "applied")}
        out["times"] = self.times
        out["applied"] = self.applied
        return out


def parse_rule(rule_id: str, data: object) -> Rule:
    """A rule from its JSON, or ``InvalidRequest`` naming every field that breaks a rule (``match.api_key``...)."""
    if not isinstance(data, Mapping):
        raise InvalidRequest(FieldError("body", "type", "must be a JSON object"))
    problems = [FieldError(k, "unknown", "is not a rule key: one of " + ", ".join(RULE_KEYS))
                for k in sorted(set(data) - set(RULE_KEYS))]
    match = data.get("match", {})
    problems += _match_problems(match)
    lifecycle, seconds, polls = data.get("lifecycle"), data.get("pending_seconds"), data.get("pending_polls")
    if lifecycle is None and (seconds is not None or polls is not None):  # the timings given say which lifecycle
        lifecycle = "polls_and_seconds" if seconds is not None and polls is not None else \
            "seconds" if seconds is not None else "polls"
    if lifecycle is not None and lifecycle not in LIFECYCLES:
        problems.append(FieldError("lifecycle", "enum", "must be one of " + ", ".join(LIFECYCLES)))
    if seconds is not None and (lifecycle not in ("seconds", "polls_and_seconds") or not _number(seconds)
                                or not 0 <= seconds <= MAX_PENDING_SECONDS):
        problems.append(FieldError("pending_seconds", "range", f"must be seconds from 0 to {MAX_PENDING_SECONDS:g}, "
                                                               'with lifecycle "seconds" or "polls_and_seconds" (or '
                                                               'none)'))
    if polls is not None and (lifecycle not in ("polls", "polls_and_seconds") or not _whole(polls)
                              or not 1 <= polls <= MAX_PENDING_POLLS):
        problems.append(FieldError("pending_polls", "range", f"must be a whole number from 1 to {MAX_PENDING_POLLS}, "
                                                             'with lifecycle "polls" or "polls_and_seconds" (or '
                                                             'none)'))
    outcome, error = data.get("outcome"), data.get("error")
    if outcome is not None and outcome not in (SUCCESS, FAILURE):
        problems.append(FieldError("outcome", "enum", "must be SUCCESS or FAILURE"))
    if error is not None and (outcome != FAILURE or not isinstance(error, str) or not error
                              or len(error) > MAX_TEXT):
        problems.append(FieldError("error", "type", f'must be a non-empty string of at most {MAX_TEXT} characters, '
                                                    'with outcome "FAILURE"'))
    times = data.get("times")
    if times is not None and (not _whole(times) or times < 1):
        problems.append(FieldError("times", "minimum", "must be a whole number >= 1 (leave it out: until deleted)"))
    fault = None
    if "fault" in data:
        try:
            fault = _fault(data["fault"])
        except InvalidRequest as exc:
            problems += [FieldError(f"fault.{e.field}", e.rule, e.message) for e in exc.errors]
    if not problems and not (lifecycle or outcome or fault):
        problems.append(FieldError("body", "effect", "a rule needs an effect: lifecycle, pending_seconds, "
                                                     "pending_polls, outcome or fault"))
    if problems:
        raise InvalidRequest(problems)
    return Rule(id=rule_id, match=dict(match), lifecycle=lifecycle, pending_seconds=seconds, pending_polls=polls,
                outcome=outcome, error=error, fault=fault, times=times)


def _match_problems(match: object) -> list[FieldError]:
    if not isinstance(match, Mapping):
        return [FieldError("match", "type", "must be a JSON object (empty: every request)")]
    problems = [FieldError(f"match.{k}", "unknown", "is not a match key: one of " + ", ".join(MATCH_KEYS))
                for k in sorted(set(match) - set(MATCH_KEYS))]
    for name in ("api_key", "batch_id", "prompt_contains", "prompt_pattern"):
        value = match.get(name)
        if name in match and (not isinstance(value, str) or not value or len(value) > MAX_TEXT):
            problems.append(FieldError(f"match.{name}", "type", f"must be a non-empty string of at most {MAX_TEXT} "
                                                                "characters"))
    if isinstance(match.get("prompt_pattern"), str):
        try:
            compile_pattern(match["prompt_pattern"])
        except ValueError as exc:
            problems.append(FieldError("match.prompt_pattern", "pattern", f"is not a pattern RE2 can run: {exc}"))
    headers = match.get("headers", {})
    if not isinstance(headers, Mapping) or len(headers) > MAX_HEADERS or not all(
            isinstance(k, str) and k and len(k) <= 200 and isinstance(v, str) and len(v) <= MAX_TEXT
            for k, v in headers.items()):
        problems.append(FieldError("match.headers", "type", f"must map at most {MAX_HEADERS} header names to the "
                                                            "exact values to match (strings)"))
    return problems


def _fault(data: object) -> FaultRule:
    """A rule's fault: any fault type, without ``times`` and ``rate`` (the rule's ``times`` counts)."""
    if isinstance(data, Mapping):
        spent = [FieldError(k, "rule", "is the rule's to say (its times)") for k in ("times", "rate") if k in data]
        if spent:
            raise InvalidRequest(spent)
    return FaultRule.parse(data)


class RuleBook:
    """The rules, in order; thread-safe. Ids (``r1``, ``r2``...) are never reused, even after a clear, so a
    journal entry's rule id always means one rule."""

    def __init__(self):
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._added = 0

    def add(self, data: object) -> Rule:
        with self._lock:
            if len(self._rules) >= MAX_RULES:
                raise InvalidRequest(FieldError("rules", "maxItems", f"at most {MAX_RULES} rules at once"))
            rule = parse_rule(f"r{self._added + 1}", data)  # under the lock: ids in the order rules are added
            self._added += 1                                 # only once it is valid: a refusal spends no id
            self._rules.append(rule)
        return rule

    def rules(self) -> list[dict]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def remove(self, rule_id: str) -> None:
        with self._lock:
            kept = [r for r in self._rules if r.id != rule_id]
            if len(kept) == len(self._rules):
                raise NotFound(FieldError("id", "exists", f"no rule with id {shown(rule_id[:100])!r}"))
            self._rules = kept

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def __bool__(self) -> bool:
        return bool(self._rules)

    def take(self, endpoint: str, facts: Callable[[bool], Facts]) -> Rule | None:
        """The first rule that matches and applies to ``endpoint``, one of its uses spent (a spent rule is
        gone). ``facts(with_job)`` is called only if some rule could apply, and reads the job only if one
        needs it; it runs outside the lock (it may take the job store's)."""
        with self._lock:
            candidates = [r for r in self._rules if r.applies_to(endpoint)]
        if not candidates:
            return None
        known = facts(any(r.needs_job for r in candidates))
        with self._lock:
            for rule in self._rules:  # again: a rule may have been spent or deleted meanwhile
                if rule.applies_to(endpoint) and rule.matches(known):
                    rule.applied += 1
                    if rule.times is not None and rule.applied >= rule.times:
                        self._rules = [r for r in self._rules if r is not rule]
                    return rule
        return None
