"""Pure parts of the benchmark: ratios, target checks, the results document, the table, the plot.

Nothing here starts a process or opens a socket, so tests/test_bench_smoke.py can exercise it in CI.
"""

from __future__ import annotations

import math
from pathlib import Path

SCHEMA = "sd35-bench/1"
ANCHORS = ("wiremock", "prism")
PRIMARY = "ours"
# "well below" for start-up and memory: at most this share of the anchor's figure.
WELL_BELOW = 0.5
# A run is flagged as noisy when other processes used more CPU than this (in cores) during it.
NOISY_CORES = 0.25


def _ratio(ours, anchor):
    if ours is None or anchor is None:
        return None
    if anchor == 0:
        return None  # not a number we can state (and JSON has no infinity)
    return ours / anchor


def _runs_by_conc(server: dict) -> dict[int, dict]:
    return {int(r["concurrency"]): r for r in server.get("runs") or [] if r.get("ok", True)}


def p99_ms(run: dict | None):
    return None if run is None else (run.get("latency_ms") or {}).get("p99")


def compute_ratios(servers: dict, ours: str = PRIMARY, anchors=ANCHORS) -> dict:
    """ours / anchor for rps and p99 at each concurrency, start-up and peak RSS.

    rps: above 1 is better for us; p99, start-up and memory: below 1 is better for us.
    Returns {"vs_<anchor>": {"rps": {"32": r, ...}, "p99": {...}, "startup": r, "peak_rss": r}}.
    Missing anchors (skipped or failed) give no entry.
    """
    out = {}
    mine = servers.get(ours)
    if not mine or mine.get("skipped"):
        return out
    my_runs = _runs_by_conc(mine)
    for anchor in anchors:
        theirs = servers.get(anchor)
        if not theirs or theirs.get("skipped"):
            continue
        their_runs = _runs_by_conc(theirs)
        concs = sorted(set(my_runs) & set(their_runs))
        out[f"vs_{anchor}"] = {
            "rps": {str(c): _ratio(my_runs[c]["rps"], their_runs[c]["rps"]) for c in concs},
            "p99": {str(c): _ratio(p99_ms(my_runs[c]), p99_ms(their_runs[c])) for c in concs},
            "startup": _ratio(mine.get("startup_s"), theirs.get("startup_s")),
            "peak_rss": _ratio(mine.get("peak_rss_mb"), theirs.get("peak_rss_mb")),
            "peak_pss": _ratio(mine.get("peak_pss_mb"), theirs.get("peak_pss_mb")),
        }
    return out


def check_targets(ratios: dict, target_concurrency: int = 32) -> list[dict]:
    """The issue's targets, each {"target", "value", "met"} (met None when not measurable)."""
    c = str(target_concurrency)
    checks = []

    def add(name, value, ok):
        checks.append({"target": name, "value": value, "met": None if value is None else ok(value)})

    vp, vw = ratios.get("vs_prism"), ratios.get("vs_wiremock")
    if vp is not None:
        add(f"rps@{c} >= 1.0x Prism", vp["rps"].get(c), lambda v: v >= 1.0)
        for conc, v in sorted(vp["p99"].items(), key=lambda kv: int(kv[0])):
            add(f"p99@{conc} <= Prism", v, lambda v: v <= 1.0)
    if vw is not None:
        add(f"rps@{c} vs WireMock (as close to 1.0x as possible)", vw["rps"].get(c), lambda v: v >= 1.0)
    for anchor, v in (("WireMock", vw), ("Prism", vp)):
        if v is not None:
            add(f"start-up <= {WELL_BELOW}x {anchor}", v.get("startup"), lambda x: x <= WELL_BELOW)
            add(f"peak RSS <= {WELL_BELOW}x {anchor}", v.get("peak_rss"), lambda x: x <= WELL_BELOW)
            if v.get("peak_pss") is not None:
                add(f"peak PSS <= {WELL_BELOW}x {anchor}", v.get("peak_pss"), lambda x: x <= WELL_BELOW)
    return checks


def build_results(meta: dict, settings: dict, servers: dict, image: dict | None,
                  ours_variants: list[str] | None = None) -> dict:
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
        "targets": check_targets(ratios, settings.get("target_concurrency", 32)),
        "collapses": detect_collapses(servers),
        "image": image,
    }


