"""Fixtures of the client suite: a fake clock (no real sleeping), clients wired to it, and a real
mock server on a free port for the property-based tests."""

from __future__ import annotations

import pytest

from client import ImagePipelineClient

class FakeClock:
    """monotonic() and sleep() on a virtual timeline; every sleep is recorded, none is real."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def clock_factory():
    """The FakeClock class, for code that needs several clocks (tests never import conftest:
    with several conftest.py files in the run, ``import conftest`` may find another one)."""
    return FakeClock


@pytest.fixture
def make_client(clock: FakeClock):
    """A factory of clients on the fake clock with no jitter (random() == 0: full delays)."""
    made: list[ImagePipelineClient] = []

    def factory(**kwargs) -> ImagePipelineClient:
        kwargs.setdefault("api_key", "test-key")
        kwargs.setdefault("base_url", "https://api.test")
        kwargs.setdefault("sleep", clock.sleep)
        kwargs.setdefault("clock", clock.monotonic)
        kwargs.setdefault("random", lambda: 0.0)
        c = ImagePipelineClient(**kwargs)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


@pytest.fixture
def api(make_client) -> ImagePipelineClient:
    return make_client()


@pytest.fixture
def rsps():
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- a real mock on a free port -------------------------------------------------------------------

class MockControl:
    """The mock's control plane over HTTP (``/__mock__/``), as any user of the mock would call it."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.http = requests.Session()

    def call(self, method: str, path: str, expect: int | tuple[int, ...] | None = 200, **kwargs):
        resp = self.http.request(method, f"{self.url}/__mock__{path}", timeout=30, **kwargs)
        if expect is not None:
            ok = (expect,) if isinstance(expect, int) else expect
            assert resp.status_code in ok, (method, path, resp.status_code, resp.text[:500])
        return resp

    def reset(self) -> None:
        self.call("POST", "/reset")

    def configure(self, **changes) -> dict:
        return self.call("PATCH", "/config", json=changes).json()

    def fault(self, **rule) -> dict:
        return self.call("POST", "/faults", expect=201, json=rule).json()

    def faults(self) -> list[dict]:
        return self.call("GET", "/faults").json()["faults"]

    def jobs(self, **params) -> list[dict]:
        return self.call("GET", "/jobs", params={"limit": 10000, **params}).json()["jobs"]

    def job(self, job_id: str) -> dict:
        return self.call("GET", "/jobs/" + job_id).json()

    def journal(self) -> list[dict]:
        return self.call("GET", "/journal").json()["requests"]

    def complete(self, job_id: str):
        return self.call("POST", f"/jobs/{job_id}/complete", expect=None)

    def fail(self, job_id: str, error: str):
        return self.call("POST", f"/jobs/{job_id}/fail", expect=None, json={"error": error})

    def advance(self, seconds: float) -> None:
        self.call("POST", "/clock/advance", json={"seconds": seconds})

    def posts(self) -> int:
        """How many submit POSTs reached the mock (the journal is cleared by reset)."""
        return sum(1 for e in self.journal() if e["method"] == "POST" and e["path"] == "/sd3_5/v1")


class RunningMock:
    def __init__(self, url: str) -> None:
        self.url = url
        self.control = MockControl(url)
        self._clients: list[ImagePipelineClient] = []

    def client(self, clock: FakeClock | None = None, **kwargs) -> ImagePipelineClient:
        """A client of this mock on a virtual clock: backoff and polling never sleep for real."""
        clock = clock or FakeClock()
        kwargs.setdefault("api_key", "test-key")
        kwargs.setdefault("sleep", clock.sleep)
        kwargs.setdefault("clock", clock.monotonic)
        kwargs.setdefault("random", lambda: 0.5)
        made = ImagePipelineClient(base_url=self.url, **kwargs)
        self._clients.append(made)
        return made

    def close_clients(self) -> None:
        """Close every keep-alive connection, so the server can stop at once."""
        for made in self._clients:
            made.close()
        self._clients.clear()
        self.control.http.close()


def _start_mock():
    """Start the mock in this process on a free port; returns (url, stop)."""
    import threading

    from mockserver import MockConfig

    config = MockConfig(lifecycle="polls", pending_polls=1, seed=20240601, webhook_backoff=0.0)
    try:
        from mockserver.server import start
    except ImportError:  # the documented fallback: the app factory under waitress in a thread
        import waitress
        from mockserver import create_app

        server = waitress.create_server(create_app(config), host="127.0.0.1", port=0, threads=8)
        threading.Thread(target=server.run, daemon=True).start()
        return f"http://127.0.0.1:{server.effective_port}", server.close
    running = start(config, threads=8)
    return running.url, running.close


@pytest.fixture(scope="session")
def mock_server():
    """One real mock for the client suite (a session: starting waitress per test is waste)."""
    pytest.importorskip("mockserver")
    url, stop = _start_mock()
    mock = RunningMock(url)
    mock.control.call("GET", "/health")
    yield mock
    mock.close_clients()
    stop()


@pytest.fixture
def mock(mock_server):
    """The session's mock, reset: no jobs, no faults, no journal, the start-up config."""
    mock_server.control.reset()
    return mock_server
