"""The pytest plugin of the contract suite (entry point ``sd35_contracts``): one suite, three targets.

    pytest contracts                                   # the embedded mock (default)
    pytest contracts --target http://127.0.0.1:8080    # any running server (sd35-mock, staging),
                                                       # left as found: its jobs kept, its configuration put back
    pytest contracts --target live                     # the live API, key from $IMAGEPIPELINE_API_KEY
    pytest --pyargs sd35_twin.contracts ...                      # the same from a project that installed the package

It is loaded in every pytest run of an environment where the package is installed, so it does
nothing heavy at import or configure time: no server starts and no request is sent unless a
contract test (one marked ``ledger``) runs or a ``contract*`` fixture is requested.

The run's state is a ``ContractsState`` registered with pytest as the plugin ``sd35-contracts-state``
(as junitxml registers its own), and its methods are the run's hooks. The target (``--target`` /
$CONTRACTS_TARGET) is resolved at configure time, so ``--target live`` without a key refuses before
anything is collected or sent; free contracts are ordered before billable ones; a contract that
needs a control plane the target lacks, or a job the live cap (``--live-max-jobs``) cannot pay for,
raises ``NoControlPlane`` or ``BudgetExhausted`` and is reported as skipped; every contract's outcome
is folded into its ledger rows, printed as a table and written as JSON with ``--contracts-report``.

A URL target may be someone else's mock too (the one the developer's app talks to): the suite never
resets it unless told to (``--reset-target``), skips the contracts that would reset it or move its
clock (``SharedTarget``), and puts back after each contract the configuration keys it changed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from .report import RunReport, TestOutcome, format_table, load_ledger
from .targets import (
    DEFAULT_MAX_JOBS, MOCK, MOCK_KEY, MOCK_OTHER_KEY, URL, BudgetExhausted, ContractSession, JobBudget,
    NoControlPlane, SharedTarget, Target, TargetError, control_token, probe_control, resolve_target,
)

STATE_PLUGIN = "sd35-contracts-state"

MARKERS = (
    "billable: creates a job on the target (costs money on live); billable(shared='name') uses a job "
    "created once per run, billable(jobs=N, priority=P) otherwise",
    "mock_only: needs the mock's control plane; skipped on live",
    "ledger(row_id, ...): the ledger row(s) this contract verifies",
)


# --- options ------------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sd35-contracts", "SD3.5 API contracts (sd35-twin)")
    group.addoption("--target", dest="contracts_target", default=None, metavar="mock|URL|live",
                    help="where the contracts run: 'mock' (embedded, default), a URL of a running server, "
                         "or 'live' (key from $IMAGEPIPELINE_API_KEY); also $CONTRACTS_TARGET")
    group.addoption("--live-base-url", dest="contracts_live_base_url", default=None, metavar="URL",
                    help="with --target live: the host to call instead of the provider's (staging, a stand-in)")
    group.addoption("--live-max-jobs", dest="contracts_live_max_jobs", type=int, default=None, metavar="N",
                    help="with --target live: create at most N jobs (default 6); later billable "
                         "contracts are skipped")
    group.addoption("--contracts-report", dest="contracts_report", default=None, metavar="PATH",
                    help="write the ledger report of this run as JSON")
    group.addoption("--record", dest="contracts_record", default=None, metavar="PATH",
                    help="append every contract HTTP exchange, API keys removed, to PATH (JSON lines)")
    group.addoption("--reset-target", dest="contracts_reset_target", action="store_true",
                    help="with --target URL: reset that server before each contract and at the end, as the "
                         "embedded mock is (drops every job on it); without it the suite keeps the target's "
                         "jobs and puts its configuration back")
    group.addoption("--ledger-rows", dest="contracts_rows", default=None, metavar="L01,L05,...",
                    help="run only the contracts of these ledger rows")
    group.addoption("--contracts-examples", dest="contracts_examples", type=int, default=None, metavar="N",
                    help="hypothesis examples per property contract (default: 100 on the mock, 50 on a "
                         "URL, 5 on live)")


# --- configure ----------------------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    config.pluginmanager.register(ContractsState(config), STATE_PLUGIN)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = _state(config)
    if state is not None:
        config.pluginmanager.unregister(state)


def refuse_a_shared_target_under_xdist(config: pytest.Config, target: Target) -> None:
    """pytest-xdist (``-n``) may run the contracts on the embedded mock only, one mock per worker.

    A URL or the live API is one server for all workers. Each contract configures a mock through
    its control plane, so the workers would undo each other's setup; and on live each worker would
    count jobs against its own ``--live-max-jobs`` and pay for its own shared jobs. A counter in a
    locked file shared by the workers could hold the number of jobs, but not which contracts the cap
    pays for (that comes from running free contracts first, then billable ones in priority order,
    which holds only within one process), nor one shared job per run. A live run is a handful of
    jobs: refusing ``-n`` keeps the cap exact, with no file to leak and no lock to get wrong.
    """
    distributed = config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))
    if distributed and target.kind != MOCK:
        raise pytest.UsageError(
            f"--target {target.spec} cannot run under pytest-xdist (-n/--dist): every worker would use that "
            f"one server, undoing each other's mock configuration and, on live, each counting jobs against its own "
            f"--live-max-jobs. Run it without -n; -n is fine with the embedded mock (--target mock).")


def _state(config: pytest.Config) -> "ContractsState":
    return config.pluginmanager.get_plugin(STATE_PLUGIN)


def ledger_rows(item: pytest.Item) -> tuple[str, ...]:
    rows: list[str] = []
    for mark in item.iter_markers("ledger"):
        for arg in mark.args:
            for row in (arg if isinstance(arg, (list, tuple)) else [arg]):
                if str(row) not in rows:
                    rows.append(str(row))
    return tuple(rows)


def is_contract(item: pytest.Item) -> bool:
    return item.get_closest_marker("ledger") is not None


# --- the run's state and hooks ------------------------------------------------------------------

class ContractsState:
    """What the plugin knows about one run (one per pytest config); its methods are the run's hooks."""

    def __init__(self, config: pytest.Config):
        self.config = config
        opt = config.option
        try:
            self.target = resolve_target(opt.contracts_target, live_base_url=opt.contracts_live_base_url,
                                         reset=opt.contracts_reset_target)
        except TargetError as exc:
            raise pytest.UsageError(str(exc)) from None
        refuse_a_shared_target_under_xdist(config, self.target)
        cap = opt.contracts_live_max_jobs
        if cap is not None and cap < 0:
            raise pytest.UsageError("--live-max-jobs must be 0 or more")
        if cap is not None and not self.target.is_live:
            raise pytest.UsageError("--live-max-jobs only applies to --target live")
        self.budget = JobBudget((DEFAULT_MAX_JOBS if cap is None else cap) if self.target.is_live else None)
        self.examples = opt.contracts_examples
        if self.examples is not None and self.examples < 1:
            raise pytest.UsageError("--contracts-examples must be 1 or more")
        rows = opt.contracts_rows
        self.only_rows = {r.strip().upper() for r in rows.split(",") if r.strip()} if rows else None
        self.is_worker = hasattr(config, "workerinput")   # an xdist worker: its controller reports
        self.outcomes: dict[str, TestOutcome] = {}
        self.observed: dict[str, list] = {}     # nodeid -> what its contract observed, in this process
        self.started_at = time.time()
        self.recorder = None
        if opt.contracts_record:
            from .recording import Recorder

            self.recorder = Recorder(opt.contracts_record, secrets=[self.target.api_key, self.target.other_key])
        self.run: ContractRun | None = None
        self.current_test: str | None = None
        self._probed = self.target.kind != URL
        self._ledger: list[dict] | None = None
        self._report: RunReport | None = None

    @property
    def ledger(self) -> list[dict]:
        if self._ledger is None:
            self._ledger = load_ledger()
        return self._ledger

    def ensure_probed(self) -> None:
        """For a URL target: find out once whether it has the mock's control plane."""
        if self._probed:
            return
        self._probed = True
        try:
            has, why = probe_control(self.target.base_url)
        except TargetError as exc:
            pytest.exit(f"sd35 contracts: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        self.target.has_control, self.target.control_reason = has, why
        if has and not self.target.other_key:
            self.target.other_key = MOCK_OTHER_KEY

    def build_report(self) -> RunReport:
        if self._report is None:
            self._report = RunReport(
                target=self.target.describe(), ledger=self.ledger, tests=list(self.outcomes.values()),
                started_at=self.started_at, duration_s=time.time() - self.started_at,
                live_jobs=self.budget.as_dict() if self.budget.limited else None,
            )
        return self._report

    # -- collection: check, select, order --------------------------------------------------------

    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        contract_items = [i for i in items if is_contract(i)]
        if not contract_items:
            return
        known = {row["id"] for row in self.ledger}
        for item in contract_items:
            rows = ledger_rows(item)
            unknown = [r for r in rows if r not in known]
            if not rows or unknown:
                raise pytest.UsageError(f"{item.nodeid}: ledger marker names unknown row(s) {unknown or '(none)'}; "
                                        f"known rows are in contracts/ledger.json")
        if self.only_rows is not None:
            unknown = sorted(self.only_rows - known)
            if unknown:
                raise pytest.UsageError(f"--ledger-rows names unknown row(s): {', '.join(unknown)}")
            keep, drop = [], []
            for item in items:
                if is_contract(item) and not set(ledger_rows(item)) & self.only_rows:
                    drop.append(item)
                else:
                    keep.append(item)
            if drop:
                config.hook.pytest_deselected(items=drop)
                items[:] = keep

        def order(item: pytest.Item) -> tuple:
            if not is_contract(item):
                return (0, 0)
            mark = item.get_closest_marker("billable")
            if mark is None:
                return (0, 0)   # free contracts (rejected requests only) run first
            return (1, mark.kwargs.get("priority", 50))

        items.sort(key=order)   # stable: the order within each group is kept
        for item in items:
            if is_contract(item):
                self.outcomes[item.nodeid] = TestOutcome(item.nodeid, ledger_rows(item))

    # -- per test --------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Before any fixture: name the test for the recording; refuse a mock-only contract on a
        target without a control plane, and a billable one the live cap cannot pay for."""
        self.current_test = item.nodeid
        if self.run is not None:
            self.run.session.current_test = item.nodeid
        if not is_contract(item):
            return
        if item.get_closest_marker("mock_only") is not None:
            self.ensure_probed()
            if not self.target.has_control:
                raise NoControlPlane(self.target.control_reason)
        billable = item.get_closest_marker("billable")
        if billable is not None and not billable.kwargs.get("shared"):
            self.budget.require(int(billable.kwargs.get("jobs", 1)), item.name)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
        """The one place where a test that cannot run on this target becomes a skip: ``NoControlPlane``,
        ``BudgetExhausted`` or ``SharedTarget``, from this plugin's setup, a fixture, the test, the HTTP
        session or the control plane.
        A contract's report also carries its rows and observations, so that an xdist controller,
        which runs no test itself, can fold it into the ledger."""
        report = yield
        if call.excinfo is not None and call.excinfo.errisinstance((NoControlPlane, BudgetExhausted, SharedTarget)):
            path, line = item.location[:2]
            report.outcome, report.longrepr = "skipped", (path, line + 1, f"Skipped: {call.excinfo.value}")
        if is_contract(item):
            report.contract_rows = ledger_rows(item)
            report.contract_observed = list(self.observed.get(item.nodeid, ()))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = getattr(report, "contract_rows", None)
        if rows is None:
            return
        outcome = self.outcomes.setdefault(report.nodeid, TestOutcome(report.nodeid, tuple(rows)))
        outcome.observed = list(report.contract_observed)
        if report.skipped:
            text = _skip_reason(report)
        elif report.failed:
            text = _failure_message(report)
        else:
            text = ""
        outcome.merge_phase(report.when, report.outcome, text)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            outcome = self.outcomes.get(item.nodeid)
            if outcome is not None:
                outcome.outcome, outcome.reason = "deselected", "deselected"

    # -- the end: report and table ---------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.option.contracts_report
        if path and self.outcomes and not self.is_worker:
            self.build_report().write(path)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.outcomes or self.is_worker:
            return
        report = self.build_report().as_dict()
        width = getattr(terminalreporter, "_tw", None)
        width = getattr(width, "fullwidth", 120) if width is not None else 120
        terminalreporter.write_sep("=", "sd35 contract ledger")
        for line in format_table(report, width=max(80, width)).splitlines():
            terminalreporter.write_line(line)
        if self.config.option.contracts_report:
            terminalreporter.write_line(f"report written to {self.config.option.contracts_report}")
        if self.recorder is not None and self.recorder.count:   # under xdist, the workers record
            terminalreporter.write_line(f"{self.recorder.count} exchanges recorded to {self.recorder.path} "
                                        f"(API keys removed)")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
        return text[len("Skipped: "):] if text.startswith("Skipped: ") else text
    return str(longrepr or "skipped")


def _failure_message(report) -> str:
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return crash.message
    text = str(report.longrepr or "failed").strip().splitlines()
    return text[-1] if text else "failed"


# --- fixtures -----------------------------------------------------------------------------------

class ContractRun:
    """Session-wide: the target (with the embedded mock started if needed), the HTTP session, the
    control plane, the job budget and the hypothesis settings."""

    def __init__(self, state: ContractsState):
        from .support import target_settings

        self.state = state
        self.target = state.target
        self.budget = state.budget
        self.settings = target_settings(self.target.kind, state.examples)
        self._server = None
        self._control = None
        if self.target.kind == MOCK:
            self._server = start_embedded_mock()
            self.target.base_url = self._server.url
        state.ensure_probed()
        self.session = ContractSession(self.target, self.budget, state.recorder)

    @property
    def control(self):
        """The mock's control plane (``contracts.control.ContractControl``). ``NoControlPlane`` on live
        or on a URL that is not a mock, so no contract can ever reach a control plane there."""
        if self.target.is_live or not self.target.has_control:
            raise NoControlPlane(self.target.control_reason)
        if self._control is None:
            from .control import ContractControl

            self._control = ContractControl(self.target.base_url, owned=self.target.owned, token=control_token())
        return self._control

    def client(self, api_key: str | None = None, *, no_key: bool = False):
        """A client of the target through the run's session; ``no_key`` sends no API-Key at all."""
        from sd35_twin.client import Backoff, ImagePipelineClient, RetryPolicy

        live = self.target.is_live
        key = "" if no_key else (self.target.api_key if api_key is None else api_key)
        return ImagePipelineClient(
            api_key=key, base_url=self.target.base_url, session=self.session,
            timeout=(10.0, 120.0) if live else (5.0, 30.0),
            # a submit is repeated only when the job surely does not exist (429/503, never connected)
            retry=RetryPolicy(status_attempts=3, submit_attempts=3,
                              backoff=Backoff(initial=0.5 if live else 0.02, maximum=4.0 if live else 0.2)),
            poll=Backoff(initial=1.0, factor=1.5, maximum=10.0, jitter=0.3) if live
            else Backoff(initial=0.01, factor=1.5, maximum=0.25, jitter=0.0),
            wait_timeout=600.0 if live else 30.0,
            validate=False,   # the contracts test the server's checks, not the client's
        )

    def reset(self) -> None:
        """A fresh start for the next contract, on a target the suite owns (elsewhere, nothing)."""
        if self.target.has_control and self.target.owned:
            self.control.reset()

    def restore(self) -> None:
        """On a target the suite does not own: put back the configuration the contracts changed."""
        if self._control is not None and not self.target.owned:
            self._control.restore()

    def close(self) -> None:
        """Leave a URL target as found (or, with ``--reset-target``, as it started), then disconnect."""
        from sd35_twin.mockserver.testing import close_session

        try:
            if self._control is not None and self.target.kind == URL:
                self.reset()
                self.restore()
        finally:
            close_session(self.session)
            if self._control is not None:
                self._control.close()
            if self._server is not None:
                self._server.close()


def start_embedded_mock():
    """The embedded mock: a real waitress server in this process, on a free loopback port."""
    from sd35_twin.mockserver.config import MockConfig
    from sd35_twin.mockserver.server import start

    return start(MockConfig(lifecycle="polls", pending_polls=1, seed=35, api_keys=(MOCK_KEY, MOCK_OTHER_KEY),
                            webhook_backoff=0.05, webhook_timeout=2.0))


class ContractContext:
    """Per test: the run's target, client, raw HTTP, control plane, hypothesis settings, and ``observe``."""

    def __init__(self, run: ContractRun, node: pytest.Item):
        self.run = run
        self.node = node
        self.target = run.target
        self.http = run.session
        self.settings = run.settings   # @contract.settings on a property contract's @given function
        self._client = None

    @property
    def control(self):
        return self.run.control

    @property
    def client(self):
        if self._client is None:
            self._client = self.run.client()
        return self._client

    def client_for(self, api_key: str | None = None, *, no_key: bool = False):
        return self.run.client(api_key, no_key=no_key)

    def observe(self, row: str, value: Any = None, *, profile: dict | None = None, **fields: Any) -> None:
        """Keep what the target answered for ``row`` (shown in the report and the drift), with an
        optional ``profile`` override of the mock that would make it behave like that."""
        entry: dict[str, Any] = {"row": row}
        if value is not None:
            entry["value"] = value
        entry.update(fields)
        if profile:
            entry["profile"] = profile
        bucket = self.run.state.observed.setdefault(self.node.nodeid, [])
        bucket.append(json.loads(json.dumps(entry, default=str)))   # plain JSON: it may travel from an xdist worker
        del bucket[:-20]

    def last(self, method: str | None = None, path_suffix: str | None = None):
        return self.http.last(method, path_suffix)

    def url(self, path: str) -> str:
        return self.target.base_url + path

    def post_raw(self, body: bytes | str, *, api_key: str | None = None, no_key: bool = False,
                 content_type: str | None = "application/json"):
        """A deliberately malformed submit, sent as is (still under the live job cap); ``content_type=None``
        sends no Content-Type at all."""
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if not no_key:
            headers["API-Key"] = self.target.api_key if api_key is None else api_key
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.http.post(self.url("/sd3_5/v1"), data=data, headers=headers, timeout=60,
                              allow_redirects=False)


@pytest.fixture(scope="session")
def contract_run(request: pytest.FixtureRequest):
    """The session's contract target; starts the embedded mock when the target is ``mock``."""
    state = _state(request.config)
    run = ContractRun(state)
    state.run = run
    run.session.current_test = state.current_test
    try:
        yield run
    finally:
        state.run = None
        run.close()


@pytest.fixture
def contract(contract_run: ContractRun, request: pytest.FixtureRequest):
    """One contract test's view of the target: one the suite owns is reset first; on any other, the
    configuration the contract changed is put back after it (its jobs stay, other users' too)."""
    contract_run.session.exchanges.clear()
    contract_run.reset()
    yield ContractContext(contract_run, request.node)
    contract_run.restore()
