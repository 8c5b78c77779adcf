"""Serving the app with waitress (a production WSGI server), in the foreground or in a thread."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from dataclasses import dataclass
from typing import Iterator

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from .backend import MockBackend
from .config import MockConfig


class _Channel(HTTPChannel):
    """waitress's channel, minus a busy loop that collapses throughput under concurrency.

    With a worker still writing its answer, the stock channel reports itself writable; the I/O thread
    then fails to take the output lock, loops, and holds the GIL while doing so, starving the very
    workers it waits for (measured: 2,400 req/s at 8 connections, 630 at 32, 37 at 128). A channel
    whose task is running is left to that task, which flushes its own output and wakes the loop when
    done; only a full buffer or a close needs the I/O thread. (Compare Pylons/waitress#177.)
    """

    def writable(self):
        if self.requests and self.total_outbufs_len < self.adj.outbuf_high_watermark:
            return bool(self.will_close or self.close_when_flushed)
        return super().writable()


def tune_serving_process() -> None:
    """Settings for a process that serves under load (the command line's)."""
    # waitress warns "Task queue depth is N" on every request that waits for a thread: under load that is
    # thousands of lines a second, and writing them cost a third of the throughput. Queueing is normal here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Fewer, cheaper collections: a full one walks every stored job, and at the default thresholds
    # those walks were the p99 at low load (3-10 ms instead of under 1 ms). Start-up objects are frozen.
    gc.set_threshold(50_000, 50, 100)


def make_server(app, host: str = "127.0.0.1", port: int = 8080, threads: int = 4,
                max_body_bytes: int = 1_048_576) -> BaseWSGIServer:
    """A bound, not yet running, waitress server; ``port=0`` picks a free port."""
    server = waitress.create_server(
        app, host=host, port=port, threads=threads, ident="sd35-mock",
        connection_limit=1000,              # parallel test runners and load tests open many sockets
        asyncore_use_poll=True,             # no select() limit of 1024 descriptors
        # waitress spools bodies to a temp file and answers a plain-text 413 past its own cap; below that
        # Flask refuses anything over max_body_bytes with a JSON 413, so clients see one error shape.
        max_request_body_size=max(64 * 1024 * 1024, 4 * max_body_bytes),
        channel_timeout=60, clear_untrusted_proxy_headers=True,
    )
    server.channel_class = _Channel
    return server


def server_url(server: BaseWSGIServer, host: str) -> str:
    return display_url(host, server.effective_port)


def display_url(host: str, port: int) -> str:
    """The URL to print for a bound address: a wildcard address is reached through loopback."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


@dataclass
class RunningServer:
    url: str
    backend: MockBackend
    app: object
    server: BaseWSGIServer
    thread: threading.Thread

    def close(self) -> None:
        """Stop at once. waitress's own close() only stops listening, and its loop runs on while any
        client keeps a connection alive; so close every channel on the loop's thread, let the loop end,
        stop the workers, and only then close the trigger pipe they signal through."""
        server = self.server

        def close_channels():
            for dispatcher in list(server._map.values()):
                if dispatcher is server:  # its own close() would shut the trigger under the workers
                    wasyncore.dispatcher.close(server)
                elif dispatcher is not server.trigger:
                    dispatcher.close()
            server.trigger.del_channel()  # an empty map ends the loop

        server.trigger.pull_trigger(close_channels)
        self.thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=5)
        server.trigger.close()
        self.backend.close()


def start(config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, threads: int = 4,
          backend: MockBackend | None = None) -> RunningServer:
    """Start a real server in a daemon thread; the caller closes it."""
    from .http import create_app

    backend = backend or MockBackend(config)
    app = create_app(backend=backend)
    server = make_server(app, host, port, threads, backend.config.max_body_bytes)
    thread = threading.Thread(target=server.run, name="sd35-mock-server", daemon=True)
    thread.start()
    return RunningServer(server_url(server, host), backend, app, server, thread)


@contextlib.contextmanager
def serve(config: MockConfig | None = None, **kwargs) -> Iterator[RunningServer]:
    """``with serve(MockConfig(lifecycle="immediate")) as mock: requests.get(mock.url + ...)``"""
    running = start(config, **kwargs)
    try:
        yield running
    finally:
        running.close()
