"""A small app, for tests/test_matrix.py: plain requests (not our client), one job, one image.

It submits, polls until the job is done, downloads the first image and exits 0. ``--late S`` moves the mock's
clock S seconds on before downloading (``POST /__mock__/clock/advance``) and, if the URL has expired (any 4xx),
submits again and downloads the new one. ``--no-content-type`` posts the JSON with ``data=json.dumps(...)`` and
no Content-Type header, as many hand-written clients do. Usage: python one_image_app.py URL [--late S]
[--no-content-type] (or $SD35_MOCK_URL).
"""

import argparse
import json
import os
import time

import requests

parser = argparse.ArgumentParser()
parser.add_argument("url", nargs="?", default=os.environ.get("SD35_MOCK_URL"))
parser.add_argument("--late", type=float, default=0.0)
parser.add_argument("--no-content-type", action="store_true")
args = parser.parse_args()
KEY = {"API-Key": "one-image-app"}
BODY = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1.0}


def generate() -> str:
    """The first download URL of a finished job."""
    if args.no_content_type:
        answer = requests.post(f"{args.url}/sd3_5/v1", data=json.dumps(BODY), headers=KEY, timeout=10)
    else:
        answer = requests.post(f"{args.url}/sd3_5/v1", json=BODY, headers=KEY, timeout=10)
    answer.raise_for_status()
    job = answer.json()
    for _ in range(200):
        if job["status"] != "PENDING":
            break
        time.sleep(0.05)
        read = requests.get(f"{args.url}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=10)
        read.raise_for_status()
        job = read.json()
    assert job["status"] == "SUCCESS", job
    return job["download_urls"][0]


url = generate()
if args.late:
    requests.post(f"{args.url}/__mock__/clock/advance", json={"seconds": args.late}, timeout=10).raise_for_status()
image = requests.get(url, timeout=30)
if args.late and 400 <= image.status_code < 500:  # expired: a fresh job's URL
    print(f"the URL answered {image.status_code} after {args.late:g} s: generating again")
    image = requests.get(generate(), timeout=30)
image.raise_for_status()
print(f"downloaded {len(image.content)} bytes")
