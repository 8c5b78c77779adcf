"""Webhook delivery off the request thread, with retries, a record of every attempt, and a
loopback-only safety net (the mock must never reach the network unless the user allows a host, and
never itself: see ``WebhookDispatcher.forbid``).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable
from urllib.parse import urlsplit


__all__ = ["WebhookDispatcher", "USER_AGENT", "MAX_BACKOFF", "check_url", "host_allowed",
           "is_loopback_host", "targets_self", "backoff_delay"]

USER_AGENT = "sd35-mock-webhook"
MAX_BACKOFF = 30.0
_MAX_ERROR_CHARS = 500


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, judged from the literal text only (no DNS lookup)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False  # a name (or 127.1, 2130706433, ...): we do not guess what it resolves to
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def host_allowed(host: str, allow_hosts: Iterable[str]) -> bool:
    """Loopback always; otherwise only a listed host, or any host when "*" is listed."""
    if is_loopback_host(host):
        return True
    allowed = {_norm_host(h) for h in _allow_snapshot(allow_hosts)}
    return "*" in allowed or _norm_host(host) in allowed


def targets_self(host: str, port: int, own: Iterable[tuple[str, int]]) -> bool:
    """Whether ``host:port`` reaches the mock itself, given the ``own`` (host, port) addresses it listens on:
    its bound host, a loopback name, or 0.0.0.0 / :: (which connect to this machine), with its port."""
    host = _norm_host(host)
    here = is_loopback_host(host) or host in ("0.0.0.0", "::")
    return any(port == own_port and (here or host == own_host) for own_host, own_port in own)


def check_url(url: object, allow_hosts: Iterable[str],
              own: Iterable[tuple[str, int]] = ()) -> tuple[str, str | None]:
    """("ok", None), ("error", why) for a malformed URL, or ("blocked", why) for a host not allowed or the
    mock's ``own`` address."""
    if not isinstance(url, str) or not url:
        return "error", f"webhook URL must be a non-empty string, got {url!r}"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "error", "webhook URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a bad port
        host = parts.hostname
        # requests (urllib3) must agree on the host, or it could connect somewhere we did not check
        from urllib3.util import parse_url  # imported on first use: a worker process never needs it

        other = parse_url(url).host
    except Exception as exc:  # noqa: BLE001 - any parse failure is a malformed URL
        return "error", f"malformed webhook URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return "error", f"webhook URL scheme must be http or https, got {parts.scheme!r}"
    if not host:
        return "error", "webhook URL has no host"
    if other is None or _norm_host(other) != _norm_host(host):
        return "error", "webhook URL host is ambiguous (parsers disagree)"
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    if targets_self(host, port, own):
        return "blocked", (f"{host}:{port} is the mock's own address: a webhook must never call the mock "
                           f"itself (one to /__mock__/reset would wipe it)")
    if not host_allowed(host, _allow_snapshot(allow_hosts)):
        return "blocked", (f"host {host!r} is not allowed: the mock only delivers webhooks to loopback "
                           f"(localhost, 127.0.0.0/8, ::1); allow it with --webhook-allow-host {host} "
                           f"(or --webhook-allow-host '*' for any host)")
    return "ok", None


def _allow_snapshot(allow_hosts: Iterable[str]) -> tuple[str, ...]:
    if isinstance(allow_hosts, str):  # a lone "example.com" is one host, not its characters
        return (allow_hosts,)
    return tuple(str(h) for h in allow_hosts)


def backoff_delay(backoff: float, attempt: int) -> float:
    """Wait before the attempt after `attempt` (1-based): backoff * 2**(attempt-1), capped."""
    if backoff <= 0:
        return 0.0
    return min(MAX_BACKOFF, backoff * 2.0 ** min(attempt - 1, 64))


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    job_id: str = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    generation: int = field(compare=False)
    attempt: int = field(default=1, compare=False)
    fault: object = field(default=None, compare=False)  # a faults.FaultRule of a webhook_* type, or None
    note: str | None = field(default=None, compare=False)  # what its records say was done to it
    held: bool = field(default=False, compare=False)     # webhook_out_of_order: waits for another delivery
    resent: bool = field(default=False, compare=False)


