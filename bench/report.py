"""Pure parts of the benchmark: ratios, target checks, the results document, the table, the plot.

Nothing here starts a process or opens a socket, so tests/test_bench_smoke.py can exercise it in CI.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

SCHEMA = "sd35-bench/2"
ANCHORS = ("wiremock", "prism")
PRIMARY = "ours"
TAGS = ("submit", "status")
# "well below" for start-up and memory: at most this share of the anchor's figure.
WELL_BELOW = 0.5
# A run is flagged as noisy when other processes used more CPU than this (in cores) during it.
NOISY_CORES = 0.25
TARGET_CONCURRENCY = 32
# The issue's throughput targets for one process: (metric, connections, at least this share of Prism's).
TARGETS = (("submit_rps", 1, 1.0), ("status_rps", 1, 1.0), ("submit_rps", TARGET_CONCURRENCY, 0.6))
FLOW_METRICS = ("rps", "submit_rps", "status_rps", "p99", "submit_p99", "status_p99")
DOWNLOAD_METRICS = ("cached_rps", "cached_p99")
LABELS = {"rps": "all req/s", "submit_rps": "submit req/s", "status_rps": "status req/s", "p99": "all p99",
          "submit_p99": "submit p99", "status_p99": "status p99", "cached_rps": "cached dl req/s",
          "cached_p99": "cached dl p99"}


def _ratio(ours, anchor):
    if ours is None or anchor is None:
        return None
    if anchor == 0:
        return None  # not a number we can state (and JSON has no infinity)
    return ours / anchor


def _ok(runs) -> list[dict]:
    return [r for r in runs or [] if r.get("ok", True)]


def _runs_by_conc(server: dict) -> dict[int, dict]:
    return {int(r["concurrency"]): r for r in _ok(server.get("runs"))}


def _downloads_by_conc(server: dict, workload: str) -> dict[int, dict]:
    return {int(r["concurrency"]): r for r in _ok(server.get("downloads")) if r.get("workload") == workload}


def p99_ms(run: dict | None):
    return None if run is None else (run.get("latency_ms") or {}).get("p99")


def tag(run: dict | None, name: str) -> dict:
    return ((run or {}).get("tags") or {}).get(name) or {}


def metric(run: dict | None, name: str):
    """A number of one run: rps / p99 of all requests, or <tag>_rps / <tag>_p99 of one endpoint's requests."""
    if run is None:
        return None
    if name == "rps":
        return run.get("rps")
    if name == "p99":
        return p99_ms(run)
    what, _, kind = name.rpartition("_")
    t = tag(run, {"cached": "download_cached", "first": "download_first"}.get(what, what))
    if not t:
        return None
    return t.get("rps") if kind == "rps" else (t.get("latency_ms") or {}).get("p99")


def compute_ratios(servers: dict, ours: str = PRIMARY, anchors=ANCHORS) -> dict:
    """ours / anchor per metric and concurrency (flow: all, submit, status req/s and p99; downloads of the same
    image again), start-up and peak memory. req/s: above 1 is better for us; p99, start-up, memory: below 1.
    Returns {"vs_<anchor>": {"submit_rps": {"32": r, ...}, ..., "startup": r, "peak_rss": r}}; an anchor that
    was skipped or failed gives no entry."""
    out = {}
    mine = servers.get(ours)
    if not mine or mine.get("skipped"):
        return out
    my_runs, my_dl = _runs_by_conc(mine), _downloads_by_conc(mine, "download-cached")
    for anchor in anchors:
        theirs = servers.get(anchor)
        if not theirs or theirs.get("skipped"):
            continue
        their_runs, their_dl = _runs_by_conc(theirs), _downloads_by_conc(theirs, "download-cached")
        concs = sorted(set(my_runs) & set(their_runs))
        entry = {m: {str(c): _ratio(metric(my_runs[c], m), metric(their_runs[c], m)) for c in concs}
                 for m in FLOW_METRICS}
        dl_concs = sorted(set(my_dl) & set(their_dl))
        for m in DOWNLOAD_METRICS:
            entry[m] = {str(c): _ratio(metric(my_dl[c], m), metric(their_dl[c], m)) for c in dl_concs}
        entry.update(
            startup=_ratio(mine.get("startup_s"), theirs.get("startup_s")),
            peak_rss=_ratio(mine.get("peak_rss_mb"), theirs.get("peak_rss_mb")),
            peak_pss=_ratio(mine.get("peak_pss_mb"), theirs.get("peak_pss_mb")),
        )
        out[f"vs_{anchor}"] = entry
    return out


