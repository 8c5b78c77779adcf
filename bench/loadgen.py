"""The load generator side: run wrk (or the Python fallback) on bench/flow.lua and turn its output into one record.

A run record (what results.json holds per server, workload and concurrency):
    {"concurrency": 32, "mode": "flow", "duration_s": 10.0, "requests": 123456, "rps": 12345.6,
     "latency_ms": {"p50": 1.2, "p90": .., "p99": 4.5, "p999": .., "max": .., "mean": ..},
     "tags": {"submit": {"count": 41152, "rps": 4115.2, "http_errors": 0, "latency_ms": {...}},
              "status": {...}},
     "flow": {"submit_pending": 41152, "poll_pending": 41150, "final_success": 41150},
     "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}, "error_count": 0,
     "source": "flow-json"}

``rps`` is every request of the run; a tag's ``rps`` is that endpoint's share (its answers / duration).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

FLOW_LUA = Path(__file__).resolve().parent / "flow.lua"
ERROR_KEYS = ("connect", "read", "write", "timeout", "status")
MODES = ("flow", "download", "cached")
# What the client's flow expects of each answer (flow.lua counts them): the good outcomes, and the others.
FLOW_EXPECTED = ("submit_pending", "poll_pending", "final_success")
FLOW_UNEXPECTED = ("submit_other", "poll_not_pending", "final_not_success")

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_TIME_RE = r"([0-9.]+)(us|ms|s|m|h)"
_LATENCY_KEYS = ("p50", "p75", "p90", "p99", "p999", "max", "min", "mean")


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def _us_to_ms(lat: dict) -> dict:
    return {k: lat[k] / 1000.0 for k in _LATENCY_KEYS if k in lat}


def parse_wrk_output(text: str) -> dict:
    """Parse load generator output into a run record (without concurrency).

    Prefers the "FLOW_JSON {...}" line of bench/flow.lua's done() (per-endpoint tags and the flow check),
    then a plain "WRK_JSON {...}" line, then wrk's human "--latency" text. Errors are socket errors
    (connect, read, write, timeout) plus HTTP answers >= 400 ("status").
    """
    for prefix, source in (("FLOW_JSON ", "flow-json"), ("WRK_JSON ", "wrk-json")):
        for line in text.splitlines():
            if line.startswith(prefix):
                return _from_json(json.loads(line[len(prefix):]), source)
    return _parse_wrk_text(text)


def _from_json(data: dict, source: str) -> dict:
    errors = {k: int((data.get("errors") or {}).get(k, 0)) for k in ERROR_KEYS}
    duration_s = data["duration_us"] / 1e6
    rec = _record(requests=int(data["requests"]), duration_s=duration_s,
                  latency_ms=_us_to_ms(data.get("latency_us") or {}), errors=errors, source=source)
    if "tags" in data:
        rec["tags"] = {tag: {"count": int(t["count"]), "rps": t["count"] / duration_s if duration_s > 0 else 0.0,
                             "http_errors": int(t.get("http_errors", 0)), "latency_ms": _us_to_ms(t["latency_us"])}
                       for tag, t in data["tags"].items()}
        rec["flow"] = {k: int(v) for k, v in (data.get("flow") or {}).items()}
        rec["flow_fidelity"] = flow_fidelity(rec["flow"])
        for key in ("mode", "polls", "threads"):
            if key in data:
                rec[key] = data[key]
    return rec


def flow_fidelity(flow: dict) -> float | None:
    """The share of submit and status answers that were what the client's flow expects (PENDING on submit,
    PENDING on the polls before the last, SUCCESS with download_urls on the last); None without any."""
    good = sum(flow.get(k, 0) for k in FLOW_EXPECTED)
    total = good + sum(flow.get(k, 0) for k in FLOW_UNEXPECTED)
    return good / total if total else None


def _parse_wrk_text(text: str) -> dict:
    m = re.search(r"(\d+) requests in " + _TIME_RE, text)
    if not m:
        raise ValueError("not wrk output: no 'N requests in T' line")
    requests = int(m.group(1))
    duration_s = _ms(m.group(2), m.group(3)) / 1000.0
    latency = {}
    for pct, key in (("50", "p50"), ("75", "p75"), ("90", "p90"), ("99", "p99")):
        pm = re.search(r"^\s*" + pct + r"(?:\.0+)?%\s+" + _TIME_RE, text, re.M)
        if pm:
            latency[key] = _ms(pm.group(1), pm.group(2))
    lm = re.search(r"^\s*Latency\s+" + _TIME_RE + r"\s+" + _TIME_RE + r"\s+" + _TIME_RE, text, re.M)
    if lm:
        latency["mean"] = _ms(lm.group(1), lm.group(2))
        latency["max"] = _ms(lm.group(5), lm.group(6))
    errors = dict.fromkeys(ERROR_KEYS, 0)
    sm = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sm:
        errors.update(connect=int(sm.group(1)), read=int(sm.group(2)),
                      write=int(sm.group(3)), timeout=int(sm.group(4)))
    nm = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if nm:
        errors["status"] = int(nm.group(1))
    rec = _record(requests=requests, duration_s=duration_s, latency_ms=latency, errors=errors,
                  source="wrk-text")
    rm = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if rm:
        rec["rps"] = float(rm.group(1))
    return rec


def _record(requests: int, duration_s: float, latency_ms: dict, errors: dict, source: str) -> dict:
    return {
        "duration_s": round(duration_s, 3),
        "requests": requests,
        "rps": requests / duration_s if duration_s > 0 else 0.0,
        "latency_ms": latency_ms,
        "errors": errors,
        "error_count": sum(errors.values()),
        "source": source,
    }


def _mode_args(mode: str, api_key: str, polls: int, extra: str | None) -> list[str]:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode == "cached" and not extra:
        raise ValueError("mode 'cached' needs the path to download")
    return [mode, api_key, str(polls), *([str(extra)] if extra is not None else [])]


def wrk_command(wrk: str, port: int, concurrency: int, duration_s: float, mode: str = "flow",
                api_key: str = "bench-key", polls: int = 2, extra: str | None = None,
                timeout_s: float = 5.0) -> list[str]:
    """wrk on bench/flow.lua with one connection per wrk thread (the script follows one job per thread).
    ``extra``: for ``download`` the cached re-downloads per job, for ``cached`` the path."""
    return [wrk, f"-t{concurrency}", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
            "--timeout", f"{timeout_s:g}s", "-s", str(FLOW_LUA), f"http://127.0.0.1:{port}",
            "--", *_mode_args(mode, api_key, polls, extra)]


def pyload_command(port: int, concurrency: int, duration_s: float, mode: str = "flow",
                   api_key: str = "bench-key", polls: int = 2, extra: str | None = None,
                   timeout_s: float = 5.0) -> list[str]:
    _mode_args(mode, api_key, polls, extra)
    cmd = [sys.executable, "-m", "bench.pyload", "--port", str(port), "--connections", str(concurrency),
           "--duration", f"{duration_s:g}", "--mode", mode, "--api-key", api_key, "--polls", str(polls),
           "--timeout", f"{timeout_s:g}"]
    return cmd + (["--extra", str(extra)] if extra is not None else [])


def run_load(cmd: list[str], raw_path: Path | None = None, cwd: str | None = None) -> dict:
    """Run a load generator command (wrk or bench.pyload) and parse its output."""
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)
    text = out.stdout + ("\n" + out.stderr if out.stderr else "")
    if raw_path is not None:
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(" ".join(cmd) + "\n\n" + text)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed ({out.returncode}): {text[-1000:]}")
    return parse_wrk_output(text)
