"""pytest fixtures for apps that call the SD3.5 API: a real mock server on a free port.

Installed with the package (entry point ``sd35_mock``), like pytest-httpserver:

- ``sd35_mock_server``: session-scoped, one server for the whole run;
- ``sd35_mock``: function-scoped, the same server reset before each test;
- ``sd35_webhooks``: function-scoped, a webhook receiver on 127.0.0.1;
- ``sd35_inprocess``: function-scoped, no server at all: the twin answers ``requests`` and ``httpx`` calls to
  ``https://api.imagepipeline.io`` in this process (``mockserver.inprocess``, docs/inprocess.md), reset.

Both mock fixtures are a ``sd35_twin.mockserver.testing.MockControl``: ``.url`` and the control plane over HTTP.

    def test_my_app(sd35_mock, sd35_webhooks):
        sd35_mock.configure(lifecycle="polls", pending_polls=2)
        app = MyApp(base_url=sd35_mock.url, api_key="any")
        ...
        assert sd35_mock.jobs()[0]["status"] == "SUCCESS"

``--sd35-variants`` (every variant of ``profiles/variants.json``) or ``--sd35-variants=L15,L05`` (those
ledger rows' variants, or exact ids like ``L17:opaque=png``) runs every test that uses ``sd35_mock``
(directly or through another fixture), or requests ``sd35_variant``, once on the baseline and once per
variant, with ids like ``test_x[L15:submit=202]``; the terminal summary says which variants failed which
tests. The run's state is a ``VariantsState`` registered as the plugin ``sd35-variants-state``.
"""

from __future__ import annotations

import pytest

from .config import TEST_SETTINGS, MockConfig
from .server import start
from .testing import MockControl, WebhookReceiver
from .variants import Variant, load_variants

STATE_PLUGIN = "sd35-variants-state"
BASELINE = "baseline"

# The session mock's settings: jobs finish on their first status poll; seeded; webhooks retry at once.
SESSION_CONFIG = TEST_SETTINGS


@pytest.fixture(scope="session")
def sd35_mock_server():
    """One mock for the session, in this process: jobs finish on their first status poll; seeded."""
    running = start(MockConfig(**SESSION_CONFIG))
    control = MockControl(running.url)
    yield control
    control.close()
    running.close()


@pytest.fixture
def sd35_mock(sd35_mock_server: MockControl, sd35_variant: Variant | None) -> MockControl:
    """The session's mock, reset: no jobs, faults or records, the start-up configuration (with
    ``--sd35-variants``, the variant's profile overlay applied on top)."""
    sd35_mock_server.reset()
    if sd35_variant is not None:
        sd35_mock_server.configure(profile=sd35_variant.profile)
    return sd35_mock_server


@pytest.fixture(scope="session")
def sd35_inprocess_twin():
    """One in-process twin for the session (built once: an app and its backend), answering nothing until
    ``sd35_inprocess`` opens it for a test."""
    from .inprocess import DEFAULT_BASE_URL, InProcessTwin  # httpx and the app only when a test asks

    twin = InProcessTwin([DEFAULT_BASE_URL], MockConfig(**SESSION_CONFIG))
    yield twin
    twin.backend.close()
    twin.close()


@pytest.fixture
def sd35_inprocess(sd35_inprocess_twin, sd35_variant: Variant | None):
    """The session's in-process twin, reset and answering for this test: every ``requests``/``httpx`` call to
    ``https://api.imagepipeline.io`` (and its download URLs) in this process. A ``mock_sd35`` opened inside the
    test uses this same twin (the outermost context owns the state)."""
    from .inprocess import Sd35Mock

    with Sd35Mock(twin=sd35_inprocess_twin) as twin:
        twin.reset()
        if sd35_variant is not None:
            twin.configure(profile=sd35_variant.profile)
        yield twin


@pytest.fixture(scope="session")
def sd35_variant(request: pytest.FixtureRequest) -> Variant | None:
    """The variant this test runs under (``--sd35-variants``), or None: the baseline.

    A fixture of your own that wraps a mock can request it and apply ``variant.profile`` after its reset.
    Session-scoped, so a run is grouped by variant."""
    return getattr(request, "param", None)


@pytest.fixture
def sd35_webhooks():
    """A webhook receiver: pass ``sd35_webhooks.url`` as a job's ``webhook``; ``wait_for(n)`` its calls."""
    with WebhookReceiver() as receiver:
        yield receiver


