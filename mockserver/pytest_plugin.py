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
tests. A variant's test that passed without meeting the variant's ledger row is "not exercised" (it never saw
the behaviour the variant replaces).

``--sd35-coverage`` runs the suite once on the defaults and ends with a table: each assumed ledger row, how many
tests met it and up to three of them, and the rows no test met, each with the risk that leaves;
``--sd35-coverage-report FILE`` writes it as JSON. A test's rows are read from the mocks its fixtures hand it:
a ``MockControl`` (``sd35_mock``, ``sd35_mock_server``), or an object whose ``control`` is one.

The run's state is a ``VariantsState`` registered as the plugin ``sd35-variants-state``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .config import TEST_SETTINGS, MockConfig
from .server import start
from .testing import MockControl, WebhookReceiver
from .variants import Variant, load_variants, row_notes

STATE_PLUGIN = "sd35-variants-state"
LINE_CHARS = 160  # a --sd35-coverage line names its tests up to this width (the JSON report has them whole)
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
    group.addoption(
        "--sd35-coverage", dest="sd35_coverage", action="store_true", default=False,
        help="end with a table of the mock's assumed ledger rows: how many tests met each, and the rows no test "
             "met with the risk that leaves (tests run once, on the defaults)")
    group.addoption(
        "--sd35-coverage-report", dest="sd35_coverage_report", default=None, metavar="FILE",
        help="write the --sd35-coverage table as JSON to FILE (implies --sd35-coverage)")


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
        # variant id ("baseline" too) -> {"passed", "not_exercised", "failed", "skipped": [nodeid]}
        self.results: dict[str, dict[str, list[str]]] = {
            name: {"passed": [], "not_exercised": [], "failed": [], "skipped": []}
            for name in ((BASELINE, *(v.id for v in self.variants)) if self.active else ())}
        self._variant_of: dict[str, str] = {}   # nodeid -> variant id (from collection, or the reports under xdist)
        self._base_of: dict[str, str] = {}      # nodeid -> the same without the variant (to compare)
        self.report_file = config.getoption("sd35_coverage_report", None)
        self.coverage = bool(config.getoption("sd35_coverage", False) or self.report_file)
        self.is_worker = hasattr(config, "workerinput")  # pytest-xdist: the controller reports
        self.met_by: dict[str, list[str]] = {}  # row -> baseline tests that met it
        self.tests_with_mock = 0                # baseline tests whose rows were read
        self._seen: dict[str, tuple[int, dict[str, int]]] = {}  # mock URL -> (resets, row counts) after a test

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

    # -- which rows a test met: read from its mocks once its call is over ------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        if not (self.active or self.coverage):
            return
        report = outcome.get_result()
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        variant = params.get("sd35_variant")
        if self.active and "sd35_variant" in params:  # for pytest-xdist's controller, which never collects
            report.sd35_variant = BASELINE if variant is None else variant.id
        if call.when != "call":
            return
        rows = self._rows_met(item)
        if rows is None:
            return
        report.sd35_rows = sorted(rows)
        if variant is not None and report.passed and variant.row not in rows:
            report.sd35_not_exercised = True

    def _rows_met(self, item: pytest.Item) -> set[str] | None:
        """The rows the test's mocks met during it: what each mock met since its last reset if it was reset
        since the previous test read it (or was never read), else what was added since; None without a mock."""
        controls = {c.url: c for c in map(_control_of, item.funcargs.values()) if c is not None}
        if not controls:
            return None
        rows: set[str] = set()
        for url, control in controls.items():
            try:
                coverage = control.coverage()
            except Exception:  # noqa: BLE001 - a mock without coverage (or gone) tells nothing; the test stands
                continue
            counts = {m["row"]: m["count"] for m in coverage["met"]}
            resets, before = self._seen.get(url, (None, {}))
            if resets != coverage["resets"]:
                before = {}
            rows |= {row for row, n in counts.items() if n > before.get(row, 0)}
            self._seen[url] = (coverage["resets"], counts)
        return rows

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        if report.when == "call" and getattr(report, "sd35_not_exercised", False):
            return "not exercised", "n", ("NOT EXERCISED", {"yellow": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = self._variant_of.get(report.nodeid)
        if name is None and getattr(report, "sd35_variant", None) in self.results:  # pytest-xdist's controller
            name = self._variant_of[report.nodeid] = report.sd35_variant
            self._base_of[report.nodeid] = _without(report.nodeid, name)
        if report.when == "call" and getattr(report, "sd35_rows", None) is not None and name in (None, BASELINE):
            self.tests_with_mock += 1
            for row in report.sd35_rows:
                self.met_by.setdefault(row, []).append(report.nodeid)
        if name is None:
            return
        outcomes = self.results[name]
        if report.failed:
            if report.nodeid not in outcomes["failed"]:
                outcomes["failed"].append(report.nodeid)
        elif report.when == "call" and report.passed:
            outcomes["not_exercised" if getattr(report, "sd35_not_exercised", False) else "passed"].append(
                report.nodeid)
        elif report.skipped and report.nodeid not in outcomes["skipped"]:
            outcomes["skipped"].append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.coverage and not self.is_worker:
            self._coverage_summary(terminalreporter)
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
            if outcomes["not_exercised"]:
                counts += f", {len(outcomes['not_exercised'])} not exercised"
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

            if outcomes["not_exercised"] and name != BASELINE and variant is not None:
                tr.write_line(f"         not exercised: {len(outcomes['not_exercised'])} test(s) passed without meeting "
                              f"{variant.row}; to meet it: {row_notes()[variant.row]['meet']}", yellow=True)

    # -- --sd35-coverage -----------------------------------------------------------------------------------------

    def coverage_table(self) -> dict:
        """The --sd35-coverage report: per guessed row, the baseline tests that met it (up to three named), and
        the rows none met with the risk that leaves."""
        notes = row_notes()
        return {
            "tests_using_the_mock": self.tests_with_mock,
            "met": [{"row": row, "tests": len(self.met_by[row]), "examples": self.met_by[row][:3]}
                    for row in notes if row in self.met_by],
            "never_met": [{"row": row, "risk": notes[row]["risk"], "would_meet": notes[row]["meet"]}
                          for row in notes if row not in self.met_by],
        }

    def _coverage_summary(self, tr) -> None:
        table = self.coverage_table()
        tr.write_sep("=", "sd35 coverage: which of the twin's guesses your tests met")
        if not table["tests_using_the_mock"]:
            tr.write_line("no test handed the plugin a mock (sd35_mock, sd35_mock_server, or a fixture whose "
                          "'control' is a MockControl): nothing to tell")
        else:
            tr.write_line(f"{table['tests_using_the_mock']} test(s) used the mock")
            tr.write_line(f"{'row':5} {'tests':>5}  up to three of them")
            for entry in table["met"]:
                examples = ", ".join(nodeid.rsplit("/", 1)[-1] for nodeid in entry["examples"])
                line = f"{entry['row']:5} {entry['tests']:>5}  {examples}"
                tr.write_line(line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + "…")
            if table["never_met"]:
                tr.write_line(f"never met ({len(table['never_met'])}): a guess your app may lean on, untested")
                for entry in table["never_met"]:
                    tr.write_line(f"{entry['row']:5}        {entry['risk']}", yellow=True)
        if self.report_file:
            Path(self.report_file).write_text(json.dumps(table, indent=2) + "\n", "utf-8")
            tr.write_line(f"coverage report written to {self.report_file}")


def _control_of(value: object) -> MockControl | None:
    """A fixture's value as a mock's control plane: a MockControl, or an object whose ``control`` is one."""
    if isinstance(value, MockControl):
        return value
    try:  # any fixture value: its attribute lookup may raise anything
        control = getattr(value, "control", None) if not isinstance(value, type) else None
    except Exception:  # noqa: BLE001
        return None
    return control if isinstance(control, MockControl) else None


def _without(nodeid: str, variant_id: str) -> str:
    """The node id with the variant's part of its parameter id left out."""
    for old, new in ((f"[{variant_id}]", ""), (f"-{variant_id}]", "]"), (f"[{variant_id}-", "["),
                     (f"-{variant_id}-", "-")):
        if old in nodeid:
            return nodeid.replace(old, new, 1)
    return nodeid
