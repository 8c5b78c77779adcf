"""Jobs, their store and the clock they live by: plain data, bounded, no HTTP.

A job moves PENDING -> SUCCESS or PENDING -> FAILURE once; ``Job.finish`` refuses any other move,
so a terminal state can never change, whoever asks.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .validation import GenerationRequest

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
    error: str | None = None
    finished_at: float | None = None
    forced: bool = False
    touched_at: float = 0.0                  # last submit, status read or image read: what eviction goes by
    history: list[tuple[str, float]] = field(default_factory=list)

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


class JobStore:
    """Jobs by id, and their images by token and file name, bounded in count and age.

    When full, the least recently used job goes first, so a job a client is still polling outlives
    ones nobody asks about; a job unused for ``ttl_seconds`` expires (the API promises no lifetime;
    the provider's newer API keeps results 24 h). The caller holds ``lock`` around every use.
    """

    def __init__(self, max_jobs: int, ttl_seconds: float, on_evict: Callable[[], None] | None = None):
        self.max_jobs, self.ttl_seconds = max_jobs, ttl_seconds
        self.lock = threading.RLock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._images: dict[str, tuple[str, int]] = {}   # token or file name -> (job id, sample index)
        self.evicted = 0
        # Jobs leave in the order they were last used (LRU or expiry), so every job used after this
        # moment is still here: a worker may trust a copy of a finished job on that ground (see shared).
        self.evicted_through = -math.inf
        self._on_evict = on_evict or (lambda: None)

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
        self.evicted_through = max(self.evicted_through, job.touched_at)
        self._on_evict()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def touch(self, job: Job, now: float) -> None:
        """A use of the job: it becomes the last to be evicted. (Never earlier than before, even if the
        wall clock steps back: ``evicted_through`` relies on it.)"""
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
        self.evicted_through = -math.inf
