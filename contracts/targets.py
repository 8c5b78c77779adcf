"""What the contracts talk to: the target (embedded mock, a URL, or live), the live job budget, and
the HTTP session every contract request goes through. (The control plane is
``contracts.control.ContractControl``, reached through the run, which refuses it where there is none.)

Nothing here starts a server or sends a request at import time, and nothing here knows pytest: a
contract that cannot run raises ``NoControlPlane``, ``BudgetExhausted`` or ``SharedTarget``, and the
plugin reports it as skipped.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from sd35_twin.mockserver.testing import TOKEN_HEADER

MOCK, URL, LIVE = "mock", "url", "live"
TARGET_ENV = "CONTRACTS_TARGET"
API_KEY_ENV = "IMAGEPIPELINE_API_KEY"
OTHER_KEY_ENV = "CONTRACTS_OTHER_API_KEY"
CONTROL_TOKEN_ENV = "SD35_MOCK_CONTROL_TOKEN"  # a URL target's --control-token, if it was started with one
DEFAULT_LIVE_URL = "https://api.imagepipeline.io"
DEFAULT_MAX_JOBS = 6
# Keys used against mocks (which accept any non-empty key unless configured otherwise).
MOCK_KEY = "contracts-key-a"
MOCK_OTHER_KEY = "contracts-key-b"
SUBMIT_PATH = "/sd3_5/v1"
CAP_REASON = "live job cap"

__all__ = ["Target", "JobBudget", "ContractSession", "resolve_target", "ContractsError", "TargetError",
           "NoControlPlane", "BudgetExhausted", "SharedTarget", "MOCK", "URL", "LIVE", "CAP_REASON"]


class ContractsError(Exception):
    """An error of the contract suite itself, not of the target under test."""


class TargetError(ContractsError):
    """A target that cannot be used (bad option, missing key); the run refuses before sending."""


class NoControlPlane(ContractsError):
    """A contract needed the mock's control plane on a target without one (live, or a URL that is
    not a mock); the plugin reports the contract as skipped with this message."""


class BudgetExhausted(ContractsError):
    """A request that could create a job would pass the live job cap; raised before anything is
    sent, and reported by the plugin as a skip."""


class SharedTarget(ContractsError):
    """A contract would reset the target or move its clock, on a target the suite does not own (a
    URL without ``--reset-target``): it is reported as skipped, and the target keeps its jobs."""


@dataclass
class Target:
    """Where the contracts run. ``base_url`` is filled in for the embedded mock once it is started."""

    kind: str                       # mock | url | live
    base_url: str | None
    api_key: str
    other_key: str | None = None    # a second valid key (jobs of another key, L21)
    has_control: bool = False       # whether /__mock__/ answers (never on live)
    control_reason: str = ""        # why there is no control plane
    spec: str = ""                  # what the user asked for (--target value)
    owned: bool = False             # the suite may reset it: the embedded mock, or --reset-target

    @property
    def is_live(self) -> bool:
        return self.kind == LIVE

    def describe(self) -> dict:
        return {"kind": self.kind, "base_url": self.base_url, "control_plane": self.has_control,
                "spec": self.spec}


def resolve_target(spec: str | None, *, live_base_url: str | None = None, reset: bool = False,
                   env: dict | None = None) -> Target:
    """The target named by ``--target`` (or $CONTRACTS_TARGET): ``mock``, ``live`` or a URL;
    ``reset`` (``--reset-target``) lets the suite reset a URL target, as it does the embedded mock.

    Raises TargetError for anything unusable, notably ``live`` without $IMAGEPIPELINE_API_KEY.
    """
    env = os.environ if env is None else env
    spec = (spec or env.get(TARGET_ENV) or MOCK).strip()
    other = env.get(OTHER_KEY_ENV) or None
    if live_base_url and spec != LIVE:
        raise TargetError("--live-base-url only applies to --target live")
    if reset and spec in (MOCK, LIVE):
        raise TargetError("--reset-target only applies to a --target URL (the embedded mock is always reset)")
    if spec == MOCK:
        return Target(MOCK, None, MOCK_KEY, MOCK_OTHER_KEY, has_control=True, spec=spec, owned=True)
    if spec == LIVE:
        key = env.get(API_KEY_ENV, "").strip()
        if not key:
            raise TargetError(
                f"--target live needs an API key in ${API_KEY_ENV}; it is not set, so nothing was sent. "
                f"Set it (export {API_KEY_ENV}=...) or run against the mock (--target mock, the default)."
            )
        base = (live_base_url or DEFAULT_LIVE_URL).rstrip("/")
        _check_url(base, "--live-base-url")
        return Target(LIVE, base, key, other, has_control=False,
                      control_reason="mock-only: needs the mock's control plane (/__mock__/), "
                                     "which the live API does not have", spec=spec)
    if spec.startswith(("http://", "https://")):
        base = spec.rstrip("/")
        _check_url(base, "--target")
        key = env.get(API_KEY_ENV, "").strip() or MOCK_KEY
        return Target(URL, base, key, other, has_control=False, spec=spec, owned=reset)
    raise TargetError(f"--target must be 'mock', 'live' or an http(s):// URL, got {spec!r}")


def _check_url(url: str, option: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TargetError(f"{option} must be an http(s):// URL, got {url!r}")


def control_token(env: dict | None = None) -> str | None:
    """The control token of a mock started with one: the variable the mock itself reads."""
    return (os.environ if env is None else env).get(CONTROL_TOKEN_ENV) or None


def probe_control(base_url: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Whether ``/__mock__/health`` answers ``{"ok": true}``; raises TargetError if nothing answers."""
    token = control_token()
    try:
        resp = requests.get(base_url + "/__mock__/health", timeout=timeout, allow_redirects=False,
                            headers={TOKEN_HEADER: token} if token else None)
    except requests.RequestException as exc:
        raise TargetError(f"target {base_url} does not answer: {type(exc).__name__}: {exc}") from exc
    try:
        ok = resp.status_code == 200 and resp.json().get("ok") is True
    except (ValueError, AttributeError):
        ok = False
    if ok:
        return True, ""
    return False, (f"mock-only: the target {base_url} has no mock control plane "
                   f"(GET /__mock__/health answered HTTP {resp.status_code})")