def check_targets(ratios: dict) -> list[dict]:
    """The issue's targets, each {"target", "value", "met"} (met None when not measurable)."""
    checks = []

    def add(name, value, ok):
        checks.append({"target": name, "value": value, "met": None if value is None else ok(value)})

    vp, vw = ratios.get("vs_prism"), ratios.get("vs_wiremock")
    for name, conc, share in TARGETS:
        value = None if vp is None else vp[name].get(str(conc))
        add(f"{LABELS[name]} @{conc} >= {share:g}x Prism", value, lambda v, s=share: v >= s)
    for anchor, v in (("WireMock", vw), ("Prism", vp)):
        if v is not None:
            add(f"start-up <= {WELL_BELOW}x {anchor}", v.get("startup"), lambda x: x <= WELL_BELOW)
            add(f"peak RSS <= {WELL_BELOW}x {anchor}", v.get("peak_rss"), lambda x: x <= WELL_BELOW)
    return checks


def noise_summary(other_cores: list[float]) -> dict:
    """CPU used by other processes on the machine during the recorded runs, in cores."""
    values = [v for v in other_cores if v is not None]
    return {"runs": len(values), "mean": round(statistics.fmean(values), 3) if values else None,
            "max": max(values) if values else None, "noisy_runs": sum(v > NOISY_CORES for v in values),
            "threshold": NOISY_CORES}


def build_results(meta: dict, settings: dict, servers: dict, ours_variants: list[str] | None = None) -> dict:
    """The results.json document."""
    ratios = compute_ratios(servers)
    variants = {v: compute_ratios(servers, ours=v) for v in (ours_variants or []) if v in servers}
    return {
        "schema": SCHEMA,
        "meta": meta,
        "settings": settings,
        "servers": servers,
        "ratios": ratios,
        "variant_ratios": variants,
        "targets": check_targets(ratios),
        "collapses": detect_collapses(servers),
    }


def detect_collapses(servers: dict, share: float = 0.3, busy_cores: float = 0.8) -> list[dict]:
    """Runs where a server stayed busy (CPU >= busy_cores) but served under `share` of its own best
    req/s at a lower concurrency: more offered load, far less work done - a throughput collapse."""
    found = []
    for name, srv in servers.items():
        runs = _ok(srv.get("runs"))
        for run in runs:
            others = [r["rps"] for r in runs if r["concurrency"] < run["concurrency"]]
            best = max(others, default=0.0)
            cpu = (run.get("cpu") or {}).get("server_cores")
            if best and run["rps"] < share * best and cpu is not None and cpu >= busy_cores:
                found.append({"server": name, "concurrency": run["concurrency"], "rps": run["rps"],
                              "best_rps": best, "server_cores": cpu})
    return found


REQUIRED_SERVER_KEYS = ("kind", "command", "startup_s", "peak_rss_mb", "runs", "downloads", "skipped")
REQUIRED_RUN_KEYS = ("concurrency", "requests", "rps", "latency_ms", "errors", "error_count")


def validate_results(doc: dict) -> list[str]:
    """Problems with the shape of a results document (empty when fine)."""
    problems = []
    for key in ("schema", "meta", "settings", "servers", "ratios", "targets"):
        if key not in doc:
            problems.append(f"missing top-level key {key!r}")
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for name, srv in (doc.get("servers") or {}).items():
        for key in REQUIRED_SERVER_KEYS:
            if key not in srv:
                problems.append(f"server {name}: missing {key!r}")
        for run in (srv.get("runs") or []) + (srv.get("downloads") or []):
            for key in REQUIRED_RUN_KEYS:
                if key not in run:
                    problems.append(f"server {name} run: missing {key!r}")
            if not run.get("ok", True):
                continue
            if not {"p50", "p99"} <= set(run.get("latency_ms") or {}):
                problems.append(f"server {name} c={run.get('concurrency')}: latency_ms lacks p50/p99")
        for run in _ok(srv.get("runs")):
            if not set(TAGS) <= set(run.get("tags") or {}):
                problems.append(f"server {name} c={run.get('concurrency')}: no submit/status tags")
    return problems


# ---------------------------------------------------------------------------------------- text

def _fmt(v, spec=".1f", none="-"):
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def _x(v):
    return "-" if v is None else ("inf" if math.isinf(v) else f"{v:.2f}x")


