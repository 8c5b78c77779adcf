"""pytest fixtures for apps that call the SD3.5 API: a real mock server on a free port.

Installed with the package (entry point ``sd35_mock``), like pytest-httpserver:

- ``sd35_mock_server``: session-scoped, one server for the whole run;
- ``sd35_mock``: function-scoped, the same server reset before each test, with controls.

    def test_my_app(sd35_mock):
        sd35_mock.configure(lifecycle="polls", pending_polls=2)
        app = MyApp(base_url=sd35_mock.url, api_key="any")
        ...
        assert sd35_mock.jobs()[0]["status"] == "SUCCESS"
"""

from __future__ import annotations

import pytest

from .backend import MockBackend
from .config import MockConfig
from .server import start

# The session mock's settings: jobs finish on their first status poll; seeded; webhooks retry at once.
SESSION_CONFIG = dict(lifecycle="polls", pending_polls=1, seed=1234, webhook_backoff=0.0)


class MockHandle:
    """A running mock and its controls, called in-process (no HTTP round trip for control).
    ``running``: ``server.start()``'s or ``workers.start_workers()``'s result (a URL, a backend, close)."""

    def __init__(self, running):
        self.running = running
        self.url: str = running.url
        self.backend: MockBackend = running.backend

    def reset(self) -> None:
        self.backend.reset()

    def configure(self, **changes) -> MockConfig:
        return self.backend.update_config(changes)

    def advance(self, seconds: float) -> None:
        self.backend.advance_clock(seconds)

    def complete(self, job_id: str) -> dict:
        return self.backend.force(job_id, "SUCCESS")

    def fail(self, job_id: str, error: str = "Image generation failed (forced)") -> dict:
        return self.backend.force(job_id, "FAILURE", error)

    def fault(self, **rule) -> dict:
        return self.backend.faults.add(rule).as_dict()

    def jobs(self, batch_id: str | None = None, status: str | None = None) -> list[dict]:
        return self.backend.list_jobs(batch_id, status, limit=10_000)

    def journal(self) -> list[dict]:
        return self.backend.journal.entries()

    def webhooks(self, job_id: str | None = None, wait: bool = True) -> list[dict]:
        if wait:
            self.backend.webhooks.wait_idle()
        return self.backend.webhooks.records(job_id)


@pytest.fixture(scope="session")
def sd35_mock_server():
    """One mock for the session: jobs finish on their first status poll; seeded."""
    running = start(MockConfig(**SESSION_CONFIG))
    yield MockHandle(running)
    running.close()


@pytest.fixture
def sd35_mock(sd35_mock_server: MockHandle) -> MockHandle:
    sd35_mock_server.reset()
    return sd35_mock_server
