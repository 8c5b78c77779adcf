"""`python -m bench`: our mock vs WireMock vs Prism under the same wrk workload. See bench/README.md."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import loadgen, report, tools
from .procs import CpuWindow, ServerProcess, free_port, request, wait_for_quiet
from .tools import log

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
API_KEY = "bench-key"
READY_LINE = "sd35-mock listening on "

SUBMIT_BODY = {
    "prompt": "beautiful waterfall in the rainforest, anime style",
    "negative_prompt": "error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",
    "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0, "width": 1024, "height": 1024,
}
HEADERS = {"API-Key": API_KEY}

# WireMock stubs for the same two endpoints (the key is part of the match, as on the real API).
WIREMOCK_STUB_ID = "wm0000000000000000000000000000bench"
WIREMOCK_MAPPINGS = [
    {
        "name": "sd35 submit",
        "request": {"method": "POST", "url": "/sd3_5/v1", "headers": {"API-Key": {"equalTo": API_KEY}}},
        "response": {"status": 200, "headers": {"Content-Type": "application/json"},
                     "jsonBody": {"status": "PENDING", "id": WIREMOCK_STUB_ID}},
    },
    {
        "name": "sd35 status",
        "request": {"method": "GET", "urlPathPattern": "/sd3_5/v1/status/[^/]+",
                    "headers": {"API-Key": {"equalTo": API_KEY}}},
        "response": {"status": 200, "headers": {"Content-Type": "application/json"},
                     "jsonBody": {"status": "SUCCESS", "id": WIREMOCK_STUB_ID,
                                  "download_urls": [f"http://127.0.0.1/files/{WIREMOCK_STUB_ID}-1"]}},
    },
]
# Run WireMock as its docs recommend for performance testing: no request journal, no request logging.
WIREMOCK_FLAGS = ["--disable-banner", "--no-request-journal", "--disable-request-logging"]
# Prism logs every request at "info"; keep its console to errors so we time the mock, not the logger.
PRISM_FLAGS = ["--verboseLevel", "error"]


@dataclass
class Mode:
    name: str
    concurrencies: list[int]
    duration_s: float
    warmup_s: float
    wrk_threads: int
    mock_thread_variants: list[int] = field(default_factory=list)
    mock_worker_variants: list[int] = field(default_factory=list)
    image_repeats: int = 5
    distinct_images: int = 0


QUICK = Mode("quick", [1, 8], 1.0, 0.0, 2, [], [], 3, 0)
FULL = Mode("full", [1, 8, 32, 128], 10.0, 3.0, 2, [2, 8], [1], 5, 300)
# Our mock as benchmarked: two worker processes over one shared state, the setting for a 2-core machine
# under load (one process is a variant, "ours-w1").
OURS_WORKERS = 2


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: concurrencies 1 and 8, 1 s each, no warm-up, no thread variants")
    ap.add_argument("--servers", default="ours,wiremock,prism",
                    help="comma-separated subset of ours,wiremock,prism (default all)")
    ap.add_argument("--concurrency", help="comma-separated connection counts (default full: 1,8,32,128)")
    ap.add_argument("--duration", type=float, help="seconds per (server, concurrency) (full 10, quick 1)")
    ap.add_argument("--warmup", type=float, help="seconds of unrecorded load before the runs (full 3, quick 0)")
    ap.add_argument("--wrk-threads", type=int, help="wrk threads (default 2; never more than connections)")
    ap.add_argument("--mock-workers", type=int, default=OURS_WORKERS,
                    help=f"worker processes of our mock (default {OURS_WORKERS})")
    ap.add_argument("--mock-worker-variants", help="extra runs of our mock with --workers N, comma-separated "
                                                   "(full default: 1)")
    ap.add_argument("--mock-threads", help="extra runs of our mock with --threads N, comma-separated "
                                           "(full default 2,4,16; '' for none)")
    ap.add_argument("--status-per-submit", type=int, default=3, help="status polls per submit (default 3)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per (server, concurrency); the one least disturbed by other processes is kept")
    ap.add_argument("--quiet-wait", type=float,
                    help="before each run, wait up to this many seconds for the machine to be idle "
                         "(other processes under 0.25 cores); full 60, quick 0")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                    help="auto: wrk if available (installed from Debian when root), else the Python one")
    ap.add_argument("--no-install", action="store_true", help="never install wrk / npm packages / matplotlib")
    ap.add_argument("--no-image", action="store_true", help="skip the image download measurement")
    ap.add_argument("--startup-timeout", type=float, default=90.0, help="seconds to wait for a first 200")
    ap.add_argument("--openapi", type=Path,
                    help="OpenAPI document for Prism (default: fetched from our mock's /openapi.json)")
    ap.add_argument("--out", type=Path, help="results directory (default bench/results/<timestamp>)")
    return ap.parse_args(argv)


def _ints(text: str | None) -> list[int]:
    return [int(x) for x in (text or "").split(",") if x.strip()]


# ------------------------------------------------------------------------------- the servers

def submit_probe(port: int):
    return lambda timeout=1.0: request(port, "POST", "/sd3_5/v1", SUBMIT_BODY, HEADERS, timeout=timeout)


def ours_argv(port: int, threads: int | None, workers: int = 1) -> list[str]:
    argv = [sys.executable, "-m", "mockserver", "--port", str(port), "--pending-seconds", "0", "--api-key", API_KEY,
            "--workers", str(workers)]
    if threads:
        argv += ["--threads", str(threads)]
    return argv


def fetch_openapi(out_dir: Path, startup_timeout: float) -> Path:
    """Start our mock briefly and save its /openapi.json for Prism."""
    port = free_port()
    srv = ServerProcess("ours-openapi", ours_argv(port, None), out_dir / "logs" / "ours-openapi.log",
                        env=_py_env(), cwd=str(REPO_ROOT)).start()
    try:
        if srv.wait_for_log(READY_LINE, startup_timeout) is None:
            raise RuntimeError(f"our mock did not print its ready line: {srv.log_tail()}")
        ans = request(port, "GET", "/openapi.json", timeout=10)
        if ans.status != 200:
            raise RuntimeError(f"GET /openapi.json answered {ans.status}: {ans.body[:300]!r}")
        doc = ans.json()
    finally:
        srv.stop()
    path = out_dir / "openapi.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def _py_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def make_server(name: str, kind: str, tls: tools.Tools, out_dir: Path, openapi: Path | None,
                threads: int | None = None, workers: int = 1) -> tuple[ServerProcess, int]:
    port = free_port()
    log_path = out_dir / "logs" / f"{name}.log"
    if kind == "ours":
        return ServerProcess(name, ours_argv(port, threads, workers), log_path, env=_py_env(),
                             cwd=str(REPO_ROOT)), port
    if kind == "wiremock":
        root = out_dir / "wiremock"
        (root / "mappings").mkdir(parents=True, exist_ok=True)
        (root / "__files").mkdir(exist_ok=True)
        for i, m in enumerate(WIREMOCK_MAPPINGS):
            (root / "mappings" / f"sd35-{i}.json").write_text(json.dumps(m, indent=1))
        argv = [tls.java, "-jar", str(tls.wiremock_jar), "--port", str(port), "--bind-address", "127.0.0.1",
                "--root-dir", str(root), *WIREMOCK_FLAGS]
        return ServerProcess(name, argv, log_path), port
    if kind == "prism":
        argv = [tls.node, str(tls.prism_entry), "mock", "--host", "127.0.0.1", "--port", str(port),
                *PRISM_FLAGS, str(openapi)]
        return ServerProcess(name, argv, log_path, env=dict(os.environ, NODE_ENV="development")), port
    raise ValueError(kind)


def sanity_check(port: int) -> tuple[str, dict]:
    """A submit and a status through the same path the load takes; returns (status id, samples)."""
    sub = request(port, "POST", "/sd3_5/v1", SUBMIT_BODY, HEADERS)
    if sub.status != 200:
        raise RuntimeError(f"submit answered {sub.status}: {sub.body[:300]!r}")
    body = sub.json()
    job_id = body.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise RuntimeError(f"submit answer has no id: {body}")
    st = request(port, "GET", f"/sd3_5/v1/status/{job_id}", headers=HEADERS)
    if st.status != 200:
        raise RuntimeError(f"status/{job_id} answered {st.status}: {st.body[:300]!r}")
    unauth = request(port, "GET", f"/sd3_5/v1/status/{job_id}")
    samples = {"submit": body, "status": st.json(), "status_without_key": unauth.status,
               "submit_bytes": len(sub.body), "status_bytes": len(st.body)}
    return job_id, samples


def fresh_status_id(port: int) -> str | None:
    try:
        ans = request(port, "POST", "/sd3_5/v1", SUBMIT_BODY, HEADERS)
        job_id = ans.json().get("id") if ans.status == 200 else None
        return job_id if isinstance(job_id, str) and job_id else None
    except (OSError, ValueError):
        return None


def mock_stats(port: int) -> dict | None:
    """Our mock's own counters (jobs kept, evicted, image cache), when it serves them."""
    try:
        ans = request(port, "GET", "/__mock__/stats")
        return ans.json() if ans.status == 200 else None
    except (OSError, ValueError):
        return None


