"""Fallback load generator (when wrk is unavailable): the same workload as bench/flow.lua.

    python -m bench.pyload --port P --connections 32 --duration 10 --mode flow --api-key KEY --polls 2

N keep-alive connections, each a closed loop through the client's flow (submit, POLLS status polls of the id
submit answered; ``download`` adds the first download and EXTRA downloads of the same URL; ``cached`` only
GETs the path EXTRA), for a fixed duration; prints one "FLOW_JSON {...}" line in the format of flow.lua's
done(), so one parser reads both. Far slower than wrk (one Python process on the same cores): numbers from it
compare servers with each other only, and only while the servers are well below its own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import time

PROMPT = "beautiful waterfall in the rainforest, anime style"
TAGS = ("submit", "status", "download_first", "download_cached")


def submit_body(prompt: str = PROMPT) -> bytes:
    return json.dumps({
        "prompt": prompt,
        "negative_prompt": "error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",
        "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0, "width": 1024, "height": 1024,
    }, separators=(",", ":")).encode()


SUBMIT_BODY = submit_body()


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(pct * len(sorted_values) / 100.0) - 1))
    return sorted_values[k]


def submit_request(port: int, api_key: str, body: bytes = SUBMIT_BODY) -> bytes:
    return (f"POST /sd3_5/v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAPI-Key: {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def get_request(port: int, path: str, api_key: str | None = None) -> bytes:
    key = f"API-Key: {api_key}\r\n" if api_key else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{key}\r\n".encode()


def build_requests(port: int, status_id: str, api_key: str) -> tuple[bytes, bytes]:
    """The submit, and the status poll of ``status_id``, as bytes on the wire."""
    return submit_request(port, api_key), get_request(port, f"/sd3_5/v1/status/{status_id}", api_key)


_STATUS = re.compile(rb'"status"\s*:\s*"([A-Z]+)"')
_ID = re.compile(rb'"id"\s*:\s*"([^"]+)"')
_URL = re.compile(rb'"download_urls"\s*:\s*\[\s*"([^"]+)"')


def answer_status(body: bytes) -> str | None:
    m = _STATUS.search(body)
    return m.group(1).decode() if m else None


def answer_id(body: bytes) -> str | None:
    m = _ID.search(body)
    return m.group(1).decode() if m else None


def first_download_path(body: bytes) -> str | None:
    m = _URL.search(body)
    if not m:
        return None
    url = m.group(1).decode()
    return "/" + url.split("://", 1)[1].split("/", 1)[1] if "://" in url else url


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict, bytes, bool]:
    """Read one HTTP/1.1 response; return (status, headers, body, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append((await reader.readexactly(size + 2))[:-2])
            if size == 0:
                break
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body, headers.get("connection", "").lower() != "close"


class Stats:
    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {t: [] for t in TAGS}
        self.http_errors = dict.fromkeys(TAGS, 0)
        self.errors = dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
        self.flow: dict[str, int] = {}
        self.requests = 0
        self.all_lat: list[float] = []

    def count(self, key: str) -> None:
        self.flow[key] = self.flow.get(key, 0) + 1


async def _worker(index, port, mode, api_key, polls, extra, deadline, timeout, stats: Stats):
    reader = writer = None
    phase = "download_cached" if mode == "cached" else "submit"
    cached_path = extra if mode == "cached" else None
    status_req = download_req = None
    polls_done = cached_left = jobs = 0
    nonce = f"{time.monotonic_ns():x}"  # per run, so a new run's images are new even on the same server
    if cached_path:
        download_req = get_request(port, cached_path)
    while time.perf_counter() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            except (OSError, asyncio.TimeoutError):
                stats.errors["connect"] += 1
                await asyncio.sleep(0.01)
                continue
        tag = phase
        if phase == "submit":
            jobs += 1
            req = submit_request(port, api_key, submit_body(f"{PROMPT} #{nonce}-{index}-{jobs}") if mode == "download"
                                 else SUBMIT_BODY)
        elif phase == "status":
            req = status_req
        else:
            req = download_req
        t0 = time.perf_counter()
        try:
            writer.write(req)
            await writer.drain()
        except OSError:
            stats.errors["write"] += 1
            writer = None
            continue
        try:
            status, headers, body, keep = await asyncio.wait_for(_read_response(reader), timeout)
        except asyncio.TimeoutError:
            stats.errors["timeout"] += 1
            writer.close()
            writer = None
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            stats.errors["read"] += 1
            writer.close()
            writer = None
            continue
        seconds = time.perf_counter() - t0
        stats.lat[tag].append(seconds)
        stats.all_lat.append(seconds)
        stats.requests += 1
        if status > 399:
            stats.errors["status"] += 1
            stats.http_errors[tag] += 1
        if tag == "submit":
            job_id = answer_id(body)
            stats.count("submit_pending" if status == 200 and answer_status(body) == "PENDING" else "submit_other")
            if job_id is None:
                stats.count("submit_without_id")
            status_req = get_request(port, f"/sd3_5/v1/status/{job_id or 'bench-no-id'}", api_key)
            polls_done = 0
            phase = "status" if polls > 0 else "submit"
        elif tag == "status":
            polls_done += 1
            said = answer_status(body)
            if polls_done < polls:
                stats.count("poll_pending" if status == 200 and said == "PENDING" else "poll_not_pending")
            else:
                path = first_download_path(body)
                stats.count("final_success" if status == 200 and said == "SUCCESS" and path else "final_not_success")
                if mode == "download" and path:
                    download_req = get_request(port, path)
                    phase = "download_first"
                else:
                    if mode == "download":
                        stats.count("no_download_url")
                    phase = "submit"
        else:
            if tag == "download_first":
                cached_left = int(extra or 0)
                phase = "download_cached" if cached_left > 0 else "submit"
            elif mode == "download":
                cached_left -= 1
                if cached_left <= 0:
                    phase = "submit"
            image = status == 200 and headers.get("content-type", "").startswith("image/") and len(body) > 1000
            stats.count("image_ok" if image else "image_not_image")
        if not keep:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _latency_us(values: list[float]) -> dict:
    us = sorted(x * 1e6 for x in values)
    return {"min": int(us[0]) if us else 0, "mean": (sum(us) / len(us)) if us else 0.0, "max": int(us[-1]) if us else 0,
            **{f"p{str(p).replace('.', '')}": int(percentile(us, p)) for p in (50, 75, 90, 99, 99.9)}}


async def run(port, connections, duration, mode, api_key, polls, extra, timeout) -> dict:
    stats = Stats()
    t0 = time.perf_counter()
    deadline = t0 + duration
    await asyncio.gather(*(_worker(i + 1, port, mode, api_key, polls, extra, deadline, timeout, stats)
                           for i in range(connections)))
    elapsed = time.perf_counter() - t0
    return {
        "mode": mode, "polls": polls, "threads": connections,
        "duration_us": int(elapsed * 1e6), "requests": stats.requests, "bytes": 0, "errors": stats.errors,
        "latency_us": _latency_us(stats.all_lat),
        "tags": {t: {"count": len(stats.lat[t]), "http_errors": stats.http_errors[t],
                     "latency_us": _latency_us(stats.lat[t])} for t in TAGS if stats.lat[t]},
        "flow": stats.flow,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--mode", choices=("flow", "download", "cached"), default="flow")
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--polls", type=int, default=2)
    ap.add_argument("--extra", help="download: cached re-downloads per job; cached: the path to GET")
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args(argv)
    res = asyncio.run(run(a.port, a.connections, a.duration, a.mode, a.api_key, a.polls, a.extra, a.timeout))
    print("FLOW_JSON " + json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
