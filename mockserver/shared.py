"""Several worker processes, one state: the state server and the workers' ``RemoteBackend``.

One Python process tops out near 2,300 requests a second on this project's 2-core machines (the GIL), so
``--workers N`` serves HTTP from N processes. The main process keeps the one ``MockBackend`` (jobs, clock,
configuration, faults, journal, webhooks, the lifecycle timer) and answers its workers over a private
Unix socket. Each worker runs the unchanged HTTP layer over a ``RemoteBackend``, whose every call that
reads or changes state is one round trip: a change made through one worker is seen by the next request
on any other.

Messages between processes are few, because each one costs tens of microseconds of wake-up:
- an API request's journal entry travels with its call (``MockBackend._journaled``);
- what follows from the configuration alone (key check, HTTP status codes, validating a new request, the
  costliest part of a submit) is answered in the worker, from a cached ``MockConfig`` fetched again
  whenever a generation counter in shared memory moves;
- fault rules are consulted only while a shared counter says any are active;
- images are rendered in the worker, from its own bounded cache; the state only says what to render;
- a final status answer (SUCCESS or FAILURE never changes) is given again by the worker itself, while the
  job is surely still stored (``JobStore.evicted_through``) and the configuration unchanged; the state is
  told without a reply, so it still counts the poll, keeps the job from eviction and journals it.
So a request without faults costs at most one round trip, and a repeated poll of a finished job none.
Messages sent without a reply are taken in, on every connection, before any control-plane call is
answered: a worker sends them before its answer leaves, so whatever follows that answer sees their effect.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import pickle
import queue
import selectors
import shutil
import socket
import tempfile
import threading
from multiprocessing.connection import Connection

from .backend import ConfigRules, MockBackend
from .config import MockConfig
from .errors import MockError
from .faults import FaultPlan
from .images import CONTENT_TYPES, ImageCache
from .validation import RequestValidator

log = logging.getLogger("mockserver.shared")

# What a worker may ask of the shared backend: the HTTP layer's whole use of it, nothing more.
CALLS = frozenset({
    "create_job", "status_if_final", "status_repeated", "image_source", "record_request", "config",
    "update_config", "reset", "advance_clock", "list_jobs", "job_detail", "force", "stats",
    "journal.entries", "journal.clear", "webhooks.records", "webhooks.wait_idle",
    "faults.pick", "faults.rules", "faults.add", "faults.clear",
})
# The API's own calls; every other call (the control plane) first takes in all messages already sent.
API_CALLS = frozenset({"create_job", "status_if_final", "status_repeated", "image_source", "record_request",
                       "config", "faults.pick"})
BLOCKING = frozenset({"webhooks.wait_idle"})
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
FINAL_ANSWERS = 4096  # final status answers a worker keeps


class StateError(RuntimeError):
    """The shared state failed in a way that is not the client's fault (its log says why)."""


class SharedFlags:
    """Figures in shared memory, read by workers at the cost of a memory load: the configuration's
    generation, how many fault rules are active, and the store's ``evicted_through``."""

    def __init__(self):
        self._values = multiprocessing.RawArray("q", 2)
        self._times = multiprocessing.RawArray("d", [-math.inf])

    @property
    def generation(self) -> int:
        return self._values[0]

    @property
    def active_faults(self) -> int:
        return self._values[1]

    @property
    def evicted_through(self) -> float:
        return self._times[0]

    def publish(self, *, bump_generation: bool = False, active_faults: int | None = None,
                evicted_through: float | None = None) -> None:
        if bump_generation:
            self._values[0] += 1
        if active_faults is not None:
            self._values[1] = active_faults
        if evicted_through is not None:
            self._times[0] = evicted_through


class StateAddress:
    """Where a worker finds the state: the socket's path and the shared flags (picklable for a spawn)."""

    def __init__(self, address: str, flags: SharedFlags):
        self.address = address
        self.flags = flags

    def connect(self) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.address)
        return Connection(sock.detach())


