"""Soak: a long stream of jobs through a real `python -m sd35_twin.mockserver`, sampling its resident memory.

    python -m bench.soak --jobs 100000 [--threads 4] [--max-jobs 10000]

The mock is started by ``mockserver.testing.launch`` (the launcher tests and the benchmark use), one process
with ``--pending-polls 2``. Every job goes through the client's flow (submit, a poll while PENDING, the final
poll); every 50th downloads its image (a bounded cache holds them), and every request lands in the journal.
Prints RSS (VmRSS) and PSS every 5 % of the run and a JSON summary; memory should level off once the job
store, the journal and the image cache reach their caps.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from sd35_twin.mockserver.testing import launch

from .procs import process_tree, pss_kb, read_status_kb

KEY = {"API-Key": "soak"}
POLLS = 2


def rss_kib(pid: int) -> int:
    """VmRSS summed over the process and any children."""
    return sum(read_status_kb(each).get("VmRSS", 0) for each in process_tree(pid))


def pss_kib(pid: int) -> int:
    return sum(pss_kb(each) or 0 for each in process_tree(pid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--max-jobs", type=int, default=10_000, help="the mock's --max-jobs")
    args = parser.parse_args(argv)

    mock = launch("--pending-polls", str(POLLS), "--quiet", "--max-jobs", str(args.max_jobs))
    url, pid = mock.url, mock.process.pid
    samples, errors, done = [], [0], [0]
    lock = threading.Lock()
    step = max(args.jobs // 20, 1)
    started = time.perf_counter()

    def one(n: int, session: requests.Session) -> None:
        body = {"prompt": f"soak {n % 97}", "negative_prompt": "x" * (n % 500), "num_inference_steps": 4,
                "samples": 1 + n % 2, "guidance_scale": 0, "width": 256, "height": 256, "batch_id": f"b{n}"}
        try:
            job = session.post(f"{url}/sd3_5/v1", json=body, headers=KEY, timeout=30).json()
            for _ in range(POLLS):
                job = session.get(f"{url}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=30).json()
            if job["status"] != "SUCCESS":
                raise RuntimeError(f"not SUCCESS after {POLLS} polls: {job}")
            if n % 50 == 0:
                session.get(job["download_urls"][0], timeout=30).raise_for_status()
        except Exception:
            with lock:
                errors[0] += 1
        with lock:
            done[0] += 1
            if done[0] % step == 0:
                samples.append({"jobs": done[0], "rss_mib": round(rss_kib(pid) / 1024, 1),
                                "pss_mib": round(pss_kib(pid) / 1024, 1),
                                "seconds": round(time.perf_counter() - started, 1)})
                print(f"{done[0]:>8} jobs  RSS {samples[-1]['rss_mib']:>7} MiB  PSS {samples[-1]['pss_mib']:>7} MiB"
                      f"  {samples[-1]['seconds']:>7} s", flush=True)

    local = threading.local()

    def task(n: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        one(n, local.session)

    try:
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(task, range(args.jobs), chunksize=256))
        stats = requests.get(f"{url}/__mock__/stats", timeout=10).json()
    finally:
        mock.stop()
    half = [s["rss_mib"] for s in samples[len(samples) // 2:]]
    summary = {"jobs": args.jobs, "errors": errors[0], "seconds": round(time.perf_counter() - started, 1),
               "rss_mib_samples": samples, "rss_growth_second_half_mib": round(max(half) - min(half), 1) if half else None,
               "mock_stats": stats}
    print(json.dumps(summary, indent=1))
    return 1 if errors[0] else 0


if __name__ == "__main__":
    raise SystemExit(main())
