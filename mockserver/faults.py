"""Fault injection rules, WireMock-style: latency, an HTTP error, a dropped connection, a broken body.

The rules are data and the choice is seeded, so a failing test can be replayed. The HTTP layer
carries out what ``FaultInjector.pick`` returns; the core only decides.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .errors import FieldError, InvalidRequest

# Faults of a job's webhook, as deliveries fail in life: late, twice, overtaken, lost the first N times
WEBHOOK_FAULTS = ("webhook_delay", "webhook_duplicate", "webhook_drop", "webhook_out_of_order")
FAULT_TYPES = ("latency", "status", "drop", "malformed", "trickle", "truncate", "wrong_length", "reset",
               *WEBHOOK_FAULTS)
# Faults of a download's body, as they fail in life; they apply to the answer once it is built (either phase)
BODY_FAULTS = ("trickle", "truncate", "wrong_length", "reset")
# A trickling answer holds one server thread for its whole length: the rate has a floor, and is raised further
# so that any body ends within TRICKLE_MAX_SECONDS; one trickle runs at a time (another is served untouched).
MIN_BYTES_PER_SECOND = 1024
MAX_BYTES_PER_SECOND = 100 * 1024 * 1024
TRICKLE_MAX_SECONDS = 30
LENGTHS = ("short", "long")  # wrong_length: a Content-Length below the body, or above it
PHASES = ("before", "after")  # before the request is handled (nothing happens), or after (the job exists)
ENDPOINTS = ("any", "submit", "status", "download", "webhook")  # "any": the three API endpoints, not webhooks
MAX_LATENCY_MS = 60_000
MAX_COPIES, MAX_DROPPED_ATTEMPTS = 10, 100
OUT_OF_ORDER_MS = 10_000  # webhook_out_of_order: held until another delivery goes out, or this long at most
MAX_RULES = 100

# What the WSGI server (waitress) logs when an injected fault does its job: a body shorter or longer than its
# Content-Length, a connection closed under a request. On the thread serving a faulted request these repeat
# what the mock's own line ("injected fault: ...") says, and read like a broken mock; anywhere else they stay.
FAULT_ECHOES = ("application-written content exceeded", "application returned too few bytes",
                "Client disconnected while serving")
_serving = threading.local()  # .fault: what a fault did to the request this thread serves, until its task ends


def fault_served(what: str) -> None:
    """This thread's request was faulted (the HTTP layer says so as it logs the fault)."""
    _serving.fault = what


def task_done() -> None:
    """The server finished this thread's task (``server._Channel.service``): its fault, if any, is over."""
    _serving.fault = None