class StateChannel(StateAddress):
    """The state's listening socket, in a fresh directory of mode 0700 so only this user can connect."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="sd35-mock-")
        super().__init__(os.path.join(self.directory, "state.sock"), SharedFlags())
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        self.listener.listen(64)

    def accept(self) -> Connection:
        sock, _ = self.listener.accept()
        return Connection(sock.detach())

    def close(self) -> None:
        self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class StateServer:
    """Serves one ``MockBackend`` to the workers from one thread: a selector over every worker connection.

    One thread: every call takes microseconds, and calls from all workers are taken in the order they come.
    Some messages need no reply (``record_request``, ``status_repeated``); a control-plane call first drains
    every connection that has something waiting (see the module docstring). ``webhooks.wait_idle`` may
    block for seconds, so it runs in a thread of its own while its connection is set aside.
    """

    def __init__(self, backend: MockBackend, channel: StateChannel):
        self.backend = backend
        self.channel = channel
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._returning: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._publish_lock = threading.Lock()
        self._publish()
        backend.watch(self._publish)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._serve_forever, name="sd35-state", daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        """Stop serving; the thread closes every connection and its own descriptors on its way out."""
        self.backend.unwatch(self._publish)
        self._closed = True
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _serve_forever(self) -> None:
        self._selector.register(self.channel.listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closed:
                for key, _ in self._selector.select():
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        os.read(self._wake_r, 4096)
                        while not self._returning.empty():
                            conn = self._returning.get()
                            self._selector.register(conn, selectors.EVENT_READ, conn)
                    else:
                        self._handle(key.data)
        finally:
            for key in list(self._selector.get_map().values()):
                if isinstance(key.data, Connection):
                    key.data.close()
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _accept(self) -> None:
        try:
            conn = self.channel.accept()
        except OSError:  # closed at shutdown
            return
        self._selector.register(conn, selectors.EVENT_READ, conn)

    def _handle(self, conn: Connection) -> None:
        try:
            name, args, kwargs, reply = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            self._selector.unregister(conn)
            conn.close()
            return
        if name not in API_CALLS:
            self._drain(conn)
        if name in BLOCKING:
            self._selector.unregister(conn)
            threading.Thread(target=self._answer_aside, args=(conn, name, args, kwargs), daemon=True).start()
            return
        answer = self._answer(name, args, kwargs)
        if reply:
            self._send(conn, answer)
        elif not answer[0]:
            log.error("shared state: one-way %s failed: %s", name, answer[1])

    def _drain(self, asking: Connection) -> None:
        """Handle every message already waiting on another connection (see the class docstring)."""
        while True:
            waiting = [key.data for key, _ in self._selector.select(timeout=0)
                       if isinstance(key.data, Connection) and key.data is not asking]
            if not waiting:
                return
            for conn in waiting:
                self._handle(conn)

    def _answer_aside(self, conn: Connection, name: str, args: tuple, kwargs: dict) -> None:
        self._send(conn, self._answer(name, args, kwargs))
        self._returning.put(conn)
        os.write(self._wake_w, b"x")

    def _answer(self, name: str, args: tuple, kwargs: dict) -> tuple[bool, object]:
        try:
            return True, self.call(name, args, kwargs)
        except MockError as exc:
            return False, exc
        except Exception:
            log.exception("shared state: %s failed", name)
            return False, StateError(f"{name} failed in the shared state")

    def _send(self, conn: Connection, answer: tuple[bool, object]) -> None:
        try:
            conn.send_bytes(pickle.dumps(answer, PICKLE_PROTOCOL))
        except (EOFError, OSError):
            pass  # the worker is gone; its connection reads as closed next time round

    def call(self, name: str, args: tuple, kwargs: dict):
        if name not in CALLS:
            raise StateError(f"{name!r} is not a shared call")
        if name == "config":
            return self.backend.config
        target = self.backend
        for part in name.split("."):
            target = getattr(target, part)
        return target(*args, **kwargs)

    def _publish(self, what: str = "config") -> None:
        """Called by the backend on every change, by a worker or in-process (a test's ``MockHandle``), so
        the change is in shared memory before the call that made it returns."""
        with self._publish_lock:  # one writer at a time: an increment is never lost, the count is the latest
            self.channel.flags.publish(
                bump_generation=what == "config",
                active_faults=len(self.backend.faults.rules()) if what in ("config", "faults") else None,
                evicted_through=self.backend.store.evicted_through if what in ("config", "evicted") else None)


class _Calls:
    """``remote.journal.entries(...)`` and the like: a dotted name sent as one call."""

    def __init__(self, remote: "RemoteBackend", prefix: str):
        self._remote, self._prefix = remote, prefix

    def __getattr__(self, name: str):
        full = f"{self._prefix}.{name}"
        return lambda *args, **kwargs: self._remote._call(full, *args, **kwargs)


class _RemoteFaults(_Calls):
    def pick(self, endpoint: str) -> FaultPlan:
        if not self._remote.channel.flags.active_faults:  # the common case costs no round trip
            return FaultPlan()
        return self._remote._call("faults.pick", endpoint)


def _taken(entry: dict | None) -> dict | None:
    """Send the journal entry with the call: the shared state journals it, whatever the outcome."""
    if entry is not None:
        entry["taken"] = True
    return entry


class RemoteBackend(ConfigRules):
    """A worker's view of the shared ``MockBackend``: the same methods the HTTP layer uses."""

    def __init__(self, channel: StateAddress, worker: int = 0):
        self.channel = channel
        self.worker = worker
        self._local = threading.local()  # one connection per worker thread: calls never interleave
        self._final: dict[tuple[str, str], tuple[int, float, dict]] = {}  # (key, id) -> (generation, used, body)
        self._config: MockConfig | None = None
        self._generation = -1
        self.journal = _Calls(self, "journal")
        self.webhooks = _Calls(self, "webhooks")
        self.faults = _RemoteFaults(self, "faults")
        self.images = ImageCache(max_bytes=self.config.image_cache_bytes)

    def _connection(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.channel.connect()
        return conn

    def _call(self, name: str, *args, **kwargs):
        conn = self._connection()
        conn.send_bytes(pickle.dumps((name, args, kwargs, True), PICKLE_PROTOCOL))
        ok, value = pickle.loads(conn.recv_bytes())
        if ok:
            return value
        raise value

    def _tell(self, name: str, *args, **kwargs) -> None:
        """A call without a reply (see ``StateServer``)."""
        self._connection().send_bytes(pickle.dumps((name, args, kwargs, False), PICKLE_PROTOCOL))

    @property
    def config(self) -> MockConfig:
        generation = self.channel.flags.generation  # read first: a change during the fetch is fetched again
        if generation != self._generation:
            config = self._call("config")
            if self._config is None or config.profile != self._config.profile:
                self.validator = RequestValidator(config.profile)
            self._config, self._generation = config, generation
        return self._config

    def submit(self, api_key, body, base_url, journal: dict | None = None) -> dict:
        """Checked here, in parallel with the other workers; only the new job is made in the shared state."""
        owner = self.authenticate(api_key)
        request = self.validator.validate(body)
        return self._call("create_job", owner, request, base_url, journal=_taken(journal))

    def status(self, api_key, job_id, journal: dict | None = None) -> dict:
        """A final answer (SUCCESS or FAILURE) never changes, so this worker gives it again itself while the
        job is surely still stored, and tells the state without waiting: polls are the bulk of the traffic."""
        flags = self.channel.flags
        generation = flags.generation
        known = self._final.get((api_key, job_id))
        if known is not None and known[0] == generation and known[1] > flags.evicted_through:
            body = known[2]
            if journal is not None:
                _taken(journal)["status"] = self.body_http_status(body)
            self._tell("status_repeated", api_key, job_id, journal=journal)
            return body
        body, touched_at = self._call("status_if_final", api_key, job_id, journal=_taken(journal))
        if touched_at is not None:
            if len(self._final) >= FINAL_ANSWERS:
                self._final.clear()  # bounded; the next poll of each asks the state again
            # Tagged with the generation read before the call: a change during it makes the copy stale.
            self._final[(api_key, job_id)] = (generation, touched_at, body)
        return body

    def image(self, key: str, friendly: bool) -> tuple[bytes, str, str]:
        spec, fmt, name = self._call("image_source", key, friendly)
        return self.images.get(spec, fmt), CONTENT_TYPES[fmt], name

    def record_request(self, **entry) -> None:
        self._tell("record_request", **entry)

    def update_config(self, changes: dict) -> MockConfig:
        return self._call("update_config", changes)

    def reset(self) -> None:
        self._call("reset")

    def advance_clock(self, seconds: float) -> float:
        return self._call("advance_clock", seconds)

    def list_jobs(self, batch_id=None, status=None, limit: int = 100) -> list[dict]:
        return self._call("list_jobs", batch_id, status, limit)

    def job_detail(self, job_id: str) -> dict:
        return self._call("job_detail", job_id)

    def force(self, job_id: str, status: str, error: str | None = None) -> dict:
        return self._call("force", job_id, status, error)

    def stats(self) -> dict:
        stats = self._call("stats")
        stats["images"] = self.images.stats()  # rendering happens here, so this worker's cache
        stats["worker"] = {"index": self.worker, "pid": os.getpid()}
        return stats

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


__all__ = ["CALLS", "RemoteBackend", "SharedFlags", "StateAddress", "StateChannel", "StateError", "StateServer"]