def detect_collapses(servers: dict, share: float = 0.3, busy_cores: float = 0.8) -> list[dict]:
    """Runs where a server stayed busy (CPU >= busy_cores) but served under `share` of its own best
    req/s at a lower concurrency: more offered load, far less work done - a throughput collapse."""
    found = []
    for name, srv in servers.items():
        runs = [r for r in srv.get("runs") or [] if r.get("ok", True)]
        for run in runs:
            others = [r["rps"] for r in runs if r["concurrency"] < run["concurrency"]]
            best = max(others, default=0.0)
            cpu = (run.get("cpu") or {}).get("server_cores")
            if best and run["rps"] < share * best and cpu is not None and cpu >= busy_cores:
                found.append({"server": name, "concurrency": run["concurrency"], "rps": run["rps"],
                              "best_rps": best, "server_cores": cpu})
    return found


REQUIRED_SERVER_KEYS = ("kind", "command", "startup_s", "peak_rss_mb", "runs", "skipped")
REQUIRED_RUN_KEYS = ("concurrency", "requests", "rps", "latency_ms", "errors", "error_count")


def validate_results(doc: dict) -> list[str]:
    """Problems with the shape of a results document (empty when fine)."""
    problems = []
    for key in ("schema", "meta", "settings", "servers", "ratios", "targets", "image"):
        if key not in doc:
            problems.append(f"missing top-level key {key!r}")
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for name, srv in (doc.get("servers") or {}).items():
        for key in REQUIRED_SERVER_KEYS:
            if key not in srv:
                problems.append(f"server {name}: missing {key!r}")
        for run in srv.get("runs") or []:
            for key in REQUIRED_RUN_KEYS:
                if key not in run:
                    problems.append(f"server {name} run: missing {key!r}")
            lat = run.get("latency_ms") or {}
            if run.get("ok", True) and not {"p50", "p99"} <= set(lat):
                problems.append(f"server {name} c={run.get('concurrency')}: latency_ms lacks p50/p99")
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


