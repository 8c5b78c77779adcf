"""`python -m bench`: our mock vs WireMock vs Prism under the client's flow, driven by wrk. See bench/README.md."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sd35_twin.mockserver.testing import launch  # the one launcher of tests, contracts and bench (public, HTTP-only)

from . import loadgen, report, tools
from .procs import CpuWindow, MemorySampler, ServerProcess, free_port, request, wait_for_quiet
from .tools import log

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
API_KEY = "bench-key"
# Our mock keeps a job PENDING until its N-th status poll (`--pending-polls N`); the flow polls N times.
PENDING_POLLS = 2

# The provider page's example body; bench/flow.lua and bench/pyload.py send the same bytes.
SUBMIT_BODY = {
    "prompt": "beautiful waterfall in the rainforest, anime style",
    "negative_prompt": "error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",
    "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0, "width": 1024, "height": 1024,
}
HEADERS = {"API-Key": API_KEY}

# Run WireMock as its docs recommend for performance testing: no request journal, no request logging.
WIREMOCK_FLAGS = ["--disable-banner", "--no-request-journal", "--disable-request-logging"]
# Prism logs every request at "info"; keep its console to errors so we time the mock, not the logger.
PRISM_FLAGS = ["--verboseLevel", "error"]
WIREMOCK_SCENARIO = "sd35 job"
WIREMOCK_IMAGE = "sd35-sample.jpg"


def wiremock_mappings(polls: int = PENDING_POLLS, image_file: str | None = WIREMOCK_IMAGE) -> list[dict]:
    """WireMock stubs for the client's flow, as close as WireMock gets without code.

    - submit: PENDING with a new random id (response templating), so every job is polled by its own id;
    - status: a scenario that answers PENDING to polls 1..N-1 and SUCCESS (with a download URL on WireMock
      itself) to poll N, then starts again. The scenario's state is ONE for the whole server, not one per job:
      with one connection every job sees exactly the flow; with several, the polls of different jobs share
      the count (the totals stay N-1 PENDING : 1 SUCCESS). bench/flow.lua counts the answers that differ.
    - download: /files/<anything> serves one static JPEG (the image our mock renders for the example body).
    Every API stub requires the API-Key header, as the real API does; none validates the body.
    """
    if polls < 1:
        raise ValueError("polls must be at least 1")
    key = {"API-Key": {"equalTo": API_KEY}}
    json_type = {"Content-Type": "application/json"}
    job_id = "{{request.pathSegments.[3]}}"

    def state(k: int) -> str:
        return "Started" if k == 0 else f"polled-{k}"

    mappings = [{
        "name": "sd35 submit",
        "request": {"method": "POST", "url": "/sd3_5/v1", "headers": key},
        "response": {"status": 200, "headers": json_type, "transformers": ["response-template"],
                     "body": '{"status":"PENDING","id":"{{randomValue length=32 type=\'ALPHANUMERIC\'}}"}'},
    }]
    for k in range(polls):
        final = k == polls - 1
        body = (f'{{"status":"SUCCESS","id":"{job_id}","download_urls":["{{{{request.baseUrl}}}}/files/{job_id}"]}}'
                if final else f'{{"status":"PENDING","id":"{job_id}"}}')
        mappings.append({
            "name": f"sd35 status poll {k + 1} of {polls}",
            "scenarioName": WIREMOCK_SCENARIO, "requiredScenarioState": state(k),
            "newScenarioState": state(0 if final else k + 1),
            "request": {"method": "GET", "urlPathPattern": "/sd3_5/v1/status/[^/]+", "headers": key},
            "response": {"status": 200, "headers": json_type, "transformers": ["response-template"], "body": body},
        })
    if image_file:
        mappings.append({
            "name": "sd35 download",
            "request": {"method": "GET", "urlPathPattern": "/files/[^/]+"},
            "response": {"status": 200, "headers": {"Content-Type": "image/jpeg"}, "bodyFileName": image_file},
        })
    return mappings


@dataclass
class Mode:
    name: str
    concurrencies: list[int]
    duration_s: float
    warmup_s: float
    download_concurrencies: list[int] = field(default_factory=list)
    download_duration_s: float = 5.0
    mock_thread_variants: list[int] = field(default_factory=list)
    variant_concurrencies: list[int] = field(default_factory=list)
    quiet_wait_s: float = 0.0


QUICK = Mode("quick", [1, 8], 1.0, 0.0, [1], 1.0, [], [], 0.0)
FULL = Mode("full", [1, 8, 32, 128], 10.0, 3.0, [1, 8], 5.0, [2, 8], [1, 32], 15.0)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: concurrencies 1 and 8, 1 s each, downloads at 1, no warm-up, no variants")
    ap.add_argument("--servers", default="ours,wiremock,prism",
                    help="comma-separated subset of ours,wiremock,prism (default all)")
    ap.add_argument("--concurrency", help="comma-separated connection counts (default full: 1,8,32,128)")
    ap.add_argument("--duration", type=float, help="seconds per (server, concurrency) (full 10, quick 1)")
    ap.add_argument("--warmup", type=float, help="seconds of unrecorded load before the runs (full 3, quick 0)")
    ap.add_argument("--download-concurrency", help="connection counts of the download runs (full 1,8; quick 1; "
                                                   "'' for none)")
    ap.add_argument("--download-duration", type=float, help="seconds per download run (full 5, quick 1)")
    ap.add_argument("--pending-polls", type=int, default=PENDING_POLLS,
                    help=f"status polls per job: N-1 while PENDING and the final one (default {PENDING_POLLS}); "
                         "our mock runs with --pending-polls N")
    ap.add_argument("--mock-threads", help="extra runs of our mock with --threads N, comma-separated "
                                           "(full default 2,8; '' for none)")
    ap.add_argument("--variant-concurrency", help="connection counts of those extra runs (default 1,32)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per (server, concurrency); the one least disturbed by other processes is kept")
    ap.add_argument("--quiet-wait", type=float,
                    help="before each run, wait up to this many seconds for the machine to be idle "
                         "(other processes under 0.25 cores); full 15, quick 0")
    ap.add_argument("--quiet-budget", type=float, default=90.0,
                    help="seconds of such waiting in the whole run at most (default 90)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                    help="auto: wrk if available (installed from Debian when root), else the Python one")
    ap.add_argument("--no-install", action="store_true", help="never install wrk / npm packages / matplotlib")
    ap.add_argument("--startup-timeout", type=float, default=90.0, help="seconds to wait for a first 200")
    ap.add_argument("--openapi", type=Path,
                    help="OpenAPI document for Prism (default: fetched from our mock's /openapi.json)")
    ap.add_argument("--out", type=Path, help="results directory (default bench/results/<timestamp>)")
    args = ap.parse_args(argv)
    if args.pending_polls < 1:
        ap.error("--pending-polls: must be at least 1")
    return args


def _ints(text: str | None) -> list[int]:
    return [int(x) for x in (text or "").split(",") if x.strip()]


def build_mode(args) -> Mode:
    base = QUICK if args.quick else FULL

    def pick(value, default):
        return default if value is None else value

    return Mode(
        base.name,
        _ints(args.concurrency) or list(base.concurrencies),
        pick(args.duration, base.duration_s),
        pick(args.warmup, base.warmup_s),
        _ints(args.download_concurrency) if args.download_concurrency is not None else list(base.download_concurrencies),
        pick(args.download_duration, base.download_duration_s),
        _ints(args.mock_threads) if args.mock_threads is not None else list(base.mock_thread_variants),
        _ints(args.variant_concurrency) or list(base.variant_concurrencies) or [1, 32],
        pick(args.quiet_wait, base.quiet_wait_s),
    )


# ------------------------------------------------------------------------------- the servers

def ours_args(polls: int, threads: int | None = None) -> list[str]:
    """The options of our mock under test (after `python -m mockserver --port 0`): one process, its default
    threads unless a variant asks for others."""
    args = ["--pending-polls", str(polls), "--api-key", API_KEY]
    return args + (["--threads", str(threads)] if threads else [])


class LaunchedServer(ServerProcess):
    """Our mock, started by ``mockserver.testing.launch`` (which waits for its ready line), with the same
    interface as the anchors' ``ServerProcess``: memory sampling, first-200 timing, stop, log."""

    def __init__(self, name: str, args: list[str], log_path: Path, timeout: float = 60.0):
        super().__init__(name, [sys.executable, "-m", "sd35_twin.mockserver", "--port", "0", *args], log_path)
        self.args = args
        self.timeout = timeout
        self.mock = None
        self.port: int | None = None
        self.ready_line_s: float | None = None

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.t_spawn = time.perf_counter()
        self.mock = launch(*self.args, env={"PYTHONUNBUFFERED": "1"}, cwd=str(REPO_ROOT), timeout=self.timeout)
        self.ready_line_s = time.perf_counter() - self.t_spawn
        self.proc = self.mock.process
        self.port = int(self.mock.url.rsplit(":", 1)[1].split("/")[0])
        self.sampler = MemorySampler(self.proc.pid)  # VmHWM is the kernel's peak since spawn: nothing is lost
        return self

    def log_tail(self, n: int = 2000) -> str:
        return "\n".join(self.mock.output)[-n:] if self.mock else ""

    def wait_for_log(self, needle: str, timeout: float) -> float | None:
        return self.ready_line_s

    def stop(self):
        if self.sampler:
            self.sampler.stop()
        if self.mock:
            self.mock.stop()
            self.log_path.write_text("\n".join(self.mock.output) + "\n")


