"""Fixtures of the client suite: a fake clock (no real sleeping), clients wired to it, and a real
mock server on a free port, driven through ``mockserver.testing.MockControl`` (or its twin in-process,
``twin_mock_server``, for the tests that are not about HTTP itself).

The real mock honours ``--sd35-variants`` (the plugin's ``sd35_variant``): ``pytest tests/client
--sd35-variants`` runs every test of the real mock once per plausible variant of its assumptions."""

from __future__ import annotations

import pytest

from sd35_twin.client import ImagePipelineClient
from sd35_twin.mockserver import MockConfig
from sd35_twin.mockserver.server import start
from sd35_twin.mockserver.testing import MockControl


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

MOCK_SETTINGS = dict(lifecycle="polls", pending_polls=1, seed=20240601, webhook_backoff=0.0)


class RunningMock:
    """The session's mock: its URL, its control plane, and clients of it on virtual clocks."""

    def __init__(self, url: str, variant=None, control: MockControl | None = None) -> None:
        self.url = url
        self.control = control or MockControl(url)
        self.variant = variant   # a mockserver.variants.Variant, or None (the baseline)
        self._clients: list[ImagePipelineClient] = []

    def reset(self) -> None:
        """No jobs, faults or journal; the start-up config, with the run's variant over it."""
        self.control.reset()
        if self.variant is not None:
            self.control.configure(profile=self.variant.profile)

    def profile(self) -> dict:
        """The profile in effect (the variant's overlay included)."""
        return self.control.config()["profile"]

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

    def posts(self) -> int:
        """How many submit POSTs reached the mock (the journal is cleared by reset)."""
        return sum(1 for e in self.control.journal() if e["method"] == "POST" and e["path"] == "/sd3_5/v1")

    def close_clients(self) -> None:
        """Close every keep-alive connection, so the server can stop at once."""
        for made in self._clients:
            made.close()
        self._clients.clear()
        self.control.close()


@pytest.fixture(scope="session")
def mock_server(sd35_variant):
    """One real mock for the client suite (a session: starting waitress per test is waste); one per
    variant with ``--sd35-variants``. Tests that use it directly call ``reset()`` themselves."""
    running = start(MockConfig(**MOCK_SETTINGS))
    mock = RunningMock(running.url, sd35_variant)
    assert mock.control.health()
    mock.reset()
    yield mock
    mock.close_clients()
    running.close()


@pytest.fixture(scope="module")
def twin_mock_server(sd35_variant):
    """``mock_server``'s twin in this process (``sd35_twin.mockserver.inprocess``): the same app and settings,
    answering ``https://api.imagepipeline.io`` with no socket and no server thread, for a module's tests."""
    from sd35_twin.mockserver.inprocess import Sd35Mock

    with Sd35Mock(config=MockConfig(**MOCK_SETTINGS)) as twin:
        mock = RunningMock(twin.url, sd35_variant, control=twin)
        mock.reset()
        yield mock
        mock.close_clients()


@pytest.fixture
def mock(mock_server):
    """The session's mock, reset: no jobs, no faults, no journal, the start-up config (and variant)."""
    mock_server.reset()
    return mock_server
