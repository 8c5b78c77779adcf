"""What the shadow proxy adds to an exchange: submits and status reads of one launched twin over keep-alive HTTP,
direct and through ``sd35-mock proxy`` (a second process, recording to a file), taking turns, best of the rounds,
reported as ratios against the direct figure of the same run.

    python -m bench.proxy_overhead [--requests 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import requests

from sd35_twin.mockserver.testing import close_session, launch

from .procs import ServerProcess, free_port
from .rules_overhead import KEY, REQ, per_request_us  # the same timing loop as the rules' overhead


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--requests", type=int, default=500)
    options.add_argument("--rounds", type=int, default=5)
    args = options.parse_args()
    with launch("--pending-seconds", "0", "--quiet") as twin, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proxy = ServerProcess("proxy", [sys.executable, "-m", "sd35_twin.mockserver", "proxy", "--port", str(port),
                                        "--quiet", "--upstream", twin.url, "--max-jobs", "1000000",
                                        "--record", str(Path(tmp) / "calls.jsonl")], Path(tmp) / "proxy.log").start()
        try:
            if proxy.wait_for_log("listening on", 30) is None:
                raise RuntimeError(f"the proxy did not start: {proxy.log_tail()}")
            via = f"http://127.0.0.1:{port}"
            http = requests.Session()
            job = http.post(f"{twin.url}/sd3_5/v1", json=REQ, headers=KEY, timeout=10).json()["id"]
            best: dict[str, dict[str, float]] = {}
            for _ in range(args.rounds):
                for name, url in (("direct", twin.url), ("proxy", via)):
                    got = per_request_us(http, url, job, args.requests)
                    seen = best.setdefault(name, got)
                    for kind, us in got.items():
                        seen[kind] = min(seen[kind], us)
            for name, got in best.items():
                print(f"{name:7s} " + "  ".join(f"{kind} {us:.0f} µs ({us / best['direct'][kind]:.2f}×)"
                                               for kind, us in got.items()))
            close_session(http)
        finally:
            proxy.stop()


if __name__ == "__main__":
    main()
