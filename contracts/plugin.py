"""The pytest plugin of the contract suite (entry point ``sd35_contracts``): one suite, three targets.

    pytest contracts                                   # the embedded mock (default)
    pytest contracts --target http://127.0.0.1:8080    # any running server (python -m mockserver, staging)
    pytest contracts --target live                     # the live API, key from $IMAGEPIPELINE_API_KEY
    pytest --pyargs contracts ...                      # the same from a project that installed the package

It is loaded in every pytest run of an environment where the package is installed, so it does
nothing heavy at import or configure time: no server starts and no request is sent unless a
contract test (one marked ``ledger``) runs or a ``contract*`` fixture is requested.

Hooks: options and markers; the target (``--target`` / $CONTRACTS_TARGET) is resolved at configure
time, so ``--target live`` without a key refuses before anything is collected or sent; free
contracts are ordered before billable ones; mock-only contracts are skipped on targets without a
control plane; billable ones are skipped once the live job cap (``--live-max-jobs``) is spent; every
contract's outcome is folded into its ledger rows, printed as a table and written as JSON with
``--contracts-report PATH``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

STATE_KEY = pytest.StashKey["ContractsState"]()
_ACTIVE: "ContractsState | None" = None   # for the hypothesis settings chosen at import of a test module

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
    group.addoption("--ledger-rows", dest="contracts_rows", default=None, metavar="L01,L05,...",
                    help="run only the contracts of these ledger rows")
    group.addoption("--contracts-examples", dest="contracts_examples", type=int, default=None, metavar="N",
                    help="hypothesis examples per property contract (default: 100 on the mock, 50 on a "
                         "URL, 5 on live)")


# --- state --------------------------------------------------------------------------------------

class ContractsState:
    """What the plugin knows about this run; one per pytest config."""

    def __init__(self, config: pytest.Config):
        from .targets import DEFAULT_MAX_JOBS, JobBudget, TargetError, resolve_target

        self.config = config
        opt = config.option
        try:
            self.target = resolve_target(opt.contracts_target, live_base_url=opt.contracts_live_base_url)
        except TargetError as exc:
            raise pytest.UsageError(str(exc)) from None
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
        self.outcomes: dict[str, Any] = {}      # nodeid -> report.TestOutcome
        self.observed: dict[str, list] = {}     # nodeid -> observations
        self.started_at = time.time()
        self.recorder = None
        self.run: "ContractRun | None" = None
        self.current_test: str | None = None
        self.previous: "ContractsState | None" = None
        self._probed = self.target.kind != "url"
        self._ledger: list[dict] | None = None
        self._report = None

    @property
    def ledger(self) -> list[dict]:
        if self._ledger is None:
            from .report import load_ledger

            self._ledger = load_ledger()
        return self._ledger

    def ensure_probed(self) -> None:
        """For a URL target: find out once whether it has the mock's control plane."""
        if self._probed:
            return
        from .targets import MOCK_OTHER_KEY, TargetError, probe_control

        self._probed = True
        try:
            has, why = probe_control(self.target.base_url)
        except TargetError as exc:
            pytest.exit(f"sd35 contracts: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        self.target.has_control, self.target.control_reason = has, why
        if has and not self.target.other_key:
            self.target.other_key = MOCK_OTHER_KEY

    def build_report(self):
        from .report import RunReport, TestOutcome

        if self._report is None:
            tests: list[TestOutcome] = []
            for nodeid, outcome in self.outcomes.items():
                outcome.observed = list(self.observed.get(nodeid, []))
                tests.append(outcome)
            self._report = RunReport(
                target=self.target.describe(), ledger=self.ledger, tests=tests, started_at=self.started_at,
                duration_s=time.time() - self.started_at,
                live_jobs=self.budget.as_dict() if self.budget.limited else None,
            )
        return self._report


def current_kind() -> str:
    """The kind of target of the running session (``mock`` when none is configured)."""
    return _ACTIVE.target.kind if _ACTIVE is not None else "mock"


def examples_override() -> int | None:
    return _ACTIVE.examples if _ACTIVE is not None else None


def pytest_configure(config: pytest.Config) -> None:
    global _ACTIVE
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    if not hasattr(config, "option") or not hasattr(config.option, "contracts_target"):
        return
    state = ContractsState(config)
    config.stash[STATE_KEY] = state
    state.previous = _ACTIVE   # a pytest run inside a pytest run (pytester) gets its own state
    _ACTIVE = state
    if config.option.contracts_record:
        from .recording import Recorder

        state.recorder = Recorder(config.option.contracts_record,
                                  secrets=[state.target.api_key, state.target.other_key])


def pytest_unconfigure(config: pytest.Config) -> None:
    global _ACTIVE
    state = config.stash.get(STATE_KEY, None)
    if state is not None and _ACTIVE is state:
        _ACTIVE = state.previous


def _state(config: pytest.Config) -> ContractsState | None:
    return config.stash.get(STATE_KEY, None)


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


# --- collection: check, select, order -----------------------------------------------------------

def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    from .report import TestOutcome

    state = _state(config)
    if state is None:
        return
    contract_items = [i for i in items if is_contract(i)]
    if not contract_items:
        return
    known = {row["id"] for row in state.ledger}
    for item in contract_items:
        rows = ledger_rows(item)
        unknown = [r for r in rows if r not in known]
        if not rows or unknown:
            raise pytest.UsageError(f"{item.nodeid}: ledger marker names unknown row(s) {unknown or '(none)'}; "
                                    f"known rows are in contracts/ledger.json")
    if state.only_rows is not None:
        unknown = sorted(state.only_rows - known)
        if unknown:
            raise pytest.UsageError(f"--ledger-rows names unknown row(s): {', '.join(unknown)}")
        keep, drop = [], []
        for item in items:
            if is_contract(item) and not set(ledger_rows(item)) & state.only_rows:
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
            state.outcomes[item.nodeid] = TestOutcome(item.nodeid, ledger_rows(item))


# --- per test: current test, mock-only, the cap -------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = _state(item.config)
    if state is None or not is_contract(item):
        return
    state.current_test = item.nodeid
    if state.run is not None:
        state.run.session.current_test = item.nodeid
    if item.get_closest_marker("mock_only") is not None:
        if state.target.is_live:
            pytest.skip(state.target.control_reason)
        state.ensure_probed()
        if not state.target.has_control:
            pytest.skip(state.target.control_reason)
    billable = item.get_closest_marker("billable")
    if billable is not None and state.budget.limited and not billable.kwargs.get("shared"):
        state.budget.require(int(billable.kwargs.get("jobs", 1)), item.name)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    state = _ACTIVE
    if state is None:
        return
    outcome = state.outcomes.get(report.nodeid)
    if outcome is None:
        return
    if report.skipped:
        text = _skip_reason(report)
    elif report.failed:
        text = _failure_message(report)
    else:
        text = ""
    outcome.merge_phase(report.when, report.outcome, text)


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


def pytest_deselected(items: list[pytest.Item]) -> None:
    state = _ACTIVE
    if state is None:
        return
    for item in items:
        outcome = state.outcomes.get(item.nodeid)
        if outcome is not None:
            outcome.outcome, outcome.reason = "deselected", "deselected"


# --- the end: report and table ------------------------------------------------------------------

def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None or not state.outcomes:
        return
    report = state.build_report()
    path = session.config.option.contracts_report
    if path:
        report.write(path)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    from .report import format_table

    state = _state(config)
    if state is None or not state.outcomes:
        return
    report = state.build_report().as_dict()
    width = getattr(terminalreporter, "_tw", None)
    width = getattr(width, "fullwidth", 120) if width is not None else 120
    terminalreporter.write_sep("=", "sd35 contract ledger")
    for line in format_table(report, width=max(80, width)).splitlines():
        terminalreporter.write_line(line)
    if config.option.contracts_report:
        terminalreporter.write_line(f"report written to {config.option.contracts_report}")
    if state.recorder is not None:
        terminalreporter.write_line(f"{state.recorder.count} exchanges recorded to {state.recorder.path} "
                                    f"(API keys removed)")


# --- fixtures -----------------------------------------------------------------------------------

class ContractRun:
    """Session-wide: the target (with the embedded mock started if needed), the HTTP session, the
    control plane and the job budget."""

    def __init__(self, state: ContractsState):
        from .targets import ContractSession, Control

        self.state = state
        self.target = state.target
        self.budget = state.budget
        self._server = None
        if self.target.kind == "mock":
            self._server = start_embedded_mock()
            self.target.base_url = self._server.url
        state.ensure_probed()
        self.session = ContractSession(self.target, self.budget, state.recorder)
        self.control = Control(self.target)

    def client(self, api_key: str | None = None, *, no_key: bool = False):
        """A client of the target through the run's session; ``no_key`` sends no API-Key at all."""
        from client import Backoff, ImagePipelineClient, RetryPolicy

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
        if self.target.has_control and not self.target.is_live:
            self.control.reset()

    def close(self) -> None:
        self.session.close()
        self.control.close()
        if self._server is not None:
            self._server.close()


def start_embedded_mock():
    """The embedded mock: a real waitress server in this process, on a free loopback port."""
    from mockserver.config import MockConfig
    from mockserver.server import start

    from .targets import MOCK_KEY, MOCK_OTHER_KEY

    return start(MockConfig(lifecycle="polls", pending_polls=1, seed=35, api_keys=(MOCK_KEY, MOCK_OTHER_KEY),
                            webhook_backoff=0.05, webhook_timeout=2.0))


class ContractContext:
    """Per test: the run's target, client, raw HTTP, control plane, and ``observe``."""

    def __init__(self, run: ContractRun, node: pytest.Item):
        self.run = run
        self.node = node
        self.target = run.target
        self.control = run.control
        self.http = run.session
        self.budget = run.budget
        self._client = None

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
        bucket.append(entry)
        del bucket[:-20]

    def last(self, method: str | None = None, path_suffix: str | None = None):
        return self.http.last(method, path_suffix)

    def url(self, path: str) -> str:
        return self.target.base_url + path

    def post_raw(self, body: bytes | str, *, api_key: str | None = None, no_key: bool = False,
                 content_type: str = "application/json"):
        """A deliberately malformed submit, sent as is (still under the live job cap)."""
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if not no_key:
            headers["API-Key"] = self.target.api_key if api_key is None else api_key
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.http.post(self.url("/sd3_5/v1"), data=data, headers=headers, timeout=60,
                              allow_redirects=False)


@pytest.fixture(scope="session")
def contract_run(request: pytest.FixtureRequest):
    """The session's contract target; starts the embedded mock when the target is ``mock``."""
    state = _state(request.config)
    if state is None:  # pragma: no cover - configure always runs first
        pytest.skip("sd35 contracts plugin is not configured")
    run = ContractRun(state)
    state.run = run
    run.session.current_test = state.current_test
    try:
        yield run
    finally:
        state.run = None
        run.close()


@pytest.fixture
def contract(contract_run: ContractRun, request: pytest.FixtureRequest) -> ContractContext:
    """One contract test's view of the target; a mock target is reset first."""
    contract_run.session.current_test = request.node.nodeid
    contract_run.session.exchanges.clear()
    contract_run.reset()
    return ContractContext(contract_run, request.node)
