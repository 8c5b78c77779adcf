"""Fallback load generator (when wrk is unavailable): the same workload as bench/workload.lua.

    python -m bench.pyload --port P --connections 32 --duration 10 --status-id ID --api-key KEY

N keep-alive connections, each a closed loop cycling 1 submit + S status requests, for a fixed
duration; prints one "WRK_JSON {...}" line in the format of workload.lua's done(), so one parser
reads both. Far slower than wrk (one Python process on the same 2 cores): numbers from it compare
servers with each other only, and only while the servers are well below its own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time

SUBMIT_BODY = json.dumps({
    "prompt": "beautiful waterfall in the rainforest, anime style",
    "negative_prompt": "error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",
    "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0, "width": 1024, "height": 1024,
}, separators=(",", ":")).encode()


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(pct * len(sorted_values) / 100.0) - 1))
    return sorted_values[k]


def build_requests(port: int, status_id: str, api_key: str) -> tuple[bytes, bytes]:
    host = f"127.0.0.1:{port}"
    submit = (f"POST /sd3_5/v1 HTTP/1.1\r\nHost: {host}\r\nAPI-Key: {api_key}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(SUBMIT_BODY)}\r\n\r\n").encode() + SUBMIT_BODY
    status = (f"GET /sd3_5/v1/status/{status_id} HTTP/1.1\r\nHost: {host}\r\n"
              f"API-Key: {api_key}\r\n\r\n").encode()
    return submit, status


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; return (status, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close"


async def _worker(port, reqs, period, deadline, timeout, lat, errors, counter):
    reader = writer = None
    i = 0
    while time.perf_counter() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            except (OSError, asyncio.TimeoutError):
                errors["connect"] += 1
                await asyncio.sleep(0.01)
                continue
        req = reqs[0] if i % period == 0 else reqs[1]
        i += 1
        t0 = time.perf_counter()
        try:
            writer.write(req)
            await writer.drain()
        except OSError:
            errors["write"] += 1
            writer = None
            continue
        try:
            status, keep = await asyncio.wait_for(_read_response(reader), timeout)
        except asyncio.TimeoutError:
            errors["timeout"] += 1
            writer.close()
            writer = None
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors["read"] += 1
            writer.close()
            writer = None
            continue
        lat.append(time.perf_counter() - t0)
        counter[0] += 1
        if status > 399:
            errors["status"] += 1
        if not keep:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def run(port, connections, duration, status_id, api_key, status_per_submit, timeout) -> dict:
    reqs = build_requests(port, status_id, api_key)
    lat: list[float] = []
    errors = dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
    counter = [0]
    t0 = time.perf_counter()
    deadline = t0 + duration
    await asyncio.gather(*(_worker(port, reqs, status_per_submit + 1, deadline, timeout, lat, errors, counter)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    us = [x * 1e6 for x in lat]
    return {
        "duration_us": int(elapsed * 1e6), "requests": counter[0], "bytes": 0, "errors": errors,
        "latency_us": {
            "min": int(us[0]) if us else 0, "mean": (sum(us) / len(us)) if us else 0.0, "stdev": 0.0,
            "max": int(us[-1]) if us else 0,
            **{f"p{str(p).replace('.', '')}": int(percentile(us, p)) for p in (50, 75, 90, 99, 99.9)},
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--status-id", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--status-per-submit", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args(argv)
    res = asyncio.run(run(a.port, a.connections, a.duration, a.status_id, a.api_key,
                          a.status_per_submit, a.timeout))
    print("WRK_JSON " + json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
