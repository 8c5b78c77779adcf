"""Serving the app with waitress (a production WSGI server), in the foreground or in a thread."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import (InternalServerError, RequestEntityTooLarge, RequestHeaderFieldsTooLarge,
                                ServerNotImplemented)

from .backend import MockBackend
from .config import MockConfig
from .errors import FieldError
from .faults import FaultEchoFilter, task_done

HEADER_TIMEOUT = 10.0    # seconds to send a request's headers, from its first byte (from connecting, for the first)
MAX_HEADER_BYTES = 64 * 1024  # real clients send a few KB; it bounds what a request can make the mock hold
IDLE_TIMEOUT = 15        # seconds a kept-alive connection may sit idle
CONNECTION_LIMIT = 1000  # parallel test runners and load tests open many sockets

# Refusals waitress makes itself, before the app sees the request: the field, rule and message of their body
# (any other is a malformed request: a bad request line or header, broken chunked encoding).
WAITRESS_ERRORS = {
    RequestEntityTooLarge: ("body", "maxLength", "is too large"),
    RequestHeaderFieldsTooLarge: ("headers", "maxLength", "are too large"),
    ServerNotImplemented: ("Transfer-Encoding", "supported", "is not supported: only chunked is"),
    InternalServerError: ("server", "internal", "internal error in the mock (see its log)"),
}


class _ErrorTask(ErrorTask):
    """waitress's own refusals in the FAILURE JSON of every other rejection, not its plain text."""

    def execute(self):
        from .http.answers import failure_body  # Flask loads with the app, not with this module

        error = self.request.error
        field, rule, message = WAITRESS_ERRORS.get(type(error), ("request", "valid", f"is malformed: {error.body}"))
        if isinstance(error, RequestEntityTooLarge):
            message += f": at most {self.channel.max_body_bytes} bytes"
        body = json.dumps(failure_body([FieldError(field, rule, message)]), separators=(",", ":")).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Task(WSGITask):
    """waitress's task, sending an answer's header with the first piece of its body.

    waitress writes the header, then the body, each sent at once: two ``send()`` calls, and two TCP segments the
    client wakes for, on every JSON answer. Together they are one (wrk at 32 connections: 10 % more answers a
    second; our client's flow over HTTP 6-9 % faster; bench/README.md). Anything else (no body yet, a bodiless
    status, chunked, a piece past the Content-Length) goes waitress's own way, with its checks."""

    def write(self, data):
        if (self.wrote_header or not data or not self.complete or self.content_length is None
                or len(data) > self.content_length or not self.has_body):
            return super().write(data)
        header = self.build_response_header()  # never chunked: the answer has a length
        self.wrote_header = True
        self.content_bytes_written += len(data)
        self.channel.write_soon(header + data)


class _Channel(HTTPChannel):
    """waitress's channel, minus a busy loop that collapses throughput under concurrency, with a deadline
    for a request's headers, and room kept for new clients.

    With a worker still writing its answer, the stock channel reports itself writable; the I/O thread
    then fails to take the output lock, loops, and holds the GIL while doing so, starving the very
    workers it waits for (measured: 2,400 req/s at 8 connections, 630 at 32, 37 at 128). A channel
    whose task is running is left to that task, which flushes its own output and wakes the loop when
    done; only a full buffer or a close needs the I/O thread. (Compare Pylons/waitress#177.)

    waitress's only timeout restarts on every byte, so a client sending a header byte a second held its
    connection for good; at the connection limit waitress stops accepting, and such clients lock all
    others out. So a request's headers are due ``header_timeout`` after its first byte, and a new
    connection at the limit closes the one idle the longest.
    """

    task_class = _Task
    error_task_class = _ErrorTask

    def __init__(self, server, sock, addr, adj, map=None, *, header_timeout: float, max_body_bytes: int):
        super().__init__(server, sock, addr, adj, map)
        self.header_timeout, self.max_body_bytes = header_timeout, max_body_bytes
        self.headers_due: float | None = self.creation_time + header_timeout
        if len(self._map) >= adj.connection_limit:
            self._make_room()

    def _make_room(self) -> None:
        """Close the connection with no request in service that has been quiet the longest."""
        idle = [c for c in self.server.active_channels.values() if c is not self and not c.requests]
        if idle:
            min(idle, key=lambda c: c.last_activity).handle_close()

    def received(self, data):
        taken = super().received(data)
        if self.request is None or self.request.headers_finished:
            self.headers_due = None
        elif self.headers_due is None:
            self.headers_due = time.time() + self.header_timeout
        return taken

    def readable(self):
        if self.headers_due is not None and not self.requests and time.time() > self.headers_due:
            self.will_close = True  # no answer was promised yet: just close
        return super().readable()

    def service(self):
        try:
            super().service()
        finally:
            task_done()  # waitress's echoes of an injected fault are muted only while its request is served

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
                max_body_bytes: int = 1_048_576, *, header_timeout: float = HEADER_TIMEOUT,
                idle_timeout: int = IDLE_TIMEOUT, connection_limit: int = CONNECTION_LIMIT) -> BaseWSGIServer:
    """A bound, not yet running, waitress server; ``port=0`` picks a free port."""
    server = waitress.create_server(
        app, host=host, port=port, threads=threads, ident="sd35-mock", connection_limit=connection_limit,
        asyncore_use_poll=True,             # no select() limit of 1024 descriptors
        # waitress spools bodies to a temp file and refuses (413) past its own cap; below that Flask refuses
        # anything over max_body_bytes with a 413 (both FAILURE JSON: one error shape).
        max_request_body_size=max(64 * 1024 * 1024, 4 * max_body_bytes),
        max_request_header_size=MAX_HEADER_BYTES,
        channel_timeout=idle_timeout, cleanup_interval=min(5, idle_timeout), clear_untrusted_proxy_headers=True,
    )
    server.channel_class = functools.partial(_Channel, header_timeout=header_timeout, max_body_bytes=max_body_bytes)
    mute_fault_echoes()
    return server


def mute_fault_echoes() -> None:
    """waitress's warnings caused by an injected fault give way to the mock's one line naming it (http.faults)."""
    waitress_log = logging.getLogger("waitress")
    if not any(isinstance(f, FaultEchoFilter) for f in waitress_log.filters):
        waitress_log.addFilter(FaultEchoFilter())


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
          backend: MockBackend | None = None, **limits) -> RunningServer:
    """Start a real server in a daemon thread; the caller closes it. ``limits``: ``make_server``'s
    ``header_timeout``, ``idle_timeout`` and ``connection_limit``."""
    from .http import create_app
    from .http.guard import serving_at

    backend = backend or MockBackend(config)
    app = create_app(backend=backend)
    server = make_server(app, host, port, threads, backend.config.max_body_bytes, **limits)
    serving_at(app, host, server.effective_port)  # no webhook to the mock itself
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
