"""An app that polls every second and expects HTTP 200 on every answer (tests/test_matrix.py, issue 21).

Usage: python slow_poller.py URL [INTERVAL]. It submits, waits INTERVAL seconds between status reads until the job
is done, downloads the image, and prints each status read's code. It never meets a PENDING status read if the
job is done before its first one: the matrix must keep a job PENDING for it anyway.
"""

import sys
import time

import requests

url = sys.argv[1]
interval = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
headers = {"API-Key": "any"}
body = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0,
        "width": 256, "height": 256}

answer = requests.post(f"{url}/sd3_5/v1", json=body, headers=headers, timeout=10)
assert answer.status_code == 200, f"submit answered HTTP {answer.status_code}, expected 200"  # the assumption
job = answer.json()
while job["status"] == "PENDING":
    time.sleep(interval)
    answer = requests.get(f"{url}/sd3_5/v1/status/{job['id']}", headers=headers, timeout=10)
    print(f"status read: HTTP {answer.status_code} {answer.json().get('status')}", flush=True)
    assert answer.status_code == 200, f"status read answered HTTP {answer.status_code}, expected 200"
    job = answer.json()
assert job["status"] == "SUCCESS", job
requests.get(job["download_urls"][0], timeout=10).raise_for_status()
print("done")