# --- --sd35-variants: every test that uses the mock, once per variant ------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sd35-mock", "SD3.5 mock (sd35-twin)")
    group.addoption(
        "--sd35-variants", dest="sd35_variants", nargs="?", const="all", default=None, metavar="ROWS",
        help="run every test that uses sd35_mock once on the baseline and once per plausible variant of the "
             "mock's assumed behaviours (mockserver/profiles/variants.json); ROWS: ledger rows or variant ids, "
             "comma-separated (L15,L05 or L17:opaque=png), default all")


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.get_plugin(STATE_PLUGIN) is None:
        config.pluginmanager.register(VariantsState(config), STATE_PLUGIN)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.pluginmanager.get_plugin(STATE_PLUGIN)
    if state is not None:
        config.pluginmanager.unregister(state)


def select_variants(spec: str) -> list[Variant]:
    """The variants a ``--sd35-variants`` value names: "all", or rows and/or exact ids, comma-separated."""
    words = [w.strip() for w in spec.split(",") if w.strip()]
    if not words or words == ["all"]:
        return load_variants()
    ids = {w for w in words if ":" in w}
    rows = {w for w in words if ":" not in w} | {w.split(":", 1)[0] for w in ids}
    chosen = load_variants(rows)   # unknown rows: ValueError
    known = {v.id for v in chosen}
    unknown = sorted(ids - known)
    if unknown:
        raise ValueError(f"no variant(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [v for v in chosen if v.row in {w for w in words if ":" not in w} or v.id in ids]


class VariantsState:
    """The run's variants and, per variant, which tests passed and failed (the hooks are its methods)."""

    def __init__(self, config: pytest.Config) -> None:
        spec = config.getoption("sd35_variants", None)
        self.active = spec is not None
        try:
            self.variants: list[Variant] = select_variants(spec) if self.active else []
        except ValueError as exc:
            raise pytest.UsageError(f"--sd35-variants: {exc}") from None
        # variant id ("baseline" too) -> {"passed": [nodeid], "failed": [nodeid], "skipped": [nodeid]}
        self.results: dict[str, dict[str, list[str]]] = {}
        self._variant_of: dict[str, str] = {}   # nodeid -> variant id
        self._base_of: dict[str, str] = {}      # nodeid -> the same without the variant (to compare)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if not self.active or "sd35_variant" not in metafunc.fixturenames:
            return
        params = [None, *self.variants]
        ids = [BASELINE, *(v.id for v in self.variants)]
        metafunc.parametrize("sd35_variant", params, ids=ids, indirect=True)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if not self.active:
            return
        for item in items:
            callspec = getattr(item, "callspec", None)
            if callspec is not None and "sd35_variant" in callspec.params:
                variant = callspec.params["sd35_variant"]
                name = self._variant_of[item.nodeid] = BASELINE if variant is None else variant.id
                self._base_of[item.nodeid] = _without(item.nodeid, name)
        for name in (BASELINE, *(v.id for v in self.variants)):
            self.results.setdefault(name, {"passed": [], "failed": [], "skipped": []})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = self._variant_of.get(report.nodeid)
        if name is None:
            return
        outcomes = self.results[name]
        if report.failed:
            if report.nodeid not in outcomes["failed"]:
                outcomes["failed"].append(report.nodeid)
        elif report.when == "call" and report.passed:
            outcomes["passed"].append(report.nodeid)
        elif report.skipped and report.nodeid not in outcomes["skipped"]:
            outcomes["skipped"].append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.active:
            return
        tr = terminalreporter
        tr.write_sep("=", "sd35 variants")
        if not self._variant_of:
            tr.write_line("no test uses sd35_mock (or sd35_variant): nothing ran per variant")
            return
        width = max(len(name) for name in self.results)
        baseline_failed = {self._base_of[n] for n in self.results.get(BASELINE, {}).get("failed", [])}
        for name, outcomes in self.results.items():
            failed = outcomes["failed"]
            counts = f"{len(outcomes['passed'])} passed, {len(failed)} failed"
            if outcomes["skipped"]:
                counts += f", {len(outcomes['skipped'])} skipped"
            variant = next((v for v in self.variants if v.id == name), None)
            tr.write_line(f"{'FAILED' if failed else 'ok':6} {name:{width}}  {counts}"
                          + (f"  ({variant.evidence})" if variant is not None and failed else ""),
                          red=bool(failed), green=not failed)
            for nodeid in failed:
                also = "  (fails on the baseline too)" if name != BASELINE and self._base_of[nodeid] \
                    in baseline_failed else ""
                tr.write_line(f"         {nodeid}{also}")


def _without(nodeid: str, variant_id: str) -> str:
    """The node id with the variant's part of its parameter id left out."""
    for old, new in ((f"[{variant_id}]", ""), (f"-{variant_id}]", "]"), (f"[{variant_id}-", "["),
                     (f"-{variant_id}-", "-")):
        if old in nodeid:
            return nodeid.replace(old, new, 1)
    return nodeid
