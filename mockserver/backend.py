"""The mock's behaviour, free of HTTP: submit, status, images, and the controls tests need.

Like moto's backends, this is the whole model of the service; ``mockserver.http`` only parses and
serialises. Lifecycle progression follows ``config.lifecycle``: ``immediate`` (done at submit),
``seconds`` (done ``pending_seconds`` after submit, by the mock's clock), ``polls`` (done on the
``pending_polls``-th status read) or ``manual`` (done when the control plane says so).
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from typing import Callable
from urllib.parse import quote

from .config import MockConfig
from .errors import Conflict, FieldError, ImageExpired, ImageNotReady, MockError, NotFound, Unauthorized
from .faults import FaultInjector
from .images import CONTENT_TYPES, ImageCache, ImageSpec
from .jobs import FAILURE, PENDING, SUCCESS, Clock, Job, JobStore
from .journal import Journal
from .validation import GenerationRequest, RequestValidator
from .webhooks import WebhookDispatcher


class ConfigRules:
    """Answers that follow from the configuration alone. Shared by ``MockBackend`` and the workers'
    ``RemoteBackend`` (``mockserver.shared``), so neither needs a round trip to the other for them."""

    config: MockConfig

    @property
    def profile(self) -> dict:
        return self.config.profile

    def authenticate(self, api_key: str | None) -> str:
        if not api_key:
            raise Unauthorized(FieldError("API-Key", "required", "header is missing: pass your key as API-Key"))
        if self.config.api_keys and api_key not in self.config.api_keys:
            raise Unauthorized(FieldError("API-Key", "valid", "is not a valid key"))
        return api_key

    def http_status(self, kind: str, default: int) -> int:
        return int(self.profile.get("http_status", {}).get(kind, default))

    def body_http_status(self, body: dict) -> int:
        kind = {PENDING: "pending", SUCCESS: "success", FAILURE: "job_failure"}[body["status"]]
        return self.http_status(kind, 200)


class MockBackend(ConfigRules):
    def __init__(self, config: MockConfig | None = None, clock: Clock | None = None):
        self.initial_config = config or MockConfig()
        self.clock = clock or Clock()
        self.images = ImageCache(max_bytes=self.initial_config.image_cache_bytes)
        self._watchers: list[Callable[[str], None]] = []
        self.faults = FaultInjector(self.initial_config.seed, on_change=lambda: self._changed("faults"))
        self.webhooks = WebhookDispatcher(
            timeout=self.initial_config.webhook_timeout,
            max_attempts=self.initial_config.webhook_max_attempts,
            backoff=self.initial_config.webhook_backoff,
            allow_hosts=self.initial_config.webhook_allow_hosts,
            max_records=self.initial_config.webhook_records,
            clock=self.clock.now,
        )
        self._due: list[tuple[float, str]] = []         # (due time, job id) for lifecycle "seconds"
        self._wake = threading.Condition()
        self._ticker: threading.Thread | None = None
        self._closed = False
        self.store = JobStore(self.initial_config.max_jobs, self.initial_config.job_ttl_seconds,
                              on_evict=lambda: self._changed("evicted"))
        self.journal = Journal(self.initial_config.journal_size, self.initial_config.journal_body_chars)
        self._apply_config(self.initial_config)

    # -- configuration -----------------------------------------------------------------------

    def _apply_config(self, config: MockConfig, reseed: bool = True) -> None:
        self.config = config
        self.validator = RequestValidator(config.profile)
        # The store is kept (its lock may be held by the caller); only its bounds follow the config.
        self.store.max_jobs, self.store.ttl_seconds = config.max_jobs, config.job_ttl_seconds
        if self.journal.size != config.journal_size:
            self.journal = Journal(config.journal_size, config.journal_body_chars)
        self.journal.body_chars = config.journal_body_chars
        self.webhooks.update(timeout=config.webhook_timeout, max_attempts=config.webhook_max_attempts,
                             backoff=config.webhook_backoff, allow_hosts=config.webhook_allow_hosts)
        if reseed:  # never on other changes: re-seeding mid-run would hand out the same ids again
            self._rng = random.Random(config.seed)
            self._ids = random.Random(config.seed) if config.seed is not None else None
        self._changed("config")

    def watch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(what)`` after every change of ``what``: "config" (the configuration), "faults" (the
        set of fault rules), "evicted" (a job left the store), whoever makes it. The shared state publishes
        them to its workers."""
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[str], None]) -> None:
        self._watchers.remove(callback)

    def _changed(self, what: str) -> None:
        for callback in list(self._watchers):
            callback(what)

    def update_config(self, changes: dict) -> MockConfig:
        new = self.config.updated(changes)
        with self.store.lock:
            self._apply_config(new, reseed=new.seed != self.config.seed)
            self._due.clear()
            if new.lifecycle == "seconds":
                for job in self.store:
                    if job.status == PENDING:
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
            self.webhooks.clear()
            self.faults.clear(self.initial_config.seed)
            self._apply_config(self.initial_config)

    # -- the public API ------------------------------------------------------------------------

    def submit(self, api_key: str | None, body: object, base_url: str, journal: dict | None = None) -> dict:
        """A new job. ``journal``: the HTTP request to journal with the outcome (see ``_journaled``)."""
        return self._journaled(journal, lambda: self._create_job(
            self.authenticate(api_key), self.validator.validate(body), base_url))

    def create_job(self, owner: str, request: GenerationRequest, base_url: str, journal: dict | None = None) -> dict:
        """The second half of ``submit``, for a request already authenticated and validated."""
        return self._journaled(journal, lambda: self._create_job(owner, request, base_url))

    def _create_job(self, owner: str, request: GenerationRequest, base_url: str) -> dict:
        with self.store.lock:
            now = self.clock.now()
            job_id = self._new_id()
            names = [f"{request.file_prefix or ''}{job_id}-{n}.png" for n in range(1, request.samples + 1)]
            job = Job(
                id=job_id, owner_key=owner, request=request, created_at=now,
                base_url=(self.config.public_url or base_url).rstrip("/"),
                planned_outcome=FAILURE if self._rng.random() < self.config.failure_rate else SUCCESS,
                tokens=[self._new_token() for _ in range(request.samples)], file_names=names,
            )
            job.history.append((PENDING, now))
            self.store.add(job, now)
            if self.config.lifecycle == "seconds":
                self._schedule(job)
            self._progress(job)
            return self.job_body(job)

    def status(self, api_key: str | None, job_id: str, journal: dict | None = None) -> dict:
        return self._journaled(journal, lambda: self._status(api_key, job_id))

    def _status(self, api_key: str | None, job_id: str) -> dict:
        owner = self.authenticate(api_key)
        with self.store.lock:
            job = self.store.get(job_id)
            if job is None or job.owner_key != owner:
                raise NotFound(FieldError("id", "exists", f"no job with id {job_id[:100]!r} for this key"))
            self.store.touch(job, self.clock.now())  # only its owner's reads keep a job from eviction
            job.polls += 1
            self._progress(job)
            return self.job_body(job)

    def status_if_final(self, api_key: str | None, job_id: str, journal: dict | None = None) -> tuple[dict, float | None]:
        """``status``, and, if the answer can never change again (the job is terminal), when the job was last
        used: a worker may then give the same answer itself while ``store.evicted_through`` is below that."""
        body = self.status(api_key, job_id, journal=journal)
        with self.store.lock:
            job = self.store.get(job_id)
            return body, (job.touched_at if job is not None and job.is_terminal else None)

    def status_repeated(self, api_key: str, job_id: str, journal: dict | None = None) -> None:
        """A status read a worker answered itself from a final answer (``status_if_final``): count it and keep
        the job from eviction, as ``status`` does, and journal it with the status the client got."""
        with self.store.lock:
            job = self.store.get(job_id)
            if job is not None and job.owner_key == api_key:  # gone meanwhile: the answer came first
                self.store.touch(job, self.clock.now())
                job.polls += 1
        if journal is not None:
            self._journal(journal, journal["status"])

    def job_body(self, job: Job) -> dict:
        """The provider-shaped body for a job: PENDING, SUCCESS or FAILURE."""
        body: dict = {"status": job.status, "id": job.id}
        if job.status == FAILURE:
            if not self.profile.get("job_failure_includes_id", True):
                del body["id"]
            body["error"] = job.error
        elif job.status == SUCCESS or job.request.queued_image_urls:
            body["download_urls"] = self.download_urls(job)
        if job.request.batch_id is not None and self.profile.get("echo_batch_id", True):
            body["batch_id"] = job.request.batch_id
        return body

    def download_urls(self, job: Job) -> list[str]:
        if job.request.direct_link:
            return [f"{job.base_url}/images/{quote(name)}" for name in job.file_names]
        return [f"{job.base_url}/files/{token}" for token in job.tokens]

    def image(self, key: str, friendly: bool) -> tuple[bytes, str, str]:
        """The bytes, content type and file name behind a download URL."""
        spec, fmt, name = self.image_source(key, friendly)
        return self.images.get(spec, fmt), CONTENT_TYPES[fmt], name

    def image_source(self, key: str, friendly: bool) -> tuple[ImageSpec, str, str]:
        """What to render for a download URL (spec, format, file name), without rendering it: workers
        render from their own cache, so a slow first image never holds up the shared state."""
        with self.store.lock:
            found = self.store.image(key, now=self.clock.now())
            if found is None or found[0].request.direct_link != friendly:
                raise NotFound(FieldError("url", "exists", "no image at this URL"))
            job, index = found
            self._progress(job)  # a due job finishes on any read; an image read is not a status poll
            if job.status != SUCCESS:
                raise ImageNotReady(FieldError("url", "ready", f"the job is {job.status}; the image is served once it is SUCCESS"))
            ttl = float(self.profile.get("urls", {}).get("ttl_seconds", 86_400))
            if self.clock.now() > job.finished_at + ttl:
                raise ImageExpired(FieldError("url", "expired", f"download URLs expire {ttl:g} s after the job is done"))
            request = job.request
        fmt = self.profile["urls"]["direct_link_format" if friendly else "opaque_format"]
        spec = ImageSpec(prompt=request.prompt, negative_prompt=request.negative_prompt, width=request.width,
                         height=request.height, num_inference_steps=request.num_inference_steps,
                         guidance_scale=float(request.guidance_scale), index=index, samples=request.samples)
        name = job.file_names[index].rsplit(".", 1)[0] + "." + ("jpg" if fmt == "jpeg" else fmt)
        return spec, fmt, name

    def record_request(self, **entry) -> None:
        """Journal one API request, stamped with the mock's clock (see ``Journal.record``)."""
        self.journal.record(at=self.clock.now(), **entry)

    def _journaled(self, entry: dict | None, operation):
        """Run ``operation`` and journal the request ``entry`` (from the HTTP layer: method, path, query,
        headers, body, and ``started`` on ``time.monotonic``) with the status its outcome will be answered
        with. The entry is marked taken, so the HTTP layer does not journal it again. Journaling with the
        operation saves a worker a second message to the shared state (``mockserver.shared``)."""
        if entry is None:
            return operation()
        entry["taken"] = True
        status = 500
        try:
            body = operation()
            status = self.body_http_status(body)
            return body
        except MockError as exc:
            status = self.http_status(exc.kind, exc.default_status)
            raise
        finally:
            self._journal(entry, status)

    def _journal(self, entry: dict, status: int) -> None:
        self.record_request(method=entry["method"], path=entry["path"], query=entry["query"], headers=entry["headers"],
                            body=entry["body"], status=status, duration_ms=(time.monotonic() - entry["started"]) * 1000)

    # -- lifecycle -----------------------------------------------------------------------------

    def _progress(self, job: Job) -> None:
        """Finish a pending job if the lifecycle says it is time. Caller holds the store lock."""
        if job.status != PENDING:
            return
        cfg = self.config
        due = (
            cfg.lifecycle == "immediate"
            or (cfg.lifecycle == "seconds" and self.clock.now() >= job.created_at + cfg.pending_seconds)
            or (cfg.lifecycle == "polls" and job.polls >= cfg.pending_polls)
        )
        if due:
            error = self.profile.get("failure_message", "Image generation failed") if job.planned_outcome == FAILURE else None
            self._finish(job, job.planned_outcome, error)

    def _progress_all(self) -> None:
        for job in self.store:
            self._progress(job)

    def _finish(self, job: Job, status: str, error: str | None, forced: bool = False) -> bool:
        if not job.finish(status, self.clock.now(), error, forced):
            return False
        if job.request.webhook:
            self.webhooks.submit(job.id, job.request.webhook, self.job_body(job))
        return True

    def _schedule(self, job: Job) -> None:
        heapq.heappush(self._due, (job.created_at + self.config.pending_seconds, job.id))
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

    def force(self, job_id: str, status: str, error: str | None = None) -> dict:
        with self.store.lock:
            job = self._job(job_id)
            if not self._finish(job, status, error, forced=True):
                raise Conflict(FieldError("status", "terminal", f"job is already {job.status}; terminal states never change"))
            return self.job_detail(job_id)

    def list_jobs(self, batch_id: str | None = None, status: str | None = None, limit: int = 100) -> list[dict]:
        with self.store.lock:
            self._progress_all()
            jobs = [j for j in self.store if (batch_id is None or j.request.batch_id == batch_id)
                    and (status is None or j.status == status)]
            return [self._summary(j) for j in reversed(jobs)][:limit]

    def job_detail(self, job_id: str) -> dict:
        with self.store.lock:
            job = self._job(job_id)
            self._progress(job)
            detail = self._summary(job)
            detail.update(request=job.request.as_dict(), body=self.job_body(job),
                          history=[{"status": s, "at": t} for s, t in job.history])
            return detail

    def _summary(self, job: Job) -> dict:
        return {"id": job.id, "status": job.status, "batch_id": job.request.batch_id, "samples": job.request.samples,
                "created_at": job.created_at, "finished_at": job.finished_at, "polls": job.polls,
                "forced": job.forced, "owner_key": "***"}

    def stats(self) -> dict:
        with self.store.lock:
            return {"jobs": len(self.store), "evicted": self.store.evicted, "pending_timers": len(self._due),
                    "images": self.images.stats(), "journal": len(self.journal)}

    def close(self) -> None:
        self._closed = True
        with self._wake:
            self._wake.notify_all()
        self.webhooks.close()

    # -- ids -----------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4)) if self._ids else str(uuid.uuid4())

    def _new_token(self) -> str:
        return f"{self._ids.getrandbits(128):032x}" if self._ids else uuid.uuid4().hex


__all__ = ["MockBackend", "GenerationRequest"]