def fetch_reference(out_dir: Path, polls: int, timeout: float, want_openapi: bool = True) -> dict:
    """Start our mock briefly: its /openapi.json for Prism, and the image it serves for the example body (the
    file WireMock serves for every download)."""
    found: dict = {}
    with launch(*ours_args(polls), cwd=str(REPO_ROOT), timeout=timeout) as mock:
        port = int(mock.url.rsplit(":", 1)[1])
        if want_openapi:
            ans = request(port, "GET", "/openapi.json", timeout=10)
            if ans.status != 200:
                raise RuntimeError(f"GET /openapi.json answered {ans.status}: {ans.body[:300]!r}")
            path = out_dir / "openapi.json"
            path.write_text(json.dumps(ans.json(), indent=1))
            found["openapi"] = path
        check = run_flow_once(port, polls, download=True)
        if check.get("image_bytes"):
            img = out_dir / WIREMOCK_IMAGE
            img.write_bytes(check.pop("image_bytes"))
            found["image"] = img
    return found


def make_server(name: str, kind: str, tls: tools.Tools, out_dir: Path, polls: int, openapi: Path | None,
                image: Path | None, threads: int | None = None, startup_timeout: float = 90.0):
    log_path = out_dir / "logs" / f"{name}.log"
    if kind == "ours":
        return LaunchedServer(name, ours_args(polls, threads), log_path, timeout=startup_timeout)
    port = free_port()
    if kind == "wiremock":
        root = out_dir / "wiremock"
        (root / "mappings").mkdir(parents=True, exist_ok=True)
        (root / "__files").mkdir(exist_ok=True)
        if image is not None:
            (root / "__files" / WIREMOCK_IMAGE).write_bytes(image.read_bytes())
        for i, m in enumerate(wiremock_mappings(polls, WIREMOCK_IMAGE if image is not None else None)):
            (root / "mappings" / f"sd35-{i}.json").write_text(json.dumps(m, indent=1))
        argv = [tls.java, "-jar", str(tls.wiremock_jar), "--port", str(port), "--bind-address", "127.0.0.1",
                "--root-dir", str(root), *WIREMOCK_FLAGS]
        srv = ServerProcess(name, argv, log_path)
    elif kind == "prism":
        argv = [tls.node, str(tls.prism_entry), "mock", "--host", "127.0.0.1", "--port", str(port),
                *PRISM_FLAGS, str(openapi)]
        srv = ServerProcess(name, argv, log_path, env=dict(os.environ, NODE_ENV="development"))
    else:
        raise ValueError(kind)
    srv.port = port
    srv.kind = kind
    return srv