def _pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def run_summary(run: dict) -> str:
    """One line for the progress log."""
    if not run.get("ok", True):
        return f"failed: {run.get('failure')}"
    cpu = run.get("cpu") or {}
    parts = [f"{run['rps']:.0f} req/s"]
    for name, t in (run.get("tags") or {}).items():
        lat = t.get("latency_ms") or {}
        parts.append(f"{name} {t['rps']:.0f}/s p50 {_fmt(lat.get('p50'), '.2f')} p99 {_fmt(lat.get('p99'), '.2f')} ms")
    parts.append(f"errors {run['error_count']}")
    flow = run.get("flow") or {}
    if flow.get("image_not_image"):
        parts.append(f"NOT AN IMAGE {flow['image_not_image']} of {flow['image_not_image'] + flow.get('image_ok', 0)}")
    if run.get("flow_fidelity") is not None and run.get("workload") == "flow":
        parts.append(f"flow ok {_pct(run['flow_fidelity'])}")
    parts.append(f"CPU server {cpu.get('server_cores')} wrk {cpu.get('loadgen_cores')} others {cpu.get('other_cores')}")
    return "; ".join(parts)


def format_table(doc: dict) -> str:
    servers = doc["servers"]
    settings = doc.get("settings") or {}
    lines = [f"flow: {settings.get('flow', 'submit, then status polls')}; latencies in ms; "
             "'flow ok': answers as the client's flow expects them"]
    lines.append(f"{'server':<11}{'conc':>5}{'all/s':>8}{'submit/s':>9}{'p50':>7}{'p99':>7}{'status/s':>9}"
                 f"{'p50':>7}{'p99':>7}{'err':>6}{'flow ok':>8}{'RSS MB':>7}{'CPU srv':>8}{'wrk':>5}{'other':>6}")
    noisy = []
    for name, srv in servers.items():
        if srv.get("skipped"):
            lines.append(f"{name:<11}  skipped: {srv['skipped']}")
            continue
        for run in srv.get("runs") or []:
            if not run.get("ok", True):
                lines.append(f"{name:<11}{run['concurrency']:>5}  failed: {run.get('failure', '?')}")
                continue
            cpu = run.get("cpu") or {}
            sub, st = tag(run, "submit"), tag(run, "status")
            sl, tl = sub.get("latency_ms") or {}, st.get("latency_ms") or {}
            lines.append(f"{name:<11}{run['concurrency']:>5}{_fmt(run['rps'], '.0f'):>8}{_fmt(sub.get('rps'), '.0f'):>9}"
                         f"{_fmt(sl.get('p50'), '.2f'):>7}{_fmt(sl.get('p99'), '.2f'):>7}{_fmt(st.get('rps'), '.0f'):>9}"
                         f"{_fmt(tl.get('p50'), '.2f'):>7}{_fmt(tl.get('p99'), '.2f'):>7}{run['error_count']:>6}"
                         f"{_pct(run.get('flow_fidelity')):>8}{_fmt(run.get('rss_after_mb'), '.0f'):>7}"
                         f"{_fmt(cpu.get('server_cores'), '.2f'):>8}{_fmt(cpu.get('loadgen_cores'), '.2f'):>5}"
                         f"{_fmt(cpu.get('other_cores'), '.2f'):>6}")
            if (cpu.get("other_cores") or 0) > NOISY_CORES:
                noisy.append(f"{name}@{run['concurrency']}")
    for c in doc.get("collapses") or []:
        lines.append(f"COLLAPSE: {c['server']}@{c['concurrency']}: {c['rps']:.0f} req/s while the server used "
                     f"{c['server_cores']:.2f} cores (its best at fewer connections: {c['best_rps']:.0f} req/s)")

    lines.append("")
    lines.append("what one flow got (Python, one connection): submit, then each poll")
    for name, srv in servers.items():
        check = srv.get("flow_check")
        if check:
            steps = " -> ".join(f"{a.get('status') or a.get('http')}" for a in check.get("answers") or [])
            lines.append(f"  {name:<11}{steps}{'' if check.get('as_the_client_expects') else '   (not the real flow)'}")

    dl_lines = []
    for name, srv in servers.items():
        for run in srv.get("downloads") or []:
            kind = "first" if run.get("workload") == "download-first" else "cached"
            if not run.get("ok", True):
                dl_lines.append(f"  {name:<11}{kind:<8}{run['concurrency']:>5}  failed: {run.get('failure', '?')}")
                continue
            t = tag(run, "download_" + kind)
            lat = t.get("latency_ms") or {}
            cpu = run.get("cpu") or {}
            if (cpu.get("other_cores") or 0) > NOISY_CORES:
                noisy.append(f"{name}@{run['concurrency']} ({kind} downloads)")
            dl_lines.append(f"  {name:<11}{kind:<8}{run['concurrency']:>5}{_fmt(t.get('rps'), '.0f'):>9}"
                            f"{_fmt(lat.get('p50'), '.2f'):>9}{_fmt(lat.get('p99'), '.2f'):>9}{run['error_count']:>6}"
                            f"{_fmt(cpu.get('other_cores'), '.2f'):>8}")
        if srv.get("downloads_skipped"):
            dl_lines.append(f"  {name:<11}skipped: {srv['downloads_skipped']}")
    if dl_lines:
        lines.append("")
        lines.append("downloads (first: a new image, rendered, in the flow; cached: the same image again)")
        lines.append(f"  {'server':<11}{'kind':<8}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'err':>6}{'other':>8}")
        lines.extend(dl_lines)

    lines.append("")
    lines.append(f"{'server':<11}{'start-up s':>11}{'peak RSS MB':>13}{'peak PSS MB':>13}{'+downloads':>12}  command")
    for name, srv in servers.items():
        if srv.get("skipped"):
            continue
        cmd = " ".join(srv.get("command") or [])
        lines.append(f"{name:<11}{_fmt(srv.get('startup_s'), '.2f'):>11}{_fmt(srv.get('peak_rss_mb'), '.0f'):>13}"
                     f"{_fmt(srv.get('peak_pss_mb'), '.0f'):>13}{_fmt(srv.get('peak_rss_mb_with_downloads'), '.0f'):>12}"
                     f"  {cmd[:100]}")

    ratios = doc.get("ratios") or {}
    if ratios:
        cols = list(ratios)
        lines.append("")
        lines.append("ours / anchor (req/s: higher is better; p99, start-up, memory: lower is better)")
        lines.append(f"{'':<22}" + "".join(f"{c.replace('vs_', 'vs '):>14}" for c in cols))
        for m in FLOW_METRICS + DOWNLOAD_METRICS:
            concs = sorted({int(k) for c in cols for k in ratios[c].get(m, {})})
            for conc in concs:
                label = f"{LABELS[m]} @{conc}"
                lines.append(f"{label:<22}" + "".join(f"{_x(ratios[c][m].get(str(conc))):>14}" for c in cols))
        for m, label in (("startup", "start-up"), ("peak_rss", "peak RSS"), ("peak_pss", "peak PSS")):
            lines.append(f"{label:<22}" + "".join(f"{_x(ratios[c].get(m)):>14}" for c in cols))
    variants = doc.get("variant_ratios") or {}
    if variants:
        lines.append("")
        lines.append("our variants: submit and status req/s as ours/anchor")
        for name, r in variants.items():
            for anchor, v in r.items():
                parts = [f"@{c}: submit {_x(v['submit_rps'].get(c))} status {_x(v['status_rps'].get(c))}"
                         for c in v["submit_rps"]]
                lines.append(f"  {name:<10}{anchor.replace('vs_', 'vs '):<12}" + "; ".join(parts))
    targets = doc.get("targets") or []
    if targets:
        lines.append("")
        lines.append("targets")
        for t in targets:
            mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            lines.append(f"  {mark:<7}{t['target']:<40}{_x(t['value'])}")
    noise = (doc.get("meta") or {}).get("noise_other_cores")
    if noise and noise.get("runs"):
        lines.append("")
        lines.append(f"other processes during the recorded runs: mean {noise['mean']:.2f} cores, max {noise['max']:.2f}; "
                     f"{noise['noisy_runs']} of {noise['runs']} runs above {noise['threshold']} cores")
    if noisy:
        lines.append(f"NOISY: other processes used more than {NOISY_CORES} cores during: {', '.join(noisy)} "
                     "(compare those with care, or rerun on a quiet machine)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- plot

def plot(doc: dict, path: Path) -> Path | None:
    """Submit and status req/s and p99 against concurrency, one line per server. Returns the path, or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    panels = (("submit_rps", "submit: requests / s (log)"), ("status_rps", "status: requests / s (log)"),
              ("submit_p99", "submit: p99 ms (log)"), ("status_p99", "status: p99 ms (log)"))
    for ax, (m, title) in zip(axes.flat, panels):
        for name, srv in doc["servers"].items():
            runs = _ok(srv.get("runs"))
            if srv.get("skipped") or not runs:
                continue
            points = [(r["concurrency"], metric(r, m)) for r in runs if metric(r, m)]
            if not points:
                continue
            style = "-" if name in (PRIMARY, *ANCHORS) else ":"
            ax.plot([c for c, _ in points], [v for _, v in points], style, marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency (connections)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    meta, settings = doc.get("meta", {}), doc.get("settings", {})
    fig.suptitle(f"sd35 mock vs WireMock vs Prism, the client's flow ({settings.get('pending_polls', '?')} polls per job) - "
                 f"{meta.get('mode', '')} run {meta.get('timestamp', '')}, {meta.get('cpus', '?')} CPUs, "
                 f"load: {settings.get('loadgen', '?')}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
