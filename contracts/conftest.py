"""Fixtures of the contract suite itself: the shared jobs (created once per run, so a live run pays
for each only once) and a local webhook receiver for the mock-only webhook contracts."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .support import CHEAPEST, OPTIONS_BODY, JobTranscript, run_job

@pytest.fixture(scope="session")
def basic_job(contract_run) -> JobTranscript:
    """The cheapest valid request, walked to its end (shared by every ``billable(shared='basic')``)."""
    contract_run.budget.require(1, "the shared basic job")
    return run_job(contract_run, dict(CHEAPEST))


@pytest.fixture(scope="session")
def options_job(contract_run) -> JobTranscript:
    """A request with every optional field, walked to its end, its URLs read while still PENDING."""
    contract_run.budget.require(1, "the shared options job")
    return run_job(contract_run, dict(OPTIONS_BODY), early_downloads=True)


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1 that answers 500 to the first ``fail_first`` calls."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.fail_first = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    failing = len(receiver.calls) < receiver.fail_first
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        parsed = None
                    receiver.calls.append({"path": self.path, "headers": dict(self.headers), "raw": raw,
                                           "json": parsed, "answered": 500 if failing else 200})
                    receiver._cond.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.calls) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