def reset_wiremock_scenarios(port: int) -> None:
    """Every job's flow starts at WireMock's scenario state "Started": a run that ended mid-job (the warm-up,
    the previous level) would otherwise shift the next run's answers by one poll."""
    ans = request(port, "POST", "/__admin/scenarios/reset", b"", timeout=5)
    if ans.status >= 300:
        raise RuntimeError(f"WireMock scenario reset answered {ans.status}: {ans.body[:200]!r}")


def submit_probe(port_of):
    return lambda timeout=1.0: request(port_of(), "POST", "/sd3_5/v1", SUBMIT_BODY, HEADERS, timeout=timeout)


def _path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1] if "://" in url else url


def run_flow_once(port: int, polls: int, download: bool = False) -> dict:
    """The client's flow once, in Python: what a server answered at each step (and, with ``download``, its
    image: the first download and one more)."""
    out: dict = {"answers": []}
    sub = request(port, "POST", "/sd3_5/v1", SUBMIT_BODY, HEADERS)
    body = sub.json() if sub.status == 200 else {}
    out["answers"].append({"step": "submit", "http": sub.status, "status": body.get("status"),
                           "has_id": bool(body.get("id"))})
    out["submit"] = body
    job_id = body.get("id") or "bench-no-id"
    final = {}
    for k in range(polls):
        st = request(port, "GET", f"/sd3_5/v1/status/{job_id}", headers=HEADERS)
        final = st.json() if st.status == 200 else {}
        out["answers"].append({"step": f"poll {k + 1}", "http": st.status, "status": final.get("status"),
                               "download_urls": bool(final.get("download_urls"))})
    out["final"] = final
    out["status_without_key"] = request(port, "GET", f"/sd3_5/v1/status/{job_id}").status
    expected = ["PENDING"] + ["PENDING"] * (polls - 1) + ["SUCCESS"]
    out["as_the_client_expects"] = [a["status"] for a in out["answers"]] == expected
    urls = final.get("download_urls") or []
    if download and urls:
        path = _path_of(urls[0])
        first = request(port, "GET", path, timeout=60)
        again = request(port, "GET", path, timeout=60)
        ctype = first.headers.get("content-type", "")
        is_image = first.status == 200 and ctype.startswith("image/") and len(first.body) > 1000
        out["download"] = {"path": path, "http": first.status, "content_type": ctype, "bytes": len(first.body),
                           "is_image": is_image, "first_ms": round(first.seconds * 1000, 2),
                           "again_ms": round(again.seconds * 1000, 2), "identical": first.body == again.body}
        if is_image:
            out["image_bytes"] = first.body
    return out


