"""``sd35-mock matrix -- COMMAND [ARGS...]``: run any program once against the default mock (the baseline)
and once per plausible variant of the assumed behaviours (``profiles/variants.json``), each time against a
fresh mock, and tell which variants it does not survive.

The command is a plain subprocess, so the app may be written in any language. It finds the mock through
``$SD35_MOCK_URL`` (also ``$IMAGEPIPELINE_BASE_URL``, so this project's client never reaches the live API
from a matrix run) or ``{url}`` in its arguments; ``$SD35_MOCK_VARIANT`` is the variant's id (``baseline``
for the baseline). A run passes when the command exits 0 within ``--timeout``.

Every app meets PENDING, whatever its polling interval: each mock keeps a job PENDING for its first read (a
status read or a download) and until ``--pending-seconds`` have passed (lifecycle ``polls_and_seconds``), so a
variant about a PENDING answer (L15's 202) reaches an app that polls every second as well as one that polls
every 10 ms. A job with a webhook finishes by the clock alone, since its app may never read it.

A failed run is explained by the lines that say why (``explain``): TAP's ``not ok`` lines with their
diagnostics, pytest's short test summary, then the last ``--tail`` lines.

A variant's run is *exercised* when the app met that variant's ledger row during the run (the mock marks the
rows its answers met: ``GET /__mock__/coverage``, ``mockserver/coverage.py``); a variant passed without meeting
its row is "not exercised", since the app never saw the behaviour it replaces. The baseline runs first and
alone: if it fails, the variants' results mean nothing yet, and the matrix says so first.

Exit codes: 0 every run passed, 1 some run failed (or, with ``--require-exercised``, was not exercised),
2 a usage error (nothing was run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import deep_merge
from .testing import MockControl, launch
from .variants import Variant, load_variants, row_notes, rows_without_variants

OUTPUT_CAP = 64 * 1024          # bytes of each run's output kept (the last ones)
DEFAULT_PENDING_SECONDS = 0.5   # a submit answers PENDING and the job finishes soon after, in real time
PENDING_READS = 2               # ... and never before its 2nd read: the first read of every job answers PENDING
DEFAULT_TAIL = 10               # lines of a failed run's end shown after the lines that explain it
EXPLAIN_LINES = 40              # at most this many explaining lines per failing test (a stack trace is cut)
PYTEST_HEADER = re.compile(r"_{3,} \S.* _{3,}$")  # "____ test_name ____": a failing test's section in pytest
PORT_FREE_WAIT = 15.0           # seconds to wait for a fixed port to be free again between runs
WEBHOOK_SETTLE = 5.0            # seconds a run's mock may take to finish its webhook deliveries before coverage
BASELINE = "baseline"


_RUNNING: set[subprocess.Popen] = set()  # the commands running now, killed on Ctrl-C


@dataclass
class Run:
    row: str                 # the variant's ledger row; "baseline" for the baseline
    variant: str
    evidence: str
    passed: bool
    seconds: float
    exit_code: int | None
    output: str
    timed_out: bool = False
    exercised: bool | None = None      # the app met the variant's row (None: the baseline, or coverage unknown)
    rows_met: list[str] | None = None  # every assumed row the app met in this run (None: unknown)

    @property
    def result(self) -> str:
        if not self.passed:
            return "TIMEOUT" if self.timed_out else "FAILED"
        return "not exercised" if self.exercised is False else "passed"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sd35-mock matrix",
        usage="sd35-mock matrix [OPTIONS] -- COMMAND [ARGS...]",
        description="Run COMMAND against the default mock, then against a fresh mock per plausible variant of "
                    "the assumed behaviours. The command gets the mock's URL as $SD35_MOCK_URL and as {url} in "
                    "its arguments, the variant's id as $SD35_MOCK_VARIANT. Exit 0 when every run passed.",
        epilog="e.g. sd35-mock matrix --rows L15,L22 -- sd35-client generate 'a fox' --base-url {url} "
               "--api-key k --out out/",
    )
    p.add_argument("--rows", action="append", default=[], metavar="L15,L05",
                   help="only the variants of these ledger rows (comma-separated, repeatable; default: all)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds each run may take (default 120); a run over it is killed (its process group) "
                        "and failed")
    p.add_argument("--port", type=int, default=0, metavar="P",
                   help="serve every mock on this port (for apps configured with a fixed URL); default: a free "
                        "port per run")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at once (default 1); more than 1 needs a free port per run (no --port)")
    p.add_argument("--pending-seconds", type=float, default=DEFAULT_PENDING_SECONDS, metavar="S",
                   help=f"seconds a job stays PENDING in every mock (default {DEFAULT_PENDING_SECONDS:g}), and "
                        "for its first read whatever the seconds, so an app polling at any interval meets PENDING; "
                        "0 makes every job finish at its submit")
    p.add_argument("--tail", type=int, default=DEFAULT_TAIL, metavar="N",
                   help=f"for a failed run, show the last N lines of its output (default {DEFAULT_TAIL}) after "
                        "the lines that explain it (TAP's not ok lines and diagnostics, pytest's short summary)")
    p.add_argument("--mock-arg", action="append", default=[], metavar="ARG",
                   help="pass ARG to every mock (repeatable), e.g. --mock-arg=--api-key=k")
    p.add_argument("--profile", metavar="FILE",
                   help="your own profile, the base of every run; each variant's overlay is merged over it")
    p.add_argument("--report", metavar="FILE", help="write every run (with its output) as JSON to FILE")
    p.add_argument("--out-dir", metavar="DIR", help="also write each run's output to DIR/NN-<variant>.log")
    p.add_argument("--require-exercised", action="store_true",
                   help="a variant passed without the app meeting its row (\"not exercised\") fails the matrix")
    p.add_argument("--only-met", action="store_true",
                   help="run only the variants of rows the baseline met; the others would most likely be \"not "
                        "exercised\" (unless the app behaves differently under a variant)")
    p.add_argument("--list", action="store_true", help="list the variants (of --rows) and exit")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    return p


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _wait_port_free(port: int, timeout: float = PORT_FREE_WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not _port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _tail(path: Path, cap: int = OUTPUT_CAP) -> str:
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - cap))
        text = f.read().decode("utf-8", errors="replace")
    return f"[... {size - cap} bytes cut]\n{text}" if size > cap else text


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def control_token(mock_args: list[str]) -> str | None:
    """The ``--control-token`` the mocks are started with (an option passed through, or the environment's)."""
    token = os.environ.get("SD35_MOCK_CONTROL_TOKEN")
    for i, arg in enumerate(mock_args):
        if arg == "--control-token" and i + 1 < len(mock_args):
            token = mock_args[i + 1]
        elif arg.startswith("--control-token="):
            token = arg.split("=", 1)[1]
    return token


def rows_met(url: str, token: str | None) -> list[str] | None:
    """The assumed rows the run's requests met, once the mock's webhook deliveries settled; None if the mock
    cannot tell (``--no-control-plane``, a wrong token)."""
    control = MockControl(url, timeout=WEBHOOK_SETTLE + 5, token=token)
    try:
        control.webhooks(wait=WEBHOOK_SETTLE)
        return [entry["row"] for entry in control.coverage()["met"]]
    except Exception:  # noqa: BLE001 - a mock that cannot say leaves coverage unknown; the run's result stands
        return None
    finally:
        control.close()


def run_one(command: list[str], variant: Variant | None, mock_args: list[str], base_profile: dict | None,
            timeout: float, workdir: Path) -> Run:
    """One run: a fresh mock with the variant's overlay, the command against it, the rows it met, the mock
    stopped."""
    row, name, evidence = (variant.row, variant.name, variant.evidence) if variant else (BASELINE, BASELINE,
                                                                                          "the default profile")
    run_id = variant.id if variant else BASELINE
    args = list(mock_args)
    profile = deep_merge(base_profile or {}, variant.profile if variant else {})
    if profile:
        profile_file = workdir / "profile.json"
        profile_file.write_text(json.dumps(profile), "utf-8")
        args += ["--profile", str(profile_file)]
    started = time.monotonic()
    try:
        mock = launch(*args, "--quiet")
    except RuntimeError as exc:
        return Run(row, name, evidence, False, round(time.monotonic() - started, 2), None,
                   f"[the mock did not start]\n{exc}")
    log = workdir / "output.log"
    timed_out = False
    try:
        argv = [part.replace("{url}", mock.url) for part in command]
        env = {**os.environ, "SD35_MOCK_URL": mock.url, "SD35_MOCK_VARIANT": run_id,
               "IMAGEPIPELINE_BASE_URL": mock.url}
        with log.open("wb") as out:
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           env=env, start_new_session=True)
            except OSError as exc:
                return Run(row, name, evidence, False, round(time.monotonic() - started, 2), None,
                           f"[cannot run {argv[0]!r}: {exc}]")
            _RUNNING.add(process)
            try:
                code: int | None = process.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out, code = True, None
            finally:  # a timed-out run, or what the command left behind
                _kill_group(process)
                process.wait()
                _RUNNING.discard(process)
        output = _tail(log)
        if timed_out:
            output += f"\n[killed: no exit within --timeout {timeout:g} s]\n"
        met = rows_met(mock.url, control_token(mock_args))
    finally:
        mock.stop()
    passed = code == 0
    exercised = None if variant is None or met is None else variant.row in met
    return Run(row, name, evidence, passed, round(time.monotonic() - started, 2), code, output, timed_out,
               exercised, met)


