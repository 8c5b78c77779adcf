"""Serving with N HTTP worker processes over one shared state (``mockserver.shared``).

The calling process keeps the ``MockBackend`` and serves it to the workers from a thread; the workers
share one listening socket and accept from it in turn, like gunicorn's. Each worker leaves as
soon as its parent is gone, so no orphan keeps the port. ``start_workers`` is used both by
``python -m mockserver --workers N`` and by tests, which then drive the very same arrangement.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import threading
from dataclasses import dataclass
from multiprocessing.connection import wait

from .backend import MockBackend
from .config import MockConfig
from .shared import RemoteBackend, StateChannel, StateServer

log = logging.getLogger("mockserver.workers")


def bind(host: str, port: int) -> socket.socket:
    """The one listening socket every worker accepts from (IPv4 or IPv6, by the address given)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


@dataclass
class RunningWorkers:
    """Like ``server.RunningServer``: the URL, the one backend, and ``close()``."""

    url: str
    backend: MockBackend
    processes: list
    state: StateServer
    channel: StateChannel
    sock: socket.socket

    def sentinels(self) -> list[int]:
        return [p.sentinel for p in self.processes]

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        self.state.close()
        self.sock.close()
        self.channel.close()
        self.backend.close()


def start_workers(config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, workers: int = 2,
                  threads: int = 4, backend: MockBackend | None = None, sock: socket.socket | None = None,
                  quiet: bool = False, start_method: str | None = None) -> RunningWorkers:
    """Serve ``backend`` (or a new one) from ``workers`` processes; the caller closes the result.

    ``start_method``: by default "fork" when this process runs no other thread yet (as in the CLI): the
    workers start at once and share the pages of the code loaded before. Otherwise (a test run, with its
    threads) "spawn", a fresh interpreter per worker, since forking a process with threads is unsafe.
    """
    from .server import display_url

    if start_method is None:
        forkable = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
        start_method = "fork" if forkable else "spawn"
    backend = backend or MockBackend(config)
    sock = sock or bind(host, port)
    channel = StateChannel()
    if start_method == "fork":
        from . import http  # noqa: F401 - loaded once here, shared by every worker

        gc.collect()
        gc.freeze()  # objects made so far are never collected, so their pages stay shared
    context = multiprocessing.get_context(start_method)
    level = logging.WARNING if quiet else logging.getLogger().getEffectiveLevel()
    processes = [context.Process(target=_worker_main, name=f"sd35-mock-worker-{index}", daemon=True,
                                 args=(index, sock, channel.address, channel.flags, threads, level))
                 for index in range(workers)]
    for process in processes:
        process.start()
    state = StateServer(backend, channel)  # its thread starts only now, after any fork
    state.start()
    return RunningWorkers(display_url(host, sock.getsockname()[1]), backend, processes, state, channel, sock)


def serve_forever(running: RunningWorkers) -> int:
    """Block until SIGINT or SIGTERM (0) or until a worker dies (1): a mock short of a worker stops loudly
    rather than run on with less capacity and hide it."""
    stopping = threading.Event()

    def stop(signum, frame):
        if not stopping.is_set():  # a second signal during the shutdown changes nothing
            stopping.set()
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        ended = wait(running.sentinels())
        for process in running.processes:
            if process.sentinel in ended:
                log.error("%s (pid %s) ended with exit code %s; stopping the mock",
                          process.name, process.pid, process.exitcode)
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
    return code


def _worker_main(index: int, sock: socket.socket, address: str, flags, threads: int, log_level: int) -> None:
    """A worker: waitress over a ``RemoteBackend``. Runs in a spawned interpreter."""
    from .http import create_app
    from .server import make_server, tune_serving_process
    from .shared import StateAddress

    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tune_serving_process()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    threading.Thread(target=_exit_with_parent, args=(os.path.dirname(address),), daemon=True).start()
    backend = RemoteBackend(StateAddress(address, flags), worker=index)
    app = create_app(backend=backend)
    server = make_server(app, sockets=[sock], threads=threads, max_body_bytes=backend.config.max_body_bytes)
    gc.freeze()
    server.run()


def _exit_with_parent(state_directory: str) -> None:
    """Block until the parent is gone, then leave at once (waitress would otherwise keep the port),
    removing the state's socket directory, which a parent killed outright could not."""
    wait([multiprocessing.parent_process().sentinel])
    shutil.rmtree(state_directory, ignore_errors=True)
    os._exit(0)


__all__ = ["RunningWorkers", "bind", "serve_forever", "start_workers"]