def mock_stats(port: int) -> dict | None:
    """Our mock's own counters (jobs kept, evicted, image cache), when it serves them."""
    try:
        ans = request(port, "GET", "/__mock__/stats")
        return ans.json() if ans.status == 200 else None
    except (OSError, ValueError):
        return None


class Bench:
    """One benchmark run: the tools, the settings, where results go."""

    def __init__(self, args, mode: Mode, tls: tools.Tools, out_dir: Path):
        self.args, self.mode, self.tls, self.out_dir = args, mode, tls, out_dir
        self.polls = args.pending_polls
        self.openapi: Path | None = None
        self.image: Path | None = None
        self.noise: list[float] = []
        # Waiting for a quiet machine is capped for the whole run too, so a busy box cannot stretch it.
        self.quiet_budget_s = args.quiet_budget

    def load(self, port: int, conc: int, dur: float, mode: str, raw: Path, extra: str | None = None) -> dict:
        if self.args.loadgen_used == "wrk":
            cmd = loadgen.wrk_command(self.tls.wrk, port, conc, dur, mode, API_KEY, self.polls, extra)
        else:
            cmd = loadgen.pyload_command(port, conc, dur, mode, API_KEY, self.polls, extra)
        return loadgen.run_load(cmd, raw, cwd=str(REPO_ROOT))

    def measured(self, srv, name: str, label: str, conc: int, dur: float, mode: str,
                 extra: str | None = None) -> dict:
        """One recorded run (the least disturbed of --repeat), with CPU accounting and the quiet wait."""
        attempts = []
        for attempt in range(max(1, self.args.repeat)):
            wait = min(self.mode.quiet_wait_s, self.quiet_budget_s)
            waited, background = wait_for_quiet(wait, report.NOISY_CORES) if wait > 0 else (0.0, None)
            self.quiet_budget_s = max(0.0, self.quiet_budget_s - waited)
            if getattr(srv, "kind", None) == "wiremock":
                reset_wiremock_scenarios(srv.port)
            window = CpuWindow(srv.proc.pid)
            suffix = f"-{attempt + 1}" if self.args.repeat > 1 else ""
            try:
                run = self.load(srv.port, conc, dur, mode, self.out_dir / "raw" / f"{name}-{label}-c{conc}{suffix}.txt",
                                extra)
                run.update(concurrency=conc, ok=True, loadgen=self.args.loadgen_used, workload=label)
                run["cpu"] = window.close()
            except Exception as exc:  # keep the other levels
                run = {"concurrency": conc, "workload": label, "ok": False, "failure": str(exc)[:500],
                       "requests": 0, "rps": 0.0, "latency_ms": {}, "errors": {}, "error_count": 0}
            run["quiet_wait_s"], run["background_cores_before"] = round(waited, 1), background
            attempts.append(run)
        run = min(attempts, key=lambda r: (not r.get("ok", True), (r.get("cpu") or {}).get("other_cores", 0.0)))
        if len(attempts) > 1:
            run["attempts"] = [{"rps": a["rps"], "p99": (a.get("latency_ms") or {}).get("p99"),
                                "other_cores": (a.get("cpu") or {}).get("other_cores")} for a in attempts]
        if (run.get("cpu") or {}).get("other_cores") is not None:
            self.noise.append(run["cpu"]["other_cores"])
        run["rss_after_mb"] = srv.sampler.current_rss_mb()
        run["alive_after"] = srv.alive()
        log(f"{name}: {label} c={conc}: {report.run_summary(run)}")
        if not srv.alive():
            raise RuntimeError(f"{name} died during the {label} c={conc} run: {srv.log_tail()}")
        return run

    def server(self, name: str, kind: str, concurrencies: list[int], threads: int | None = None,
               downloads: bool = False) -> dict:
        srv = make_server(name, kind, self.tls, self.out_dir, self.polls, self.openapi, self.image, threads,
                          self.args.startup_timeout)
        result = {"kind": kind, "command": srv.argv, "threads": threads, "startup_s": None, "ready_line_s": None,
                  "peak_rss_mb": None, "peak_pss_mb": None, "runs": [], "downloads": [], "skipped": None}
        log(f"{name}: starting: {' '.join(srv.argv)}")
        try:
            srv.start()
            result["port"] = srv.port
            result["startup_s"] = srv.wait_first_ok(submit_probe(lambda: srv.port), self.args.startup_timeout)
            if kind == "ours":
                result["ready_line_s"] = srv.ready_line_s
            result["rss_after_start_mb"] = srv.sampler.current_rss_mb()
            check = run_flow_once(srv.port, self.polls, download=downloads)
            check.pop("image_bytes", None)
            result["flow_check"] = check
            log(f"{name}: first 200 after {result['startup_s']:.2f}s; one flow: "
                f"{' '.join(str(a['status']) for a in check['answers'])}")
            if self.mode.warmup_s > 0:
                self.load(srv.port, 8, self.mode.warmup_s, "flow", self.out_dir / "raw" / f"{name}-warmup.txt")
            for conc in concurrencies:
                run = self.measured(srv, name, "flow", conc, self.mode.duration_s, "flow")
                if kind == "ours":
                    run["mock_stats"] = mock_stats(srv.port)
                result["runs"].append(run)
            srv.sampler.sample(pss=True)
            result["peak_rss_mb"] = srv.sampler.peak_mb  # before any download: the API's load only
            result["peak_pss_mb"] = srv.sampler.peak_pss_mb
            if downloads and self.mode.download_concurrencies:
                result["downloads"], result["downloads_skipped"] = self.downloads(srv, name, kind, check)
                result["peak_rss_mb_with_downloads"] = srv.sampler.peak_mb
                if kind == "ours":
                    result["mock_stats_after_downloads"] = mock_stats(srv.port)
            result["rss_samples_mb"] = [(round(t, 2), round(kb / 1024, 1)) for t, kb in srv.sampler.rss_samples[::10]]
        except Exception as exc:
            result["skipped"] = f"failed: {exc}"[:800]
            log(f"{name}: {result['skipped']}")
        finally:
            srv.stop()
            if result["peak_rss_mb"] is None and srv.sampler:
                result["peak_rss_mb"] = srv.sampler.peak_mb
                result["peak_pss_mb"] = srv.sampler.peak_pss_mb
            result["log"] = str(srv.log_path)
            result["exit_code"] = srv.proc.returncode if srv.proc else None
        return result

    def downloads(self, srv, name: str, kind: str, check: dict) -> tuple[list[dict], str | None]:
        """First render (a new image per job, in the flow) for ours; the same image again for any server that
        served an image in the flow check."""
        probe = check.get("download") or {}
        if not probe.get("is_image"):
            why = (f"its download URL answered HTTP {probe.get('http')} {probe.get('content_type')!r}, "
                   f"{probe.get('bytes')} bytes: not an image") if probe else "its final answer has no download URL"
            log(f"{name}: downloads skipped: {why}")
            return [], why
        runs = []
        for conc in self.mode.download_concurrencies:
            if kind == "ours":  # only a server that renders has a "first" download
                runs.append(self.measured(srv, name, "download-first", conc, self.mode.download_duration_s,
                                          "download", "0"))
            # A job of its own, just made and downloaded once: the flow check's job is long evicted from our
            # mock's bounded job store by now (its URL would answer 404), and this image is surely cached.
            fresh = run_flow_once(srv.port, self.polls, download=True).get("download") or probe
            runs.append(self.measured(srv, name, "download-cached", conc, self.mode.download_duration_s,
                                      "cached", fresh["path"]))
        return runs, None


