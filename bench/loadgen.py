"""The load generator side: run wrk (or the Python fallback) and turn its output into one record.

A run record (what results.json holds per server and concurrency):
    {"concurrency": 32, "duration_s": 10.0, "requests": 123456, "rps": 12345.6,
     "latency_ms": {"p50": 1.2, "p75": .., "p90": .., "p99": 4.5, "max": ..., "mean": ...},
     "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}, "error_count": 0,
     "loadgen": "wrk"}
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

WORKLOAD_LUA = Path(__file__).resolve().parent / "workload.lua"
ERROR_KEYS = ("connect", "read", "write", "timeout", "status")

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_TIME_RE = r"([0-9.]+)(us|ms|s|m|h)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk_output(text: str) -> dict:
    """Parse wrk output into a run record (without concurrency).

    Prefers the exact "WRK_JSON {...}" line printed by bench/workload.lua's done(); falls back to
    the human "--latency" text (Latency Distribution, "N requests in T", Socket errors, Non-2xx).
    Errors are socket errors (connect, read, write, timeout) plus HTTP status >= 400 ("status").
    """
    for line in text.splitlines():
        if line.startswith("WRK_JSON "):
            data = json.loads(line[len("WRK_JSON "):])
            lat = data["latency_us"]
            errors = {k: int(data["errors"].get(k, 0)) for k in ERROR_KEYS}
            duration_s = data["duration_us"] / 1e6
            return _record(
                requests=int(data["requests"]), duration_s=duration_s,
                latency_ms={k: lat[k] / 1000.0 for k in ("p50", "p75", "p90", "p99", "p999", "max", "mean")
                            if k in lat},
                errors=errors, source="wrk-json")
    return _parse_wrk_text(text)


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


def wrk_command(wrk: str, port: int, concurrency: int, duration_s: float, threads: int,
                status_id: str, api_key: str, status_per_submit: int = 3, timeout_s: float = 5.0) -> list[str]:
    threads = max(1, min(threads, concurrency))
    return [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s", "--latency",
            "--timeout", f"{timeout_s:g}s", "-s", str(WORKLOAD_LUA), f"http://127.0.0.1:{port}",
            "--", status_id, api_key, str(status_per_submit)]


def pyload_command(port: int, concurrency: int, duration_s: float, status_id: str, api_key: str,
                   status_per_submit: int = 3, timeout_s: float = 5.0) -> list[str]:
    return [sys.executable, "-m", "bench.pyload", "--port", str(port), "--connections", str(concurrency),
            "--duration", f"{duration_s:g}", "--status-id", status_id, "--api-key", api_key,
            "--status-per-submit", str(status_per_submit), "--timeout", f"{timeout_s:g}"]


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