def lifecycle_args(pending_seconds: float) -> list[str]:
    """The mock options that make every app meet PENDING: the job is done on a read that is at least its
    ``PENDING_READS``-th once ``pending_seconds`` have passed (0: at submit, as asked)."""
    if pending_seconds == 0:
        return ["--pending-seconds", "0"]
    return ["--pending-seconds", f"{pending_seconds:g}", "--pending-polls", str(PENDING_READS)]


def explain(output: str, tail: int = DEFAULT_TAIL, width: int = 300) -> list[str]:
    """The lines of a failed run that say why: each TAP ``not ok`` line with its diagnostics (the lines indented
    under it); pytest's failing tests' headers with their ``E`` lines, and its short test summary; then the last
    ``tail`` lines not shown yet. ``[...]`` marks a gap."""
    lines = output.rstrip().splitlines()
    picked: list[int] = []
    errors = 0  # pytest's E lines picked under the current failing test's header
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if PYTEST_HEADER.match(line):
            picked.append(i)
            errors = 0
        elif line.startswith("E ") and picked and errors < EXPLAIN_LINES:
            picked.append(i)
            errors += 1
        elif stripped.startswith("not ok ") or stripped == "not ok":
            indent = len(line) - len(stripped)
            block = [i]
            for j in range(i + 1, len(lines)):
                nxt = lines[j]
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(j)
            picked += block[:EXPLAIN_LINES]
        elif "short test summary info" in line and stripped.startswith("="):
            picked += range(i, len(lines))
            break
    start_tail = max(len(lines) - tail, (max(picked) + 1) if picked else 0) if tail else len(lines)
    shown = sorted(set(picked) | set(range(start_tail, len(lines))))
    out, previous = [], -1
    for i in shown:
        if i != previous + 1:
            out.append("[...]")
        out.append(lines[i][:width])
        previous = i
    return out


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()