def main(argv=None) -> int:
    args = parse_args(argv)
    mode = build_mode(args)
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

    bench = Bench(args, mode, tls, out_dir)
    reference_problem = None
    if need_anchors:
        try:
            ref = fetch_reference(out_dir, bench.polls, args.startup_timeout, want_openapi=not args.openapi)
            bench.openapi = args.openapi.resolve() if args.openapi else ref.get("openapi")
            bench.image = ref.get("image")
        except Exception as exc:
            reference_problem = f"could not fetch our /openapi.json and image: {exc}"
            bench.openapi = args.openapi.resolve() if args.openapi else None

    servers: dict[str, dict] = {}
    variants = []
    for name in wanted:
        if name == "ours":
            servers["ours"] = bench.server("ours", "ours", mode.concurrencies, downloads=True)
            for n in mode.mock_thread_variants:
                vname = f"ours-t{n}"
                variants.append(vname)
                time.sleep(0.5)
                servers[vname] = bench.server(vname, "ours", mode.variant_concurrencies, threads=n)
        elif name in tls.problems:
            servers[name] = _skipped(name, tls.problems[name])
        elif name == "prism" and bench.openapi is None:
            servers[name] = _skipped(name, reference_problem or "no OpenAPI document")
        else:
            servers[name] = bench.server(name, name, mode.concurrencies, downloads=True)
        time.sleep(0.5)  # let the box settle between servers

    meta = {
        "timestamp": stamp, "mode": mode.name, "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": sys.version.split()[0], "tools": tls.describe(), "wall_s": None,
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "noise_other_cores": report.noise_summary(bench.noise),
    }
    settings = {
        "concurrencies": mode.concurrencies, "duration_s": mode.duration_s, "warmup_s": mode.warmup_s,
        "download_concurrencies": mode.download_concurrencies, "download_duration_s": mode.download_duration_s,
        "loadgen": args.loadgen_used, "pending_polls": bench.polls,
        "flow": f"per connection: 1 submit, {bench.polls} status polls ({bench.polls - 1} while PENDING, "
                "1 final), then the next job",
        "wrk": "one connection per wrk thread (-tN -cN), bench/flow.lua",
        "target_concurrency": report.TARGET_CONCURRENCY, "api_key": API_KEY,
        "mock_thread_variants": mode.mock_thread_variants, "variant_concurrencies": mode.variant_concurrencies,
        "repeat": args.repeat, "quiet_wait_s": mode.quiet_wait_s, "quiet_budget_s": args.quiet_budget,
        "quiet_waited_s": round(args.quiet_budget - bench.quiet_budget_s, 1), "noisy_cores": report.NOISY_CORES,
        "ours_args": ours_args(bench.polls), "wiremock_flags": WIREMOCK_FLAGS, "prism_flags": PRISM_FLAGS,
        "openapi": str(bench.openapi) if bench.openapi else None,
        "startup": "seconds from spawn until the first HTTP 200 to a valid POST /sd3_5/v1",
        "peak_rss": "VmHWM of the server process (tree), from spawn to the end of its flow runs",
        "peak_pss": "highest sampled sum of PSS over the tree, same span",
    }
    meta["wall_s"] = round(time.perf_counter() - t_start, 1)
    doc = report.build_results(meta, settings, servers, variants)
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


def _skipped(name: str, why: str) -> dict:
    log(f"{name}: skipped: {why}")
    return {"kind": name, "command": None, "startup_s": None, "peak_rss_mb": None, "runs": [], "downloads": [],
            "skipped": why}