class FaultEchoFilter(logging.Filter):
    """Drops the server's records that echo an injected fault (``FAULT_ECHOES``) on the thread serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(_serving, "fault", None) is None or not str(record.msg).startswith(FAULT_ECHOES)


@dataclass
class FaultRule:
    type: str
    endpoint: str = "any"
    times: int | None = None        # the next N matching requests; None with rate None means 1
    rate: float | None = None       # or this share of matching requests
    status: int | None = None       # type "status"
    retry_after: int | None = None  # type "status": a Retry-After header in seconds
    ms: int | None = None           # type "latency"
    phase: str = "before"           # "after": the request is handled, then its answer is lost or replaced
    bytes_per_second: int | None = None  # type "trickle"
    bytes: int | None = None        # "truncate"/"reset": body bytes sent; "wrong_length": the declared length
                                    # ("short") or how far it overstates the body ("long"); None: half the body
    length: str | None = None       # type "wrong_length": "short" (the default) or "long"
    copies: int | None = None       # type "webhook_duplicate": extra deliveries of the same body
    attempts: int | None = None     # type "webhook_drop": the first N attempts are lost (then retried)
    applied: int = 0

    @classmethod
    def parse(cls, data: object) -> "FaultRule":
        if not isinstance(data, Mapping):
            raise InvalidRequest(FieldError("body", "type", "must be a JSON object"))
        problems = []
        unknown = set(data) - {"type", "endpoint", "times", "rate", "status", "retry_after", "ms", "phase",
                               "bytes_per_second", "bytes", "length", "copies", "attempts"}
        problems += [FieldError(k, "unknown", "is not a fault rule key") for k in sorted(unknown)]
        kind = data.get("type")
        endpoint = data.get("endpoint", "webhook" if kind in WEBHOOK_FAULTS else "any")
        if kind not in FAULT_TYPES:
            problems.append(FieldError("type", "enum", f"must be one of {', '.join(FAULT_TYPES)}"))
        if endpoint not in ENDPOINTS:
            problems.append(FieldError("endpoint", "enum", f"must be one of {', '.join(ENDPOINTS)}"))
        phase = data.get("phase", "before")
        if phase not in PHASES:
            problems.append(FieldError("phase", "enum", "must be 'before' (nothing is handled) or 'after' (handled, "
                                                        "then the answer is lost)"))
        times, rate = data.get("times"), data.get("rate")
        if times is not None and (not _whole(times) or times < 1):
            problems.append(FieldError("times", "minimum", "must be an integer >= 1"))
        if rate is not None and (not _number(rate) or not 0 <= rate <= 1):
            problems.append(FieldError("rate", "range", "must be a number from 0 to 1"))
        if times is not None and rate is not None:
            problems.append(FieldError("rate", "exclusive", "give either times or rate, not both"))
        status, retry_after, ms = data.get("status"), data.get("retry_after"), data.get("ms")
        if kind == "status" and (not _whole(status) or not 400 <= status <= 599):
            problems.append(FieldError("status", "range", "must be an HTTP error status from 400 to 599"))
        if retry_after is not None and (not _whole(retry_after) or not 0 <= retry_after <= 86_400):
            problems.append(FieldError("retry_after", "range", "must be whole seconds from 0 to 86400"))
        if kind in ("latency", "webhook_delay") and (not _whole(ms) or not 0 <= ms <= MAX_LATENCY_MS):
            problems.append(FieldError("ms", "range", f"must be whole milliseconds from 0 to {MAX_LATENCY_MS}"))
        problems += _body_fault_problems(kind, endpoint, data)
        problems += _webhook_fault_problems(kind, endpoint, data)
        if problems:
            raise InvalidRequest(problems)
        if kind == "wrong_length":
            data = dict(data, length=data.get("length", "short"))
        if kind == "webhook_duplicate":
            data = dict(data, copies=data.get("copies", 1))
        elif kind == "webhook_drop":
            data = dict(data, attempts=data.get("attempts", 1))
        elif kind == "webhook_out_of_order":
            data = dict(data, ms=data.get("ms", OUT_OF_ORDER_MS))
            ms = data["ms"]
        if times is None and rate is None:
            times = 1
        return cls(type=kind, endpoint=endpoint, times=times, rate=rate, status=status,
                   retry_after=retry_after, ms=ms, phase=phase, bytes_per_second=data.get("bytes_per_second"),
                   bytes=data.get("bytes"), length=data.get("length"), copies=data.get("copies"),
                   attempts=data.get("attempts"))

    def matches(self, endpoint: str) -> bool:
        return self.endpoint == endpoint or (self.endpoint == "any" and endpoint != "webhook")

    def describe(self) -> str:
        """What a webhook fault does, for the delivery records."""
        return {"webhook_delay": f"webhook_delay {self.ms} ms", "webhook_duplicate": f"webhook_duplicate x{self.copies}",
                "webhook_drop": f"webhook_drop first {self.attempts}",
                "webhook_out_of_order": f"webhook_out_of_order (held up to {self.ms} ms)"}.get(self.type, self.type)

    @property
    def spent(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request: wait ``before_ms``, handle it (unless ``action`` is a "before" rule),
    wait ``after_ms``, then answer normally or as ``action`` says."""

    before_ms: int = 0
    after_ms: int = 0
    action: FaultRule | None = None


NO_FAULT = FaultPlan()


def plan_of(rule: FaultRule) -> FaultPlan:
    """The plan for the fault a matching rule (``rules.Rule``) carries: it takes the place of the server-wide ones."""
    if rule.type == "latency":
        return FaultPlan(before_ms=rule.ms if rule.phase == "before" else 0,
                         after_ms=rule.ms if rule.phase == "after" else 0)
    return FaultPlan(action=rule)


