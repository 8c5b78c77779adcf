"""What rules cost on the hot path: submits and status reads of one launched mock over keep-alive HTTP, with no
rule, then with 100 rules that match nothing (on the API key; on the batch_id, which reads the job). The three
settings take turns, best of the rounds, and are reported as ratios against the no-rule one of the same run.

    python -m bench.rules_overhead [--requests 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

import requests

from sd35_twin.mockserver.testing import MockControl, close_session, launch

REQ = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0}
KEY = {"API-Key": "k"}
SETTINGS = ((0, "api_key"), (100, "api_key"), (100, "batch_id"))


def per_request_us(http: requests.Session, url: str, job: str, count: int) -> dict[str, float]:
    out = {}
    for kind in ("submit", "status"):
        started = time.perf_counter()
        for _ in range(count):
            if kind == "submit":
                http.post(f"{url}/sd3_5/v1", json=REQ, headers=KEY, timeout=10)
            else:
                http.get(f"{url}/sd3_5/v1/status/{job}", headers=KEY, timeout=10)
        out[kind] = (time.perf_counter() - started) / count * 1e6
    return out


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--requests", type=int, default=1000)
    options.add_argument("--rounds", type=int, default=5)
    args = options.parse_args()
    with launch("--pending-seconds", "0", "--quiet") as mock:
        control, http = MockControl(mock.url), requests.Session()
        job = http.post(f"{mock.url}/sd3_5/v1", json=REQ, headers=KEY, timeout=10).json()["id"]
        best: dict[tuple, dict[str, float]] = {}
        for _ in range(args.rounds):
            for rules, on in SETTINGS:
                control.clear_rules()
                for n in range(rules):
                    control.add_rule({on: f"nobody-{n}"}, outcome="FAILURE")
                got = per_request_us(http, mock.url, job, args.requests)
                seen = best.setdefault((rules, on), got)
                for kind, us in got.items():
                    seen[kind] = min(seen[kind], us)
        anchor = best[SETTINGS[0]]
        for (rules, on), got in best.items():
            print(f"{rules:3d} rules on {on:8s} " + "  ".join(
                f"{kind} {us:.0f} µs ({us / anchor[kind]:.2f}×)" for kind, us in got.items()))
        close_session(http)
        control.close()


if __name__ == "__main__":
    main()
