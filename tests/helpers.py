"""Shared test helpers: a real local webhook receiver, and the page's own example."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO.parent / "shared" / "api" / "sd3_5-v1.txt"
PAGE_EXAMPLE = REPO / "tests" / "data" / "page_example.py"
PAGE_URL = "https://api.imagepipeline.io/sd3_5/v1"


class Receiver:
    """An HTTP server on 127.0.0.1 that records POSTed JSON; ``fail_next`` answers 500 that many times."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.fail_next = 0
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver.arrived:
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                    if not failing:
                        receiver.bodies.append(body)
                    receiver.arrived.notify_all()
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            return list(self.bodies)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class BlockingReceiver:
    """A webhook receiver that holds every request until released, or answers 500."""

    def __init__(self, status=204):
        self.release, self.count, self.status = threading.Event(), 0, status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.count += 1
                outer.release.wait(10)
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


SERVING = ["one process", "2 workers"]


@contextlib.contextmanager
def running_mock(config, serving: str, threads: int = 8):
    """A real server of either kind on a free port, with ``.url`` and the one ``.backend``."""
    from mockserver.server import start
    from mockserver.workers import start_workers

    running = start(config, threads=threads) if serving == "one process" else \
        start_workers(config, workers=2, threads=threads)
    try:
        yield running
    finally:
        running.close()
