"""The mock's behaviour, free of HTTP: submit, status, images, and the controls tests need.

Like moto's backends, this is the whole model of the service; ``mockserver.http`` only parses and
serialises. Lifecycle progression follows ``config.lifecycle``: ``immediate`` (done at submit),
``seconds`` (done ``pending_seconds`` after submit, by the mock's clock), ``polls`` (done on the
``pending_polls``-th status read), ``polls_and_seconds`` (both: done on a read once it is the ``pending_polls``-th
and ``pending_seconds`` have passed, so every poller, fast or slow, meets PENDING; a job with a webhook is done by
the clock alone, for its app may never read it) or ``manual`` (done when the control plane says so).
"""

from __future__ import annotations

import heapq
import math
import os
import random
import threading
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from urllib.parse import quote

from .config import MockConfig, redacted_map
from .coverage import Coverage, meet
from .errors import (Conflict, FieldError, ImageExpired, ImageNotReady, InvalidRequest, NoCredits, NotFound,
                     RateLimited, Unauthorized)
from .faults import FaultInjector
from .images import CONTENT_TYPES, ImageCache, ImageSpec
from .jobs import FAILURE, PENDING, SUCCESS, Clock, Job, JobStore, JobView
from .journal import Journal
from .rules import Rule, RuleBook
from .validation import GenerationRequest, RequestValidator
from .variants import load_variants
from .webhooks import WebhookDispatcher


RATE_WINDOW_SECONDS = 60.0  # profile.rate_limits.requests_per_minute counts requests in this sliding window
RATE_TRACKED_KEYS = 1_000   # keys whose recent requests are remembered: beyond it, idle keys go first
# A download older than this meets ledger row 22 even where the profile's lifetime is longer: a variant's
# shorter lifetime would refuse it (so a run that never meets L22 is one no L22 variant can change).
SHORTEST_URL_LIFETIME = min(float(v.profile["urls"]["ttl_seconds"]) for v in load_variants({"L22"})
                            if "ttl_seconds" in v.profile.get("urls", {}))


@dataclass(frozen=True)
class Download:
    """What a download URL serves."""

    data: bytes
    content_type: str
    file_name: str
    job_id: str