class JobBudget:
    """The cap on jobs a live run may create (``--live-max-jobs``); unlimited elsewhere.

    Every submit POST on live that carries one of our keys (in any header) passes ``before_submit``
    (``BudgetExhausted`` once the cap is spent) and ``after_submit``: any answer but a 4xx
    rejection counts as a created job, including a 5xx or a lost connection (the job may exist and
    be billed). A request meant to be refused still counts if the target accepts it.
    """

    def __init__(self, cap: int | None):
        self.cap = cap
        self.created = 0
        self.blocked = 0
        self._lock = threading.Lock()

    @property
    def limited(self) -> bool:
        return self.cap is not None

    @property
    def remaining(self) -> int | None:
        return None if self.cap is None else max(0, self.cap - self.created)

    def require(self, jobs: int, what: str = "this test") -> None:
        """``BudgetExhausted`` now, before anything is sent, unless ``jobs`` more jobs fit under the cap."""
        if self.cap is not None and self.created + jobs > self.cap:
            raise self._exhausted(f"{what} would create {jobs} more")

    def before_submit(self) -> None:
        with self._lock:
            if self.cap is not None and self.created >= self.cap:
                self.blocked += 1
                raise self._exhausted("a request that could create a job was not sent")

    def _exhausted(self, what: str) -> BudgetExhausted:
        return BudgetExhausted(f"{CAP_REASON} reached: {self.created} of --live-max-jobs {self.cap} jobs used; {what}")

    def after_submit(self, status_code: int | None) -> None:
        if self.cap is None:
            return
        if status_code is not None and 400 <= status_code < 500:
            return
        with self._lock:
            self.created += 1

    def as_dict(self) -> dict:
        return {"cap": self.cap, "created": self.created, "blocked": self.blocked}


@dataclass
class Exchange:
    method: str
    url: str
    status: int | None
    response: requests.Response | None
    error: str | None = None
    at: float = field(default_factory=time.time)


class ContractSession(requests.Session):
    """The one HTTP session of a contract run: the client and the raw requests both use it.

    It enforces the live job cap on every submit POST, keeps the exchanges of the current test
    (so contracts can see HTTP codes the client does not expose), and records them redacted when
    ``--record`` is given.
    """

    def __init__(self, target: Target, budget: JobBudget, recorder=None):
        super().__init__()
        self.target = target
        self.budget = budget
        self.recorder = recorder
        self.current_test: str | None = None
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def is_submit(self, method: str, url: str) -> bool:
        return method.upper() == "POST" and urlsplit(url).path.rstrip("/").endswith(SUBMIT_PATH)

    def could_bill(self, request) -> bool:
        """A submit carrying one of our keys: if the target accepts it, a job is billed to us.
        (A submit without a key, or with a key that is not ours, cannot be billed to us.)"""
        if not self.is_submit(request.method, request.url):
            return False
        ours = [k for k in (self.target.api_key, self.target.other_key) if k]
        return any(k in str(value) for value in request.headers.values() for k in ours)

    def send(self, request, **kwargs):  # noqa: D401 - requests' signature
        submit = self.could_bill(request)
        if submit and self.budget.limited:
            self.budget.before_submit()
        started = time.perf_counter()
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException as exc:
            if submit:
                self.budget.after_submit(None)
            self._note(request, None, exc, started)
            raise
        if submit:
            self.budget.after_submit(response.status_code)
        self._note(request, response, None, started)
        return response

    def _note(self, request, response, error, started) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        with self._lock:
            self.exchanges.append(Exchange(request.method, request.url,
                                           response.status_code if response is not None else None,
                                           response, f"{type(error).__name__}: {error}" if error else None))
            del self.exchanges[:-200]
        if self.recorder is not None:
            self.recorder.exchange(request, response, error, test=self.current_test, elapsed_ms=elapsed,
                                   target=self.target.kind)

    def last(self, method: str | None = None, path_suffix: str | None = None) -> Exchange | None:
        """The newest exchange of this test matching the method and path."""
        with self._lock:
            for ex in reversed(self.exchanges):
                if method and ex.method != method:
                    continue
                if path_suffix and not urlsplit(ex.url).path.endswith(path_suffix):
                    continue
                return ex
        return None
