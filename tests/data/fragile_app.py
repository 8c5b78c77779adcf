"""A deliberately fragile app, for tests/test_matrix.py: plain requests, written against the default mock only.

It assumes a submit always answers PENDING (then polls to SUCCESS and downloads), so it fails on every variant
where the submit may answer SUCCESS at once. Usage: python fragile_app.py URL (or $SD35_MOCK_URL).
"""

import os
import sys
import time

import requests

url = sys.argv[1] if len(sys.argv) > 1 else os.environ["SD35_MOCK_URL"]
headers = {"API-Key": "any", "Content-Type": "application/json"}
body = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0,
        "width": 256, "height": 256}

job = requests.post(f"{url}/sd3_5/v1", json=body, headers=headers, timeout=10).json()
assert job["status"] == "PENDING", f"expected PENDING at submit, got {job}"   # the fragile assumption
for _ in range(100):
    job = requests.get(f"{url}/sd3_5/v1/status/{job['id']}", headers=headers, timeout=10).json()
    if job["status"] != "PENDING":
        break
    time.sleep(0.1)
assert job["status"] == "SUCCESS", job
image = requests.get(job["download_urls"][0], timeout=10)
image.raise_for_status()
print(f"downloaded {len(image.content)} bytes")