class WebhookDispatcher:
    """A bounded queue of deliveries served by lazily started daemon worker threads.

    Retries wait in a due-time heap, not in a worker, so a backing-off delivery never holds up
    others. Scheduling uses time.monotonic; `clock` only stamps the records (it may be the mock's
    adjustable clock).
    """

    _SETTINGS = ("timeout", "max_attempts", "backoff", "allow_hosts")

    def __init__(self, *, timeout: float = 5.0, max_attempts: int = 3, backoff: float = 0.5,
                 allow_hosts: Iterable[str] = (), max_records: int = 1000, max_queue: int = 1000,
                 workers: int = 2, clock: Callable[[], float] = time.time,
                 met: Callable[[str], None] = lambda row: None):
        """``met``: told the ledger row each time a delivery meets one (L31 one goes out, L19 one is retried)."""
        if max_records < 1 or max_queue < 1 or workers < 1:
            raise ValueError("max_records, max_queue and workers must be >= 1")
        self._cond = threading.Condition()
        self._records: deque[dict] = deque(maxlen=int(max_records))
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._inflight = 0
        self._generation = 0
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._workers = int(workers)
        self._max_queue = int(max_queue)
        self._clock = clock
        self._met = met
        self.timeout = 5.0
        self.max_attempts = 3
        self.backoff = 0.5
        self.allow_hosts: tuple[str, ...] = ()
        self._own: frozenset[tuple[str, int]] = frozenset()
        self.update(timeout=timeout, max_attempts=max_attempts, backoff=backoff, allow_hosts=allow_hosts)

    # --- public API ---------------------------------------------------------------------------

    def update(self, **settings) -> None:
        """Change timeout/max_attempts/backoff/allow_hosts; applies to the next attempt."""
        unknown = set(settings) - set(self._SETTINGS)
        if unknown:
            raise TypeError(f"unknown webhook setting(s): {sorted(unknown)}")
        new = {}
        if "timeout" in settings:
            t = float(settings["timeout"])
            if not 0 < t < float("inf"):
                raise ValueError("timeout must be a finite number > 0")
            new["timeout"] = t
        if "max_attempts" in settings:
            n = settings["max_attempts"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError("max_attempts must be an integer >= 1")
            new["max_attempts"] = n
        if "backoff" in settings:
            b = float(settings["backoff"])
            if not 0 <= b < float("inf"):
                raise ValueError("backoff must be a finite number >= 0")
            new["backoff"] = b
        if "allow_hosts" in settings:
            new["allow_hosts"] = _allow_snapshot(settings["allow_hosts"])
        with self._cond:
            for k, v in new.items():
                setattr(self, k, v)
            self._cond.notify_all()

    def forbid(self, host: str, port: int) -> None:
        """Never deliver to ``host:port``, the address the mock listens on (nor to a loopback name with that
        port): called by whoever binds the server, since only then is the port known. A reset keeps it."""
        with self._cond:
            self._own = self._own | {(_norm_host(host), int(port))}

    def submit(self, job_id: str, url: str, payload: dict, *, fault=None, resent: bool = False) -> None:
        """Queue a delivery; never blocks, never raises for a bad URL or payload (it is recorded). ``fault``: a
        webhook fault (``faults.WEBHOOK_FAULTS``) to carry out on it; ``resent``: sent again on demand."""
        job_id = str(job_id)
        if not isinstance(url, str):
            url = repr(url)  # recorded as text, so the records stay JSON; rejected below
        now = self._clock()
        note = fault.describe() if fault is not None else None
        verdict, why = self.check(url)
        if verdict != "ok":
            self._record(job_id, url, 1, verdict, None, why, now, 0.0, note, resent)
            return
        try:
            # serialised now: the caller may mutate its dict after submit returns
            body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, RecursionError, ...
            self._record(job_id, url, 1, "error", None, f"payload is not JSON: {exc}", now, 0.0, note, resent)
            return
        kind = getattr(fault, "type", None)
        due = time.monotonic() + (fault.ms / 1000 if kind in ("webhook_delay", "webhook_out_of_order") else 0.0)
        copies = 1 + (fault.copies if kind == "webhook_duplicate" else 0)
        with self._cond:
            if self._closed or len(self._heap) + copies > self._max_queue:
                why = ("webhook dispatcher is closed" if self._closed
                       else f"webhook queue full ({self._max_queue} pending); delivery dropped")
                self._append(job_id, url, 1, "dropped", None, why, now, 0.0, note, resent)
                return
            for n in range(copies):
                heapq.heappush(self._heap, _Delivery(
                    due, next(self._seq), job_id, url, body, self._generation, fault=fault,
                    note=f"{note} (copy {n + 1} of {copies})" if copies > 1 else note,
                    held=kind == "webhook_out_of_order", resent=resent))
            self._ensure_workers()
            self._cond.notify()

    def check(self, url: object) -> tuple[str, str | None]:
        """``check_url`` with this dispatcher's allowed hosts and own addresses: what a delivery to ``url`` would
        meet now."""
        with self._cond:
            allow, own = self.allow_hosts, self._own
        return check_url(url, allow, own)

    def records(self, job_id: str | None = None) -> list[dict]:
        """Copies of the attempt records, oldest first, optionally for one job."""
        with self._cond:
            return [dict(r) for r in self._records if job_id is None or r["job_id"] == job_id]

    def clear(self) -> None:
        """Forget records and queued deliveries; an attempt in flight finishes unrecorded."""
        with self._cond:
            self._records.clear()
            self._heap.clear()
            self._generation += 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once nothing is queued, backing off or in flight; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and self._inflight == 0, timeout)

    def close(self) -> None:
        """Stop the workers (they are daemons, so nothing waits for a slow receiver); idempotent."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()

    # --- internals ----------------------------------------------------------------------------

    def _ensure_workers(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self._workers:
            t = threading.Thread(target=self._run, name=f"sd35-webhook-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def _record(self, *args) -> None:  # _append's arguments
        with self._cond:
            self._append(*args)
            self._cond.notify_all()

    def _append(self, job_id, url, attempt, outcome, status_code, error, at, duration_ms, fault=None,
                resent=False) -> None:
        if isinstance(error, str) and len(error) > _MAX_ERROR_CHARS:
            error = error[:_MAX_ERROR_CHARS] + "…"
        record = {"job_id": job_id, "url": url, "attempt": attempt, "outcome": outcome,
                  "status_code": status_code, "error": error, "at": at, "duration_ms": duration_ms}
        if fault:
            record["fault"] = fault
        if resent:
            record["resent"] = True
        self._records.append(record)

    def _next(self) -> _Delivery | None:
        """Block until a delivery is due (or the dispatcher closes); mark it in flight."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        self._inflight += 1
                        return heapq.heappop(self._heap)
                else:
                    wait = None
                self._cond.wait(wait)

    def _run(self) -> None:
        import requests  # on first delivery: requests costs 14 MB, and most runs send no webhook

        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: loopback must stay loopback
        while True:
            d = self._next()
            if d is None:
                session.close()
                return
            try:
                self._attempt(session, d)
            except BaseException as exc:  # noqa: BLE001 - a worker must survive anything
                try:
                    self._record(d.job_id, d.url, d.attempt, "error", None,
                                 f"internal error: {type(exc).__name__}: {exc}", self._clock(), 0.0, d.note,
                                 d.resent)
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def _attempt(self, session, d: _Delivery) -> None:
        import requests

        with self._cond:
            timeout, max_attempts, backoff, allow = self.timeout, self.max_attempts, self.backoff, self.allow_hosts
            own = self._own
        at = self._clock()
        verdict, why = check_url(d.url, allow, own)  # again: allow_hosts may have changed since submit
        if verdict != "ok":
            self._finish(d, verdict, None, why, at, 0.0, retry=False)
            return
        if getattr(d.fault, "type", None) == "webhook_drop" and d.attempt <= d.fault.attempts:
            # lost on the way: the sender sees no answer and retries, as after a timeout
            self._finish(d, "dropped", None, f"lost by the fault webhook_drop (attempt {d.attempt} of the first "
                                             f"{d.fault.attempts}); not sent", at, 0.0,
                         retry=d.attempt < max_attempts, delay=backoff_delay(backoff, d.attempt))
            return
        started = time.perf_counter()
        status = None
        try:
            resp = session.post(d.url, data=d.body, timeout=timeout, allow_redirects=False, stream=True,
                                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
            status = resp.status_code
            resp.close()  # the body is never read: a receiver cannot make us buffer megabytes
        except requests.Timeout as exc:
            outcome, error = "error", f"timeout after {timeout:g}s: {type(exc).__name__}"
        except requests.RequestException as exc:
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= status < 300:
                outcome, error = "delivered", None
            else:
                outcome, error = "http_error", f"receiver answered HTTP {status}"
        duration_ms = (time.perf_counter() - started) * 1000.0
        retry = outcome != "delivered" and d.attempt < max_attempts
        self._finish(d, outcome, status, error, at, duration_ms, retry=retry,
                     delay=backoff_delay(backoff, d.attempt))

    def _finish(self, d: _Delivery, outcome, status, error, at, duration_ms, *, retry: bool,
                delay: float = 0.0) -> None:
        with self._cond:
            if d.generation != self._generation:
                return  # cleared while in flight: the reset wins
            self._append(d.job_id, d.url, d.attempt, outcome, status, error, at, round(duration_ms, 3), d.note,
                         d.resent)
            if not d.resent and outcome in ("delivered", "http_error", "error"):
                self._met("L31")  # one went out: how often and in what order calls come is assumed
            if retry and not self._closed:
                if not d.resent:
                    self._met("L19")  # the retry of a failed delivery is assumed
                heapq.heappush(self._heap, replace(d, due=time.monotonic() + delay, seq=next(self._seq),
                                                   attempt=d.attempt + 1, held=False))
            if outcome in ("delivered", "http_error", "error") and not d.held:  # one was sent: the held may follow
                self._release_held()
            self._cond.notify_all()

    def _release_held(self) -> None:
        """Deliveries held by webhook_out_of_order become due now, after the one just sent. Caller holds
        ``_cond``."""
        held = [d for d in self._heap if d.held]
        if held:
            now = time.monotonic()
            for d in held:
                d.due, d.held = now, False
            heapq.heapify(self._heap)
