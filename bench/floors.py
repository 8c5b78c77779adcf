"""`python -m bench.floors`: our mock over HTTP against what it stands on, at 1 and 32 connections.

The same wrk flow (bench/flow.lua) against our mock and against two floors served by the same server code
(``make_server``: waitress, our channel, the command line's tuning): a bare Flask app answering fixed JSON on the
two routes, and a bare WSGI app. Rounds take turns; each line gives the median requests a second and the median
server CPU per request (from /proc, so less moved by other processes than throughput). What ours costs beyond
Flask is the gap to the first floor; whether it loses throughput as connections grow is its 32 against its 1,
beside the floors' own. Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import loadgen
from .harness import REPO_ROOT, LaunchedServer, ours_args, submit_probe
from .procs import CpuWindow, ServerProcess, free_port

KINDS = ("ours", "bare-flask", "bare-wsgi")
PENDING = b'{"status":"PENDING","id":"x"}'


def floor_app(kind: str):
    """A floor: the two routes answering a fixed PENDING, in Flask or in plain WSGI."""
    if kind == "bare-flask":
        from flask import Flask, Response

        app = Flask("floor")
        app.add_url_rule("/sd3_5/v1", "submit", lambda: Response(PENDING, mimetype="application/json"),
                         methods=["POST"])
        app.add_url_rule("/sd3_5/v1/status/<job_id>", "status",
                         lambda job_id: Response(PENDING, mimetype="application/json"))
        return app

    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(PENDING)))])
        return [PENDING]
    return app


def serve(kind: str, port: int) -> None:
    """Serve a floor on our server code, as the command line serves the mock: what the floor measures against."""
    from sd35_twin.mockserver.server import make_server, tune_serving_process

    tune_serving_process()
    make_server(floor_app(kind), "127.0.0.1", port).run()


def start(kind: str, polls: int, logs: Path):
    """One server of ``KINDS``, answering; the caller stops it."""
    if kind == "ours":
        server = LaunchedServer(kind, ours_args(polls), logs / f"{kind}.log").start()
    else:
        port = free_port()
        server = ServerProcess(kind, [sys.executable, "-m", "bench.floors", "--serve", kind, "--port", str(port)],
                               logs / f"{kind}.log", cwd=str(REPO_ROOT))
        server.port = port
        server.start()
    try:
        server.wait_first_ok(submit_probe(lambda: server.port), 30)
    except BaseException:
        server.stop()
        raise
    return server


def measure(kinds, concurrencies, rounds: int, duration: float, polls: int, wrk: str = "wrk") -> dict:
    """{kind: {concurrency: [(req/s, server CPU µs per request), ...]}}, one entry per round."""
    out = {kind: {c: [] for c in concurrencies} for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="sd35-floors-") as logs:
        for _ in range(rounds):
            for kind in kinds:
                server = start(kind, polls, Path(logs))
                try:
                    for c in concurrencies:
                        loadgen.run_load(loadgen.wrk_command(wrk, server.port, c, 1, polls=polls))  # warm-up
                        window = CpuWindow(server.proc.pid)
                        run = loadgen.run_load(loadgen.wrk_command(wrk, server.port, c, duration, polls=polls))
                        cpu_s = window.close()["server_cores"] * (time.perf_counter() - window.t0)
                        out[kind][c].append((run["requests"] / run["duration_s"], cpu_s / run["requests"] * 1e6))
                finally:
                    server.stop()
    return out


def report(results: dict) -> str:
    lines = [f"{'server':<12}{'conns':>6}{'req/s':>9}{'CPU µs/req':>12}{'vs its 1 conn':>15}"]
    for kind, by_conc in results.items():
        first = None
        for c, runs in by_conc.items():
            rps = statistics.median(r for r, _ in runs)
            cpu = statistics.median(u for _, u in runs)
            first = first or rps
            lines.append(f"{kind:<12}{c:>6}{rps:>9.0f}{cpu:>12.0f}{rps / first:>14.2f}×")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", choices=KINDS[1:], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--servers", default=",".join(KINDS), help="comma-separated, of: " + ", ".join(KINDS))
    ap.add_argument("--concurrency", default="1,32", help="connections, comma-separated (default 1,32)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds taking turns (default 3)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of wrk per run (default 4)")
    ap.add_argument("--pending-polls", type=int, default=2, help="polls per job, as the harness (default 2)")
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    if set(kinds) - set(KINDS):
        ap.error(f"unknown servers: {', '.join(sorted(set(kinds) - set(KINDS)))}")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    print(report(measure(kinds, concurrencies, args.rounds, args.duration, args.pending_polls)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
