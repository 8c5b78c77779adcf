"""Jobs, their store and the clock they live by: plain data, bounded, no HTTP.

A job moves PENDING -> SUCCESS or PENDING -> FAILURE once; ``Job.finish`` refuses any other move,
so a terminal state can never change, whoever asks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from .coverage import meet
from .validation import GenerationRequest

if TYPE_CHECKING:
    from .rules import Rule

PENDING, SUCCESS, FAILURE = "PENDING", "SUCCESS", "FAILURE"
TERMINAL = (SUCCESS, FAILURE)


class Clock:
    """Wall time plus an offset the control plane can advance, so tests never sleep for a lifecycle."""

    def __init__(self, source: Callable[[], float] = time.time):
        self._source = source
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._source() + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0


@dataclass
class Job:
    id: str
    owner_key: str
    request: GenerationRequest
    created_at: float
    base_url: str
    planned_outcome: str                    # SUCCESS or FAILURE, drawn at submit from the failure rate
    tokens: list[str]                       # opaque download tokens, one per sample
    file_names: list[str]                   # friendly .png names, one per sample
    status: str = PENDING
    polls: int = 0
    reads: int = 0                           # status reads and downloads (lifecycle polls_and_seconds)
    error: str | None = None
    finished_at: float | None = None
    forced: bool = False
    touched_at: float = 0.0                  # last submit, status read or image read: what eviction goes by
    history: list[tuple[str, float]] = field(default_factory=list)
    rule: Rule | None = None                 # the rule that shaped it (lifecycle, outcome, webhook fault)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def finish(self, status: str, at: float, error: str | None = None, forced: bool = False) -> bool:
        """Move to a terminal state; False (and no change) if the job is already terminal."""
        if self.is_terminal or status not in TERMINAL:
            return False
        self.status, self.finished_at, self.forced = status, at, forced
        self.error = error if status == FAILURE else None
        self.history.append((status, at))
        return True


@dataclass(frozen=True)
class JobView:
    """A job as it stands at one moment: what the backend hands out, so an answer is never built from a
    job that changes under it. ``download_urls`` is None until the job has URLs to show."""

    id: str
    status: str
    error: str | None
    download_urls: tuple[str, ...] | None
    request: GenerationRequest
    created_at: float
    finished_at: float | None
    polls: int
    forced: bool
    history: tuple[tuple[str, float], ...]
    rule_id: str | None = None
    owner_key: str = ""                      # the API key that made it: redact it wherever it is shown

    @property
    def batch_id(self) -> str | None:
        return self.request.batch_id

    def body(self, profile: dict) -> dict:
        """The provider's JSON for this job (ledger rows 12-14, 18), shaped by the profile: the status
        answer and the webhook payload are this same body."""
        body: dict = {"status": self.status, "id": self.id}
        if self.status == FAILURE:
            meet("L24")  # that a failed job's body keeps its id is assumed
            if not profile.get("job_failure_includes_id", True):
                del body["id"]
            body["error"] = self.error
        elif self.download_urls is not None:
            body["download_urls"] = list(self.download_urls)
        if self.batch_id is not None:
            meet("L18")  # whether batch_id is echoed is assumed
            if profile.get("echo_batch_id", True):
                body["batch_id"] = self.batch_id
        return body


class JobStore:
    """Jobs by id, and their images by token and file name, bounded in count and age.

    When full, the least recently used job goes first, so a job a client is still polling outlives
    ones nobody asks about; a job unused for ``ttl_seconds`` expires (the API promises no lifetime;
    the provider's newer API keeps results 24 h). The caller holds ``lock`` around every use.
    """

    def __init__(self, max_jobs: int, ttl_seconds: float):
        self.max_jobs, self.ttl_seconds = max_jobs, ttl_seconds
        self.lock = threading.RLock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._images: dict[str, tuple[str, int]] = {}   # token or file name -> (job id, sample index)
        self.evicted = 0

    def add(self, job: Job, now: float) -> None:
        self.expire(now)
        while len(self._jobs) >= self.max_jobs:
            self._remove(next(iter(self._jobs)))
        job.touched_at = now
        self._jobs[job.id] = job
        for index, (token, name) in enumerate(zip(job.tokens, job.file_names)):
            self._images[token] = (job.id, index)
            self._images[name] = (job.id, index)

    def expire(self, now: float) -> None:
        while self._jobs:
            oldest = next(iter(self._jobs.values()))
            if oldest.touched_at + self.ttl_seconds > now:
                break
            self._remove(oldest.id)

    def _remove(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        for key in (*job.tokens, *job.file_names):
            self._images.pop(key, None)
        self.evicted += 1

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def touch(self, job: Job, now: float) -> None:
        """A use of the job: it becomes the last to be evicted (never earlier, even if the clock steps back)."""
        job.touched_at = max(job.touched_at, now)
        self._jobs.move_to_end(job.id)

    def image(self, key: str, now: float | None = None) -> tuple[Job, int] | None:
        found = self._images.get(key)
        if found is None:
            return None
        job = self._jobs.get(found[0])
        if job is None:
            return None
        if now is not None:
            self.touch(job, now)
        return job, found[1]

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def clear(self) -> None:
        self._jobs.clear()
        self._images.clear()