class FaultInjector:
    def __init__(self, seed: int | None = None):
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def add(self, data: object) -> FaultRule:
        rule = FaultRule.parse(data)
        with self._lock:
            if len(self._rules) >= MAX_RULES:
                raise InvalidRequest(FieldError("faults", "maxItems", f"at most {MAX_RULES} rules at once"))
            self._rules.append(rule)
        return rule

    def rules(self) -> list[dict]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def clear(self, seed: int | None = None) -> None:
        with self._lock:
            self._rules.clear()
            self._rng = random.Random(seed)

    def pick(self, endpoint: str) -> FaultPlan:
        """Apply the matching rules: latencies add up, the first matching other rule is the action."""
        if not self._rules:  # the common case, without the lock (and one shared plan: it is frozen)
            return NO_FAULT
        delay, action = {"before": 0, "after": 0}, None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(endpoint) or (action and rule.type != "latency"):
                    continue
                if rule.rate is not None and self._rng.random() >= rule.rate:
                    continue
                rule.applied += 1
                if rule.type == "latency":
                    delay[rule.phase] += rule.ms
                else:
                    action = rule
            self._rules = [r for r in self._rules if not r.spent]
        return FaultPlan(min(delay["before"], MAX_LATENCY_MS), min(delay["after"], MAX_LATENCY_MS), action)


def _body_fault_problems(kind: object, endpoint: object, data: Mapping) -> list[FieldError]:
    """The keys of the download body faults: each only with its type, and those types only on downloads."""
    problems = []
    allowed = {"bytes_per_second": ("trickle",), "bytes": ("truncate", "reset", "wrong_length"),
               "length": ("wrong_length",)}
    for key, kinds in allowed.items():
        if key in data and kind not in kinds:
            problems.append(FieldError(key, "type", f"applies only to type {' or '.join(kinds)}"))
    if kind not in BODY_FAULTS:
        return problems
    if endpoint != "download":
        problems.append(FieldError("endpoint", "download_only",
                                   f'type {kind} breaks an image body: endpoint must be "download"'))
    rate = data.get("bytes_per_second")
    if kind == "trickle" and (not _whole(rate) or not MIN_BYTES_PER_SECOND <= rate <= MAX_BYTES_PER_SECOND):
        problems.append(FieldError("bytes_per_second", "range",
                                   f"must be whole bytes a second from {MIN_BYTES_PER_SECOND} to "
                                   f"{MAX_BYTES_PER_SECOND} (a trickle holds a server thread; it also ends "
                                   f"within {TRICKLE_MAX_SECONDS} s)"))
    count = data.get("bytes")
    if count is not None and (not _whole(count) or not 0 <= count <= 1 << 30):
        problems.append(FieldError("bytes", "range", "must be a whole number of bytes, 0 or more"))
    if kind == "wrong_length" and data.get("length", "short") not in LENGTHS:
        problems.append(FieldError("length", "enum", "must be 'short' (declared below the body) or 'long'"))
    return problems


def _webhook_fault_problems(kind: object, endpoint: object, data: Mapping) -> list[FieldError]:
    """The webhook faults: each key only with its type, and those types only (and only they) on "webhook"."""
    problems = []
    for key, kinds in {"copies": ("webhook_duplicate",), "attempts": ("webhook_drop",)}.items():
        if key in data and kind not in kinds:
            problems.append(FieldError(key, "type", f"applies only to type {' or '.join(kinds)}"))
    if (kind in WEBHOOK_FAULTS) != (endpoint == "webhook"):
        problems.append(FieldError("endpoint", "webhook_only", 'the webhook_* types, and only they, take endpoint '
                                                               '"webhook" (their default)'))
    if kind in WEBHOOK_FAULTS and "phase" in data:
        problems.append(FieldError("phase", "type", "applies only to the API endpoints' faults"))
    copies, attempts, ms = data.get("copies", 1), data.get("attempts", 1), data.get("ms", OUT_OF_ORDER_MS)
    if kind == "webhook_duplicate" and (not _whole(copies) or not 1 <= copies <= MAX_COPIES):
        problems.append(FieldError("copies", "range", f"must be a whole number from 1 to {MAX_COPIES}"))
    if kind == "webhook_drop" and (not _whole(attempts) or not 1 <= attempts <= MAX_DROPPED_ATTEMPTS):
        problems.append(FieldError("attempts", "range", f"must be a whole number from 1 to {MAX_DROPPED_ATTEMPTS} "
                                                        "(attempts past the mock's webhook_max_attempts are never made)"))
    if kind == "webhook_out_of_order" and (not _whole(ms) or not 0 <= ms <= MAX_LATENCY_MS):
        problems.append(FieldError("ms", "range", f"must be whole milliseconds from 0 to {MAX_LATENCY_MS}"))
    return problems


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return _whole(value) or (isinstance(value, float) and math.isfinite(value))