def measure_image(port: int, repeats: int, distinct: int, sampler) -> dict:
    """First vs repeated download of a 1024x1024 direct_link image from our mock."""
    body = dict(SUBMIT_BODY, direct_link=True, prompt="bench image cost probe")
    sub = request(port, "POST", "/sd3_5/v1", body, HEADERS).json()
    job = sub
    deadline = time.perf_counter() + 30
    while job.get("status") != "SUCCESS":
        if job.get("status") == "FAILURE" or time.perf_counter() > deadline:
            return {"error": f"image job did not succeed: {job}"}
        time.sleep(0.05)
        job = request(port, "GET", f"/sd3_5/v1/status/{sub['id']}", headers=HEADERS).json()
    url = job["download_urls"][0]
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]  # always fetched from 127.0.0.1:port
    first = request(port, "GET", path, timeout=60)
    if first.status != 200:
        return {"error": f"download answered {first.status}: {first.body[:200]!r}", "url": url}
    reps = [request(port, "GET", path, timeout=60) for _ in range(repeats)]
    same = all(r.body == first.body for r in reps)
    rep_ms = [r.seconds * 1000 for r in reps]
    out = {
        "url": url, "width": body["width"], "height": body["height"],
        "content_type": first.headers.get("content-type"), "bytes": len(first.body),
        "first_ms": first.seconds * 1000, "repeated_ms": rep_ms, "repeats": repeats,
        "repeated_ms_median": statistics.median(rep_ms) if rep_ms else None,
        "identical_bytes": same,
    }
    out["first_over_repeated"] = (out["first_ms"] / out["repeated_ms_median"]) if rep_ms else None
    if distinct:
        # Many different images: the cache must stay bounded (RSS), and the first may be evicted.
        before = sampler.current_rss_mb()
        times, trace, step = [], [], max(1, distinct // 6)
        for i in range(distinct):
            if i % step == 0:
                trace.append(sampler.current_rss_mb())
            b = dict(SUBMIT_BODY, direct_link=True, prompt=f"bench distinct image {i}")
            s = request(port, "POST", "/sd3_5/v1", b, HEADERS).json()
            j = s if s.get("status") == "SUCCESS" else request(
                port, "GET", f"/sd3_5/v1/status/{s['id']}", headers=HEADERS).json()
            u = j.get("download_urls", [None])[0]
            if not u:
                continue
            r = request(port, "GET", "/" + u.split("://", 1)[1].split("/", 1)[1], timeout=60)
            times.append(r.seconds * 1000)
        again = request(port, "GET", path, timeout=60)
        out["distinct"] = {
            "count": len(times), "median_ms": statistics.median(times) if times else None,
            "rss_before_mb": before, "rss_after_mb": sampler.current_rss_mb(),
            "first_again_ms": again.seconds * 1000, "step": step, "rss_trace_mb": trace,
            "mock_stats": mock_stats(port),
        }
    return out


def bench_server(name: str, kind: str, tls: tools.Tools, mode: Mode, args, out_dir: Path,
                 openapi: Path | None, threads: int | None = None, image: bool = False,
                 workers: int = 1) -> tuple[dict, dict | None]:
    srv, port = make_server(name, kind, tls, out_dir, openapi, threads, workers)
    result = {"kind": kind, "command": srv.argv, "port": port, "threads": threads,
              "workers": workers if kind == "ours" else None, "startup_s": None, "ready_line_s": None,
              "peak_rss_mb": None, "peak_pss_mb": None, "runs": [], "skipped": None}
    image_res = None
    log(f"{name}: starting: {' '.join(srv.argv)}")
    srv.start()
    try:
        result["startup_s"] = srv.wait_first_ok(submit_probe(port), args.startup_timeout)
        if kind == "ours":
            result["ready_line_s"] = srv.wait_for_log(READY_LINE, 1.0)
        result["rss_after_start_mb"] = srv.sampler.current_rss_mb()
        status_id, result["samples"] = sanity_check(port)
        result["status_id"] = status_id
        log(f"{name}: first 200 after {result['startup_s']:.2f}s; status id {status_id}")
        def load(conc, dur, raw):
            # A fresh job per run: our mock's job store is bounded (oldest evicted first), so a job
            # created before a long run can be evicted during it and its polls would turn into 404s.
            status_id = fresh_status_id(port) or result["status_id"]
            if args.loadgen_used == "wrk":
                cmd = loadgen.wrk_command(tls.wrk, port, conc, dur, mode.wrk_threads, status_id, API_KEY,
                                          args.status_per_submit)
            else:
                cmd = loadgen.pyload_command(port, conc, dur, status_id, API_KEY, args.status_per_submit)
            return loadgen.run_load(cmd, raw, cwd=str(REPO_ROOT))
        if mode.warmup_s > 0:
            load(8, mode.warmup_s, out_dir / "raw" / f"{name}-warmup.txt")
        for conc in mode.concurrencies:
            attempts = []
            for attempt in range(max(1, args.repeat)):
                waited, background = (wait_for_quiet(args.quiet_wait, report.NOISY_CORES)
                                      if args.quiet_wait > 0 else (0.0, None))
                window = CpuWindow(srv.proc.pid)
                suffix = f"-{attempt + 1}" if args.repeat > 1 else ""
                try:
                    run = load(conc, mode.duration_s, out_dir / "raw" / f"{name}-c{conc}{suffix}.txt")
                    run.update(concurrency=conc, ok=True, loadgen=args.loadgen_used)
                    run["cpu"] = window.close()
                except Exception as exc:  # keep the other levels
                    run = {"concurrency": conc, "ok": False, "failure": str(exc)[:500], "requests": 0,
                           "rps": 0.0, "latency_ms": {}, "errors": {}, "error_count": 0}
                run["quiet_wait_s"], run["background_cores_before"] = round(waited, 1), background
                attempts.append(run)
            # With --repeat, keep the attempt least disturbed by other processes on the machine.
            run = min(attempts, key=lambda r: (not r.get("ok", True),
                                               (r.get("cpu") or {}).get("other_cores", 0.0)))
            if len(attempts) > 1:
                run["attempts"] = [{"rps": a["rps"], "p99": (a.get("latency_ms") or {}).get("p99"),
                                    "other_cores": (a.get("cpu") or {}).get("other_cores")} for a in attempts]
            run["rss_after_mb"] = srv.sampler.current_rss_mb()
            if kind == "ours":
                run["mock_stats"] = mock_stats(port)
            run["alive_after"] = srv.alive()
            result["runs"].append(run)
            lat = run.get("latency_ms", {})
            cpu = run.get("cpu") or {}
            log(f"{name}: c={conc}: {run['rps']:.0f} req/s, p50 {lat.get('p50', 0):.2f} ms, "
                f"p99 {lat.get('p99', 0):.2f} ms, errors {run['error_count']}; CPU cores: server "
                f"{cpu.get('server_cores')}, load generator {cpu.get('loadgen_cores')}, others {cpu.get('other_cores')}")
            if not srv.alive():
                raise RuntimeError(f"{name} died during the c={conc} run: {srv.log_tail()}")
        try:  # does it still answer correctly after the load?
            sid = fresh_status_id(port)
            result["after_load_status"] = request(port, "GET", f"/sd3_5/v1/status/{sid}", headers=HEADERS).status
            result["first_job_after_load_status"] = request(port, "GET", f"/sd3_5/v1/status/{status_id}",
                                                            headers=HEADERS).status
        except OSError as exc:
            result["after_load_status"] = repr(exc)
        srv.sampler.sample(pss=True)
        result["peak_rss_mb"] = srv.sampler.peak_mb  # before the image probe: load only
        result["peak_pss_mb"] = srv.sampler.peak_pss_mb
        result["rss_samples_mb"] = [(round(t, 2), round(kb / 1024, 1)) for t, kb in srv.sampler.rss_samples[::5]]
        if image:
            log(f"{name}: measuring image downloads")
            try:
                image_res = measure_image(port, mode.image_repeats, mode.distinct_images, srv.sampler)
            except Exception as exc:
                image_res = {"error": f"image measurement failed: {exc}"}
            image_res["peak_rss_mb_with_images"] = srv.sampler.peak_mb
    except Exception as exc:
        result["skipped"] = result["skipped"] or f"failed: {exc}"[:800]
        log(f"{name}: {result['skipped']}")
    finally:
        srv.stop()
        if result["peak_rss_mb"] is None and srv.sampler:
            result["peak_rss_mb"] = srv.sampler.peak_mb
            result["peak_pss_mb"] = srv.sampler.peak_pss_mb
        result["log"] = str(srv.log_path)
        result["log_lines"] = _count_lines(srv.log_path)
        result["exit_code"] = srv.proc.returncode if srv.proc else None
    return result, image_res


def main(argv=None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    mode = Mode(base.name,
                _ints(args.concurrency) or list(base.concurrencies),
                args.duration if args.duration is not None else base.duration_s,
                args.warmup if args.warmup is not None else base.warmup_s,
                args.wrk_threads or base.wrk_threads,
                _ints(args.mock_threads) if args.mock_threads is not None else list(base.mock_thread_variants),
                _ints(args.mock_worker_variants) if args.mock_worker_variants is not None
                else list(base.mock_worker_variants),
                base.image_repeats, base.distinct_images)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 60.0
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(wanted) - {"ours", "wiremock", "prism"}
    if unknown:
        print(f"unknown servers: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or (RESULTS_DIR / stamp)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    need_anchors = bool({"wiremock", "prism"} & set(wanted))
    tls = tools.ensure_tools(install=not args.no_install, need_anchors=need_anchors, loadgen=args.loadgen)
    if args.loadgen == "python" or not tls.wrk:
        if args.loadgen == "wrk":
            print(f"wrk unavailable: {tls.problems.get('wrk')}", file=sys.stderr)
            return 2
        args.loadgen_used = "python"
        log(f"load generator: Python (bench/pyload.py){' - ' + tls.problems['wrk'] if 'wrk' in tls.problems else ''}")
    else:
        args.loadgen_used = "wrk"
    has_mpl = tools.ensure_matplotlib(install=not args.no_install)

    servers: dict[str, dict] = {}
    image = None
    openapi = None
    variants = []
    for name in wanted:
        if name == "ours":
            servers["ours"], image = bench_server("ours", "ours", tls, mode, args, out_dir, None,
                                                  image=not args.no_image, workers=args.mock_workers)
            for n in mode.mock_worker_variants:
                vname = f"ours-w{n}"
                variants.append(vname)
                servers[vname], _ = bench_server(vname, "ours", tls, mode, args, out_dir, None, workers=n)
            for n in mode.mock_thread_variants:
                vname = f"ours-t{n}"
                variants.append(vname)
                servers[vname], _ = bench_server(vname, "ours", tls, mode, args, out_dir, None, threads=n,
                                                 workers=args.mock_workers)
        elif name == "wiremock":
            if "wiremock" in tls.problems:
                servers["wiremock"] = _skipped("wiremock", tls.problems["wiremock"])
            else:
                servers["wiremock"], _ = bench_server("wiremock", "wiremock", tls, mode, args, out_dir, None)
        elif name == "prism":
            if "prism" in tls.problems:
                servers["prism"] = _skipped("prism", tls.problems["prism"])
                continue
            try:
                openapi = args.openapi.resolve() if args.openapi else fetch_openapi(out_dir, args.startup_timeout)
            except Exception as exc:
                servers["prism"] = _skipped("prism", f"could not fetch our /openapi.json: {exc}")
                continue
            servers["prism"], _ = bench_server("prism", "prism", tls, mode, args, out_dir, openapi)
        time.sleep(0.5)  # let the box settle between servers

    meta = {
        "timestamp": stamp, "mode": mode.name, "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": sys.version.split()[0], "tools": tls.describe(), "wall_s": None,
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    settings = {
        "concurrencies": mode.concurrencies, "duration_s": mode.duration_s, "warmup_s": mode.warmup_s,
        "wrk_threads": mode.wrk_threads, "loadgen": args.loadgen_used,
        "mix": f"1 submit : {args.status_per_submit} status per connection cycle",
        "target_concurrency": 32, "api_key": API_KEY, "mock_thread_variants": mode.mock_thread_variants,
        "repeat": args.repeat, "quiet_wait_s": args.quiet_wait, "noisy_cores": report.NOISY_CORES,
        "wiremock_flags": WIREMOCK_FLAGS, "prism_flags": PRISM_FLAGS,
        "openapi": str(openapi) if openapi else None,
        "startup": "seconds from spawn until the first HTTP 200 to a valid POST /sd3_5/v1",
        "peak_rss": "sum of VmHWM over the server process tree, from spawn to the end of its load runs",
        "peak_pss": "highest sampled sum of PSS over the tree (shared pages counted once), same span",
        "ours_workers": args.mock_workers, "mock_worker_variants": mode.mock_worker_variants,
    }
    meta["wall_s"] = round(time.perf_counter() - t_start, 1)
    doc = report.build_results(meta, settings, servers, image, variants)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    plot_path = report.plot(doc, out_dir / "plot.png") if has_mpl else None
    print(report.format_table(doc))
    print()
    print(f"results: {out_dir / 'results.json'}")
    print(f"plot:    {plot_path if plot_path else 'not drawn (matplotlib unavailable)'}")
    print(f"wall time: {meta['wall_s']} s")
    ours = servers.get("ours")
    if "ours" in wanted and (not ours or ours.get("skipped")):
        return 1  # our own mock failing is a harness failure; missing anchors are not
    return 0


def _count_lines(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def _skipped(name: str, why: str) -> dict:
    log(f"{name}: skipped: {why}")
    return {"kind": name, "command": None, "startup_s": None, "peak_rss_mb": None, "runs": [], "skipped": why}