def format_table(doc: dict) -> str:
    servers = doc["servers"]
    lines = []
    lines.append(f"{'server':<14}{'conc':>6}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
                 f"{'errors':>8}{'RSS MB':>8}{'CPU srv':>9}{'CPU wrk':>9}{'CPU other':>10}")
    noisy = []
    for name, srv in servers.items():
        if srv.get("skipped"):
            lines.append(f"{name:<14}  skipped: {srv['skipped']}")
            continue
        for run in srv.get("runs") or []:
            lat = run.get("latency_ms") or {}
            cpu = run.get("cpu") or {}
            if not run.get("ok", True):
                lines.append(f"{name:<14}{run['concurrency']:>6}  failed: {run.get('failure', '?')}")
                continue
            lines.append(f"{name:<14}{run['concurrency']:>6}{_fmt(run['rps'], '.0f'):>11}"
                         f"{_fmt(lat.get('p50'), '.2f'):>9}{_fmt(lat.get('p99'), '.2f'):>9}"
                         f"{_fmt(lat.get('max'), '.1f'):>9}{run['error_count']:>8}"
                         f"{_fmt(run.get('rss_after_mb'), '.0f'):>8}"
                         f"{_fmt(cpu.get('server_cores'), '.2f'):>9}{_fmt(cpu.get('loadgen_cores'), '.2f'):>9}"
                         f"{_fmt(cpu.get('other_cores'), '.2f'):>10}")
            if (cpu.get("other_cores") or 0) > NOISY_CORES:
                noisy.append(f"{name}@{run['concurrency']}")
    for c in doc.get("collapses") or []:
        lines.append(f"COLLAPSE: {c['server']}@{c['concurrency']}: {c['rps']:.0f} req/s while the server used "
                     f"{c['server_cores']:.2f} cores (its best at fewer connections: {c['best_rps']:.0f} req/s)")
    if noisy:
        lines.append(f"NOISY: other processes used more than {NOISY_CORES} cores during: {', '.join(noisy)} "
                     "(compare those with care, or rerun on a quiet machine)")
    lines.append("")
    lines.append(f"{'server':<14}{'start-up s':>11}{'peak RSS MB':>13}{'peak PSS MB':>13}  command")
    for name, srv in servers.items():
        if srv.get("skipped"):
            continue
        cmd = " ".join(srv.get("command") or [])
        lines.append(f"{name:<14}{_fmt(srv.get('startup_s'), '.2f'):>11}{_fmt(srv.get('peak_rss_mb'), '.0f'):>13}"
                     f"{_fmt(srv.get('peak_pss_mb'), '.0f'):>13}  {cmd[:90]}")
    ratios = doc.get("ratios") or {}
    if ratios:
        cols = list(ratios)
        lines.append("")
        lines.append("ours / anchor (req/s: higher is better; p99, start-up, memory: lower is better)")
        lines.append(f"{'':<16}" + "".join(f"{c.replace('vs_', 'vs '):>14}" for c in cols))
        concs = sorted({int(k) for c in cols for k in ratios[c]["rps"]})
        for metric in ("rps", "p99"):
            for conc in concs:
                label = f"{'req/s' if metric == 'rps' else 'p99'} @{conc}"
                lines.append(f"{label:<16}" + "".join(f"{_x(ratios[c][metric].get(str(conc))):>14}" for c in cols))
        for metric, label in (("startup", "start-up"), ("peak_rss", "peak RSS"), ("peak_pss", "peak PSS")):
            lines.append(f"{label:<16}" + "".join(f"{_x(ratios[c].get(metric)):>14}" for c in cols))
    variants = doc.get("variant_ratios") or {}
    if variants:
        tc = str(doc.get("settings", {}).get("target_concurrency", 32))
        lines.append("")
        lines.append(f"our variants at c={tc}: req/s and p99 as ours/anchor")
        for name, r in variants.items():
            parts = [f"{a.replace('vs_', '')}: rps {_x(v['rps'].get(tc))}, p99 {_x(v['p99'].get(tc))}"
                     for a, v in r.items()]
            lines.append(f"  {name:<14}" + "; ".join(parts))
    targets = doc.get("targets") or []
    if targets:
        lines.append("")
        lines.append("targets")
        for t in targets:
            mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            lines.append(f"  {mark:<7}{t['target']:<52}{_x(t['value'])}")
    image = doc.get("image")
    if image:
        lines.append("")
        if image.get("error"):
            lines.append(f"image cost: {image['error']}")
        else:
            lines.append(
                f"image cost ({image.get('width')}x{image.get('height')} {image.get('content_type')}, "
                f"{_fmt(image.get('bytes', 0) / 1024, '.0f')} KiB): first {_fmt(image.get('first_ms'), '.1f')} ms, "
                f"repeated {_fmt(image.get('repeated_ms_median'), '.2f')} ms median of {image.get('repeats')} "
                f"({_x(image.get('first_over_repeated'))} faster)")
            if image.get("distinct"):
                d = image["distinct"]
                lines.append(f"  {d['count']} distinct images: median {_fmt(d.get('median_ms'), '.1f')} ms each; "
                             f"RSS {_fmt(d.get('rss_before_mb'), '.0f')} -> {_fmt(d.get('rss_after_mb'), '.0f')} MB "
                             f"(every {d.get('step')}: {', '.join(_fmt(x, '.0f') for x in d.get('rss_trace_mb') or [])}); "
                             f"first image again: {_fmt(d.get('first_again_ms'), '.1f')} ms")
                cache = (d.get("mock_stats") or {}).get("images")
                if cache:
                    lines.append(f"  our image cache: {cache.get('entries')} entries, "
                                 f"{_fmt((cache.get('bytes') or 0) / 2**20, '.1f')} MiB of "
                                 f"{_fmt((cache.get('max_bytes') or 0) / 2**20, '.0f')} MiB max, "
                                 f"{cache.get('hits')} hits / {cache.get('misses')} misses")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- plot

def plot(doc: dict, path: Path) -> Path | None:
    """Throughput and p99 against concurrency, one line per server. Returns the path, or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, srv in doc["servers"].items():
        runs = [r for r in srv.get("runs") or [] if r.get("ok", True)]
        if srv.get("skipped") or not runs:
            continue
        cs = [r["concurrency"] for r in runs]
        style = "-" if name in (PRIMARY, *ANCHORS) else ":"
        ax1.plot(cs, [r["rps"] for r in runs], style, marker="o", label=name)
        ax2.plot(cs, [r["latency_ms"].get("p99") for r in runs], style, marker="o", label=name)
    for ax, title, ylabel in ((ax1, "Throughput", "requests / s (log)"), (ax2, "p99 latency", "ms (log)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency (connections)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax1.set_yscale("log")  # WireMock is an order of magnitude above the others
    ax2.set_yscale("log")
    meta = doc.get("meta", {})
    fig.suptitle(f"sd35 mock vs WireMock vs Prism - {meta.get('mode', '')} run {meta.get('timestamp', '')}, "
                 f"{meta.get('cpus', '?')} CPUs, load: {doc.get('settings', {}).get('loadgen', '?')}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
