"""pytest fixtures for apps that call the SD3.5 API: a real mock server on a free port.

Installed with the package (entry point ``sd35_mock``), like pytest-httpserver:

- ``sd35_mock_server``: session-scoped, one server for the whole run;
- ``sd35_mock``: function-scoped, the same server reset before each test;
- ``sd35_webhooks``: function-scoped, a webhook receiver on 127.0.0.1.

Both mock fixtures are a ``mockserver.testing.MockControl``: ``.url`` and the control plane over HTTP.

    def test_my_app(sd35_mock, sd35_webhooks):
        sd35_mock.configure(lifecycle="polls", pending_polls=2)
        app = MyApp(base_url=sd35_mock.url, api_key="any")
        ...
        assert sd35_mock.jobs()[0]["status"] == "SUCCESS"
"""

from __future__ import annotations

import pytest

from .config import MockConfig
from .server import start
from .testing import MockControl, WebhookReceiver

# The session mock's settings: jobs finish on their first status poll; seeded; webhooks retry at once.
SESSION_CONFIG = dict(lifecycle="polls", pending_polls=1, seed=1234, webhook_backoff=0.0)


@pytest.fixture(scope="session")
def sd35_mock_server():
    """One mock for the session, in this process: jobs finish on their first status poll; seeded."""
    running = start(MockConfig(**SESSION_CONFIG))
    control = MockControl(running.url)
    yield control
    control.close()
    running.close()


@pytest.fixture
def sd35_mock(sd35_mock_server: MockControl) -> MockControl:
    """The session's mock, reset: no jobs, faults or records, the start-up configuration."""
    sd35_mock_server.reset()
    return sd35_mock_server


@pytest.fixture
def sd35_webhooks():
    """A webhook receiver: pass ``sd35_webhooks.url`` as a job's ``webhook``; ``wait_for(n)`` its calls."""
    with WebhookReceiver() as receiver:
        yield receiver