class MockBackend:
    """The service's state and rules; every answer is a ``JobView`` (or a ``Download``), every refusal a
    ``MockError``. Thread-safe: one lock around the job store; images render outside it."""

    def __init__(self, config: MockConfig | None = None, clock: Clock | None = None):
        self.initial_config = config or MockConfig()
        self.clock = clock or Clock()
        self.images = ImageCache(max_bytes=self.initial_config.image_cache_bytes)
        self.faults = FaultInjector(self.initial_config.seed)
        self.rules = RuleBook()
        self.coverage = Coverage()  # which assumed rows the requests met (coverage.py)
        self.webhooks = WebhookDispatcher(
            timeout=self.initial_config.webhook_timeout,
            max_attempts=self.initial_config.webhook_max_attempts,
            backoff=self.initial_config.webhook_backoff,
            allow_hosts=self.initial_config.webhook_allow_hosts,
            max_records=self.initial_config.webhook_records,
            clock=self.clock.now, met=self.coverage.met_off_request,
        )
        self._due: list[tuple[float, str]] = []         # (due time, job id) for lifecycle "seconds"
        self._entropy = Entropy()                       # ids and tokens when no seed is set
        self._wake = threading.Condition()
        self._ticker: threading.Thread | None = None
        self._closed = False
        self.store = JobStore(self.initial_config.max_jobs, self.initial_config.job_ttl_seconds)
        self.journal = Journal(self.initial_config.journal_size, self.initial_config.journal_body_chars)
        self._credits: dict[str, list[int]] = {}          # key -> [balance, spent], for keys with a balance
        self._requests: OrderedDict[str, deque] = OrderedDict()  # key -> times of its counted requests (row 30)
        self._apply_config(self.initial_config)
        self._set_credits(self.initial_config.credits, keep_spent=False)

    @property
    def profile(self) -> dict:
        return self.config.profile

    # -- configuration -----------------------------------------------------------------------

    def _apply_config(self, config: MockConfig, reseed: bool = True) -> None:
        self.validator = RequestValidator(config.profile)  # first: if it fails, nothing has changed
        self.config = config
        self.webhooks.update(timeout=config.webhook_timeout, max_attempts=config.webhook_max_attempts,
                             backoff=config.webhook_backoff, allow_hosts=config.webhook_allow_hosts)
        if reseed:  # never on other changes: re-seeding mid-run would hand out the same ids again
            self._rng = random.Random(config.seed)
            self._ids = random.Random(config.seed) if config.seed is not None else None

    def update_config(self, changes: dict) -> MockConfig:
        """Change run-time behaviour; start-up settings are refused (``MockConfig.updated``)."""
        new = self.config.updated(changes)
        with self.store.lock:
            self._apply_config(new, reseed=new.seed != self.config.seed)
            if "credits" in changes:  # only a patch naming credits sets balances: another one leaves them be
                self._set_credits(new.credits, keep_spent=True)
            self._due.clear()
            for job in self.store:  # the new timing, except for jobs a rule times
                if job.status == PENDING and self._clocked(job):
                    self._schedule(job)
            self._progress_all()
        return new

    def reset(self) -> None:
        """Forget every job, record and fault, and go back to the start-up configuration."""
        with self.store.lock:
            self.store.clear()
            self._due.clear()
            self.clock.reset()
            self.journal.clear()
            self.coverage.clear()
            self.webhooks.clear()
            self._requests.clear()
            self.faults.clear(self.initial_config.seed)
            self.rules.clear()
            self._apply_config(self.initial_config)
            self._set_credits(self.initial_config.credits, keep_spent=False)

    # -- credits (ledger row 29) ---------------------------------------------------------------------

    def _set_credits(self, balances: dict[str, int], keep_spent: bool) -> None:
        """Give each key of ``balances`` that balance now; every other key has no limit. A key that keeps a
        balance keeps its spend (``keep_spent``) unless the start-up balances are being restored. Caller holds
        the store lock, or is ``__init__``."""
        self._credits = {key: [balance, self._credits[key][1] if keep_spent and key in self._credits else 0]
                         for key, balance in balances.items()}

    def _charge(self, key: str, cost: int) -> None:
        """Spend ``cost`` credits of ``key``, or refuse the whole submit if its balance is short (nothing
        is spent then). A key without a balance has no limit. Caller holds the store lock."""
        account = self._credits.get(key)
        if account is None:
            return
        if account[0] < cost:
            meet("L29")  # a spent key's answer is assumed
            raise NoCredits(FieldError(
                "API-Key", "credits",
                f"has no credits left for this job: it costs {cost} (one per sample) and the balance is "
                f"{account[0]}; top up the key (mock: --credits KEY=N or PATCH /__mock__/config)"))
        account[0] -= cost
        account[1] += cost

    def credits(self) -> list[dict]:
        """Each key with a balance: its spend since start-up or reset, and its balance; keys redacted."""
        with self.store.lock:
            by_key = redacted_map({key: {"spent": spent, "balance": balance}
                                   for key, (balance, spent) in self._credits.items()})
        return [dict(key=key, **account) for key, account in by_key.items()]

    # -- rate limits (ledger row 30) ----------------------------------------------------------------

    def _rate_limit(self, name: str) -> int | None:
        return (self.profile.get("rate_limits") or {}).get(name)

    def _admit(self, key: str) -> None:
        """Count one submit or status read of ``key`` against ``requests_per_minute`` (one sliding window of
        ``RATE_WINDOW_SECONDS`` on the mock's clock, shared by both endpoints), or refuse it uncounted. A key
        keeps at most ``limit`` times, and at most ``RATE_TRACKED_KEYS`` keys are kept. Caller holds the lock."""
        limit = self._rate_limit("requests_per_minute")
        if limit is None:
            return
        now = self.clock.now()
        times = self._requests.get(key)
        if times is None or times.maxlen != limit:  # a new key, or the limit changed: keep the newest
            times = self._requests[key] = deque(times or (), maxlen=limit)
        self._requests.move_to_end(key)
        while times and times[0] <= now - RATE_WINDOW_SECONDS:
            times.popleft()
        if len(times) >= limit:  # full: the oldest time leaving the window frees the next slot
            meet("L30")  # a rate limit, and its answer, are assumed
            wait = max(1, math.ceil(times[0] + RATE_WINDOW_SECONDS - now))
            raise RateLimited(FieldError(
                "API-Key", "rate_limit",
                f"is over its rate limit of {limit} requests per minute (submits and status reads): retry in "
                f"{wait} s"), retry_after=wait)
        times.append(now)
        if len(self._requests) > RATE_TRACKED_KEYS:
            self._forget_idle_keys(now)

    def _forget_idle_keys(self, now: float) -> None:
        """Drop keys with nothing in the window; if still too many, the least recently seen ones."""
        for key in [k for k, times in self._requests.items() if not times or times[-1] <= now - RATE_WINDOW_SECONDS]:
            del self._requests[key]
        while len(self._requests) > RATE_TRACKED_KEYS:
            self._requests.popitem(last=False)

    def _check_pending(self, key: str) -> None:
        """Refuse a submit while ``key`` has ``max_pending`` jobs PENDING. Caller holds the lock."""
        limit = self._rate_limit("max_pending")
        if limit is None:
            return
        if self._pending_counts()[key] >= limit:
            meet("L30")
            raise RateLimited(FieldError(
                "API-Key", "max_pending",
                f"has {limit} jobs PENDING, its limit: retry once one is done"), retry_after=1)

    def _pending_counts(self) -> Counter:
        """PENDING jobs per owner key (due ones finish first). Caller holds the lock."""
        counts: Counter = Counter()
        for job in self.store:
            self._progress(job)
            if job.status == PENDING:
                counts[job.owner_key] += 1
        return counts

    def rate_limits(self) -> dict:
        """The limits, and per key (redacted) its requests in the window and its PENDING jobs."""
        with self.store.lock:
            now = self.clock.now()
            pending = self._pending_counts()
            seen = {key: {"requests_in_window": sum(t > now - RATE_WINDOW_SECONDS for t in self._requests.get(key, ())),
                          "pending": pending[key]}
                    for key in [*self._requests, *(k for k in pending if k not in self._requests)]}
            limits = dict(self.profile.get("rate_limits") or {"requests_per_minute": None, "max_pending": None})
            by_key = redacted_map(seen)
        return {"limits": dict(limits, window_seconds=RATE_WINDOW_SECONDS),
                "keys": [dict(key=key, **counts) for key, counts in by_key.items()]}

    # -- the public API ------------------------------------------------------------------------

    def authenticate(self, api_key: str | None) -> str:
        if not api_key:
            raise Unauthorized(FieldError("API-Key", "required", "header is missing: pass your key as API-Key"))
        if self.config.api_keys and api_key not in self.config.api_keys:
            raise Unauthorized(FieldError("API-Key", "valid", "is not a valid key"))
        return api_key

    def submit(self, api_key: str | None, body: object, base_url: str, rule: Rule | None = None) -> JobView:
        """A new job for a valid request (``body``: the parsed JSON); ``base_url``: where its downloads live
        unless ``public_url`` says otherwise; ``rule``: the rule this submit matched, which may set the job's
        lifecycle, outcome and webhook fault."""
        owner = self.authenticate(api_key)
        with self.store.lock:
            self._admit(owner)  # counted whatever its body, like a provider's gateway
        request = self.validator.validate(body)  # an invalid body spends nothing
        with self.store.lock:
            self._check_pending(owner)
            self._charge(owner, request.samples)  # first: a refused submit creates nothing
            now = self.clock.now()
            job_id = self._new_id()
            drawn = FAILURE if self._rng.random() < self.config.failure_rate else SUCCESS  # drawn always: a rule
            rule = rule if rule is not None and rule.shapes_jobs else None           # leaves others' draws be
            names = [f"{request.file_prefix or ''}{job_id}-{n}.png" for n in range(1, request.samples + 1)]
            job = Job(
                id=job_id, owner_key=owner, request=request, created_at=now,
                base_url=(self.config.public_url or base_url).rstrip("/"),
                planned_outcome=(rule and rule.outcome) or drawn,
                tokens=[self._new_token() for _ in range(request.samples)], file_names=names, rule=rule,
            )
            job.history.append((PENDING, now))
            self.store.add(job, now)
            if self._clocked(job):
                self._schedule(job)
            finished = self.profile.get("submit", {}).get("finished", "lifecycle")
            meet("L11")  # whether the POST answers PENDING or the finished job is assumed
            if finished == "never":  # the answer is PENDING; the job itself goes on per lifecycle
                view = self._view(job)
                self._progress(job)
                return view
            self._progress(job, at_once=finished == "always")
            return self._view(job)

    def status(self, api_key: str | None, job_id: str) -> JobView:
        """A status read: counts as a poll (lifecycle ``polls``); another key's job is as unknown as none."""
        owner = self.authenticate(api_key)
        with self.store.lock:
            self._admit(owner)
            job = self.store.get(job_id)
            if job is None or job.owner_key != owner:
                if job is not None:
                    meet("L21")  # another key's job: that it answers as unknown is assumed
                raise NotFound(FieldError("id", "exists", f"no job with id {job_id[:100]!r} for this key"))
            self.store.touch(job, self.clock.now())  # only its owner's reads keep a job from eviction
            job.polls += 1
            job.reads += 1
            if job.status != PENDING:
                meet("L28")  # a final state read again: that it never changes is assumed
            self._progress(job)
            return self._view(job)

    def image(self, key: str, friendly: bool) -> Download:
        """The image behind a download URL (``key``: its token, or its file name when ``friendly``)."""
        with self.store.lock:
            found = self.store.image(key, now=self.clock.now())
            if found is None or found[0].request.direct_link != friendly:
                raise NotFound(FieldError("url", "exists", "no image at this URL"))
            job, index = found
            job.reads += 1
            self._progress(job)  # a due job finishes on any read; an image read is not a status poll
            if job.status != SUCCESS:
                meet("L16")  # a queued URL read early: its answer is assumed
                raise ImageNotReady(FieldError("url", "ready", f"the job is {job.status}; the image is served once it "
                                                               "is SUCCESS"), job_id=job.id)
            ttl = float(self.profile.get("urls", {}).get("ttl_seconds", 86_400))
            age = self.clock.now() - job.finished_at
            if age > min(ttl, SHORTEST_URL_LIFETIME):
                meet("L22")  # past the URL's assumed lifetime, or the shortest one a variant gives
            if age > ttl:
                raise ImageExpired(FieldError("url", "expired", f"download URLs expire {ttl:g} s after the job is done"),
                                   job_id=job.id)
            request, file_name = job.request, job.file_names[index]
        fmt = self.profile["urls"]["direct_link_format" if friendly else "opaque_format"]
        meet("L27")  # served without a key, at the requested size: assumed
        if not friendly:
            meet("L17")  # an opaque URL's format is assumed
        spec = ImageSpec(prompt=request.prompt, negative_prompt=request.negative_prompt, width=request.width,
                         height=request.height, num_inference_steps=request.num_inference_steps,
                         guidance_scale=float(request.guidance_scale), index=index, samples=request.samples)
        name = file_name.rsplit(".", 1)[0] + "." + ("jpg" if fmt == "jpeg" else fmt)
        return Download(self.images.get(spec, fmt), CONTENT_TYPES[fmt], name, job.id)  # rendered unlocked

    def _view(self, job: Job) -> JobView:
        """A snapshot of ``job``; caller holds the store lock."""
        shows_urls = job.status == SUCCESS or (job.status == PENDING and job.request.queued_image_urls)
        return JobView(id=job.id, status=job.status, error=job.error,
                       download_urls=tuple(self._download_urls(job)) if shows_urls else None,
                       request=job.request, created_at=job.created_at, finished_at=job.finished_at,
                       polls=job.polls, forced=job.forced, history=tuple(job.history),
                       rule_id=job.rule.id if job.rule else None, owner_key=job.owner_key)

    def _download_urls(self, job: Job) -> list[str]:
        if job.request.direct_link:
            return [f"{job.base_url}/images/{quote(name)}" for name in job.file_names]
        return [f"{job.base_url}/files/{token}" for token in job.tokens]

    # -- lifecycle -----------------------------------------------------------------------------

    def _progress(self, job: Job, at_once: bool = False) -> None:
        """Finish a pending job if the lifecycle says it is time (``at_once``: now, whatever it says). Caller
        holds the store lock."""
        if job.status != PENDING:
            return
        lifecycle, seconds, polls = self._timing(job)
        due = (
            at_once
            or lifecycle == "immediate"
            or (lifecycle == "seconds" and self.clock.now() >= job.created_at + seconds)
            or (lifecycle == "polls" and job.polls >= polls)
            or (lifecycle == "polls_and_seconds" and self.clock.now() >= job.created_at + seconds
                and (job.reads >= polls or job.request.webhook is not None))
        )
        if due:
            error = None
            if job.planned_outcome == FAILURE:
                error = (job.rule and job.rule.error) or self.profile.get("failure_message", "Image generation failed")
            self._finish(job, job.planned_outcome, error)

    def _timing(self, job: Job) -> tuple[str, float, int]:
        """The job's lifecycle, pending seconds and pending polls: its rule's where it sets them, else the
        configuration's (so a rule's job keeps its timing whatever the configuration becomes)."""
        cfg, rule = self.config, job.rule
        if rule is None or rule.lifecycle is None:
            return cfg.lifecycle, cfg.pending_seconds, cfg.pending_polls
        return (rule.lifecycle, cfg.pending_seconds if rule.pending_seconds is None else rule.pending_seconds,
                cfg.pending_polls if rule.pending_polls is None else rule.pending_polls)

    def _clocked(self, job: Job) -> bool:
        """The job finishes by the clock, read or not (the background timer must wake for it)."""
        lifecycle = self._timing(job)[0]
        return lifecycle == "seconds" or (lifecycle == "polls_and_seconds" and job.request.webhook is not None)

    def _progress_all(self) -> None:
        for job in self.store:
            self._progress(job)

    def _finish(self, job: Job, status: str, error: str | None, forced: bool = False) -> bool:
        if not job.finish(status, self.clock.now(), error, forced):
            return False
        if job.request.webhook:
            fault = job.rule.webhook_fault if job.rule and job.rule.webhook_fault else self.faults.pick("webhook").action
            self.webhooks.submit(job.id, job.request.webhook, self._view(job).body(self.profile), fault=fault)
        return True

    def _schedule(self, job: Job) -> None:
        heapq.heappush(self._due, (job.created_at + self._timing(job)[1], job.id))
        with self._wake:
            if self._ticker is None and not self._closed:
                self._ticker = threading.Thread(target=self._tick_forever, name="sd35-mock-lifecycle", daemon=True)
                self._ticker.start()
            self._wake.notify()

    def tick(self) -> int:
        """Finish every job whose time has come; returns how many finished. Safe to call any time."""
        finished = 0
        with self.store.lock:
            now = self.clock.now()
            while self._due and self._due[0][0] <= now:
                _, job_id = heapq.heappop(self._due)
                job = self.store.get(job_id)
                if job is not None and job.status == PENDING:
                    self._progress(job)
                    finished += job.status != PENDING
        return finished

    def _tick_forever(self) -> None:
        """Background progression in real time, so webhooks fire for jobs nobody polls."""
        while not self._closed:
            self.tick()
            with self.store.lock:
                wait = (self._due[0][0] - self.clock.now()) if self._due else 1.0
            with self._wake:
                self._wake.wait(timeout=min(max(wait, 0.005), 1.0))

    # -- controls ------------------------------------------------------------------------------

    def advance_clock(self, seconds: float) -> float:
        now = self.clock.advance(seconds)
        self.tick()
        with self._wake:
            self._wake.notify()
        return now

    def _job(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(FieldError("id", "exists", f"no job with id {job_id[:100]!r}"))
        return job

    def force(self, job_id: str, status: str, error: str | None = None) -> JobView:
        """Complete or fail a job now, whatever the lifecycle; a terminal job is a ``Conflict``."""
        with self.store.lock:
            job = self._job(job_id)
            if not self._finish(job, status, error, forced=True):
                raise Conflict(FieldError("status", "terminal", f"job is already {job.status}; terminal states never change"))
            return self._view(job)

    def resend_webhook(self, job_id: str, url: str | None = None) -> JobView:
        """Send the job's body (as it stands) to its webhook again, or to ``url``; recorded with ``resent``. No
        faults apply: it is the test's own. A URL no delivery may take (malformed, a host not allowed, the mock
        itself) is refused now, naming ``url``: unlike a submit's webhook, the tester is there to be told."""
        with self.store.lock:
            job = self._job(job_id)
            self._progress(job)
            view = self._view(job)
        target = url if url is not None else job.request.webhook
        if target is None:
            raise InvalidRequest(FieldError("url", "required", "the job has no webhook: give the url to send it to"))
        verdict, why = self.webhooks.check(target)
        if verdict != "ok":
            raise InvalidRequest(FieldError("url", "allowed" if verdict == "blocked" else "format", why))
        self.webhooks.submit(job.id, target, view.body(self.profile), resent=True)
        return view

    def facts_of(self, job_id: str | None = None, image: str | None = None) -> tuple[str | None, str | None]:
        """The ``batch_id`` and prompt of the job with ``job_id``, or of the job behind a download's ``image``
        key (token or file name): what rules match a status read or a download on. (None, None) if none."""
        with self.store.lock:
            job = self.store.get(job_id) if job_id is not None else None
            if image is not None:
                found = self.store.image(image)
                job = found[0] if found else None
            return (job.request.batch_id, job.request.prompt) if job else (None, None)

    def list_jobs(self, batch_id: str | None = None, status: str | None = None, limit: int = 100, *,
                  key: str | None = None) -> list[JobView]:
        """Jobs of every key (or of ``key``, their owner's), newest (by creation) first."""
        with self.store.lock:
            self._progress_all()
            jobs = [j for j in self.store if (batch_id is None or j.request.batch_id == batch_id)
                    and (status is None or j.status == status) and (key is None or j.owner_key == key)]
            jobs.sort(key=lambda j: j.created_at, reverse=True)  # the store keeps jobs by last use, for eviction
            return [self._view(j) for j in jobs[:limit]]  # a view only for what is returned

    def job(self, job_id: str) -> JobView:
        """One job of any key, without counting as a poll."""
        with self.store.lock:
            job = self._job(job_id)
            self._progress(job)
            return self._view(job)

    def job_rule(self, job_id: str) -> dict | None:
        """The rule that shaped the job (as the control plane shows rules), even once deleted; None if none."""
        with self.store.lock:
            rule = self._job(job_id).rule
            return rule.as_dict() if rule is not None else None

    def stats(self) -> dict:
        with self.store.lock:
            self._progress_all()
            by_status = Counter(job.status for job in self.store)
            return {"jobs": len(self.store), "by_status": {s: by_status[s] for s in (PENDING, SUCCESS, FAILURE)},
                    "evicted": self.store.evicted, "pending_timers": len(self._due), "images": self.images.stats(),
                    "journal": len(self.journal)}

    def close(self) -> None:
        self._closed = True
        with self._wake:
            self._wake.notify_all()
        self.webhooks.close()

    # -- ids -----------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return uuid4_text(self._ids.getrandbits(128) if self._ids else self._entropy.bits128())

    def _new_token(self) -> str:
        return f"{self._ids.getrandbits(128) if self._ids else self._entropy.bits128():032x}"


class Entropy:
    """The operating system's random bytes (``os.urandom``), read a page at a time, for ids and tokens.

    They are drawn under the store lock, and ``os.urandom`` lets go of the GIL for its system call: with one call
    per id, the other threads ran into the held lock and queued behind it (at 32 connections 0.6 of the lock's
    acquisitions waited, and throughput fell below one connection's). One call per 256 draws leaves that rare."""

    PAGE = 4096

    def __init__(self) -> None:
        self._page, self._at, self._pid = b"", 0, -1

    def bits128(self) -> int:
        """128 random bits, never handed out twice; the caller holds the lock that guards this object."""
        at = self._at
        if at + 16 > len(self._page) or self._pid != os.getpid():  # a forked child reads its own
            self._page, at, self._pid = os.urandom(self.PAGE), 0, os.getpid()
        self._at = at + 16
        return int.from_bytes(self._page[at:at + 16], "big")


_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))  # the variant's and the version's bits
_UUID4_SET = (0x8000 << 48) | (4 << 76)          # RFC 4122 variant, version 4


def uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))``, without building a UUID object: a few µs less per submit."""
    h = f"{(bits & _UUID4_CLEAR) | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


__all__ = ["MockBackend", "Download", "GenerationRequest", "JobView"]