WIDTHS = [8, 22, 50, 13, 7]


def _row_cells(run: Run) -> list[str]:
    evidence = run.evidence if len(run.evidence) <= WIDTHS[2] else run.evidence[:WIDTHS[2] - 1] + "…"
    return [run.row, run.variant, evidence, run.result, f"{run.seconds:.1f}"]


def summary(runs: list[Run], seconds: float) -> str:
    """``17 passed, 6 not exercised, 2 FAILED in 31.0 s`` (a timed-out run counts as FAILED)."""
    counts = {"passed": 0, "not exercised": 0, "FAILED": 0}
    for run in runs:
        counts["FAILED" if not run.passed else run.result] += 1
    parts = [f"{n} {word}" for word, n in counts.items() if n or word == "passed"]
    return f"{', '.join(parts)} in {seconds:.1f} s"


BASELINE_FAILED = ("the baseline FAILED: your command fails on the twin's defaults, so the variants' results "
                   "mean nothing yet; make it pass on the baseline first")


def select_rows(parser: argparse.ArgumentParser, rows: set[str]) -> list[Variant]:
    """The variants of ``rows`` (every one without), saying why a named row has none; a usage error when no
    named row has any, or one is no row of the file."""
    try:
        variants = load_variants(rows or None)
    except ValueError as exc:
        parser.error(f"argument --rows: {exc}")
    if rows:
        why_not = rows_without_variants()
        for row in sorted(rows - {v.row for v in variants}):
            print(f"sd35-mock matrix: {row} has no variant: {why_not.get(row, 'none listed')}", file=sys.stderr)
        if not variants:
            parser.error(f"argument --rows: none of {', '.join(sorted(rows))} has a variant (see above)")
    return variants


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if "--" in argv:
        split = argv.index("--")
        args = parser.parse_args(argv[:split])
        if args.command:
            parser.error(f"unrecognized arguments before --: {' '.join(args.command)}")
        args.command = argv[split + 1:]
    else:
        args = parser.parse_args(argv)
    rows = {r.strip() for text in args.rows for r in text.split(",") if r.strip()}
    if args.rows and not rows:
        parser.error("argument --rows: give ledger row ids, e.g. --rows L15,L05")
    variants = select_rows(parser, rows)
    if args.list:
        for v in variants:
            print(_line([v.row, v.name, v.evidence], [5, 22, 0]))
        return 0
    if not args.command:
        parser.error("no command: give it after --, e.g. sd35-mock matrix -- python app.py --url {url}")
    if not args.timeout > 0:
        parser.error("argument --timeout: must be more than 0 seconds")
    if not 0 <= args.port <= 65535:
        parser.error("argument --port: must be from 0 to 65535")
    if args.jobs < 1:
        parser.error("argument --jobs: must be 1 or more")
    if args.jobs > 1 and args.port:
        parser.error("argument --jobs: runs on one fixed --port are sequential; drop --jobs or --port")
    if args.pending_seconds < 0:
        parser.error("argument --pending-seconds: must be 0 or more")
    if args.tail < 0:
        parser.error("argument --tail: must be 0 or more")
    program = args.command[0]
    if shutil.which(program) is None and not (os.sep in program and os.path.exists(program)):
        parser.error(f"command not found: {program}")
    base_profile = None
    if args.profile:
        try:
            base_profile = json.loads(Path(args.profile).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            parser.error(f"argument --profile: {exc}")
        if not isinstance(base_profile, dict):
            parser.error("argument --profile: must hold a JSON object")
    if args.port and not _port_free(args.port):
        parser.error(f"argument --port: {args.port} is in use")
    mock_args = [*lifecycle_args(args.pending_seconds), *args.mock_arg]
    if args.port:
        mock_args += ["--port", str(args.port)]
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)

    print(_line(["row", "variant", "evidence", "result", "seconds"], WIDTHS), flush=True)
    runs: list[Run] = []
    skipped: list[Variant] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sd35-matrix-") as tmp, \
            ThreadPoolExecutor(max_workers=args.jobs) as pool:
        def one(index: int, variant: Variant | None) -> Run:
            if args.port and index and not _wait_port_free(args.port):
                print(f"sd35-mock matrix: port {args.port} is still in use after {PORT_FREE_WAIT:g} s; the "
                      f"next run will likely fail", file=sys.stderr)
            workdir = Path(tmp) / f"{index:02d}"
            workdir.mkdir()
            return run_one(args.command, variant, mock_args, base_profile, args.timeout, workdir)

        def show(index: int, run: Run) -> None:
            runs.append(run)
            print(_line(_row_cells(run), WIDTHS), flush=True)
            if out_dir:
                slug = "".join(c if c.isalnum() or c in "-_=." else "_" for c in run.variant)
                (out_dir / f"{index:02d}-{run.row}-{slug}.log").write_text(run.output, "utf-8")

        futures = [pool.submit(one, 0, None)]  # the baseline first, alone: the variants mean nothing without it
        try:
            baseline = futures[0].result()
            show(0, baseline)
            if not baseline.passed:
                print(f"sd35-mock matrix: {BASELINE_FAILED}", file=sys.stderr, flush=True)
            if args.only_met and baseline.rows_met is not None:
                skipped = [v for v in variants if v.row not in baseline.rows_met]
                variants = [v for v in variants if v.row in baseline.rows_met]
            elif args.only_met:
                print("sd35-mock matrix: --only-met: the baseline's mock could not say which rows it met; running "
                      "every variant", file=sys.stderr)
            futures = [pool.submit(one, index, variant) for index, variant in enumerate(variants, start=1)]
            for index, future in enumerate(futures, start=1):  # in the matrix's order, each once it is known
                show(index, future.result())
        except KeyboardInterrupt:  # the commands run in their own sessions: Ctrl-C reaches only us
            for f in futures:
                f.cancel()
            for process in list(_RUNNING):
                _kill_group(process)
            print("sd35-mock matrix: interrupted", file=sys.stderr)
            return 130
    failed = [r for r in runs if not r.passed]
    unexercised = [r for r in runs if r.result == "not exercised"]
    if failed and runs[0].row == BASELINE and not runs[0].passed:
        print(BASELINE_FAILED[0].upper() + BASELINE_FAILED[1:], flush=True)
    print(summary(runs, time.monotonic() - started), flush=True)
    if skipped:
        print(f"--only-met: {len(skipped)} variant(s) not run, of rows the baseline never met: "
              + ", ".join(sorted({v.row for v in skipped})), flush=True)
    if unexercised:
        notes = row_notes()
        print("\nnot exercised: the command passed these variants without meeting their row; to meet it:", flush=True)
        for row in dict.fromkeys(r.row for r in unexercised):
            print(f"  {row:5} {notes.get(row, {}).get('meet', '')}", flush=True)
    for run in failed:
        why = "\n".join(explain(run.output, args.tail))
        print(f"\n--- {run.row or 'baseline'} {run.variant}: "
              f"{'timed out' if run.timed_out else f'exit {run.exit_code}'} ---\n{why}", file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps({"runs": [asdict(r) for r in runs],
                                                 "not_run": [v.id for v in skipped]}, indent=2) + "\n", "utf-8")
    if failed or (args.require_exercised and unexercised):
        return 1
    return 0
