"""The traffic an app might send through the shadow proxy, used by the proxy's tests: our client for a job's
whole life, raw requests for the error rows, and the upstream twin's control plane for what only a live API's own
state would make happen (a failed job, a key without credits, a rate limit, expired URLs).

It asserts nothing about the answers: it drives the same requests whatever the upstream is, so the proxy's
report is the only judge.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from sd35_twin.client import Backoff, ImagePipelineClient, RetryPolicy
from sd35_twin.mockserver.config import MockConfig, load_profile
from sd35_twin.mockserver.server import serve
from sd35_twin.mockserver.testing import MockControl
from sd35_twin.mockserver.variants import Variant

KEY = "proxy-test-key-3c9f0d1e"          # what an app sends; the tests grep for it
POOR_KEY = "proxy-test-poor-key-77aa"     # given 0 credits for one submit
LIMITED_KEY = "proxy-test-limited-key-42" # rate-limited for two requests
BASE = {"prompt": "a lighthouse at dusk", "negative_prompt": "blur", "num_inference_steps": 1, "samples": 1,
        "guidance_scale": 0.0}


def launch_upstream(profile: dict | None = None):
    """A twin as the upstream, with a profile (a variant's overlay, or a learned profile): a real server on a free
    port, in a thread of this process (a process per upstream would only add its start-up to every round trip)."""
    config = MockConfig(lifecycle="polls", pending_polls=2, seed=18, api_keys=(KEY, POOR_KEY, LIMITED_KEY),
                        profile=load_profile(overrides=profile or {}))
    return serve(config)


def drive(proxy_url: str, upstream_url: str, downloads: Path) -> None:
    """Everything an app does through the proxy, in one order; nothing asserted."""
    http = requests.Session()
    control = MockControl(upstream_url)

    def post(body, key=KEY, raw: bytes | None = None, content_type: str | None = "application/json"):
        data = raw if raw is not None else json.dumps(body).encode()
        typed = {"Content-Type": content_type} if content_type else {}
        return http.post(f"{proxy_url}/sd3_5/v1", data=data, timeout=30, allow_redirects=False,
                         headers={"API-Key": key, **typed})

    def status(job_id, key=KEY):
        return http.get(f"{proxy_url}/sd3_5/v1/status/{job_id}", headers={"API-Key": key}, timeout=30)

    def until_done(answer):
        body = answer.json()
        for _ in range(6):
            if body.get("status") != "PENDING":
                break
            body = status(body["id"]).json()
        return body

    # our client: a job's whole life, then its images (through the proxy when it rewrites download URLs)
    client = ImagePipelineClient(api_key=KEY, base_url=proxy_url, validate=False, timeout=(5.0, 30.0),
                                 retry=RetryPolicy(status_attempts=1, submit_attempts=1),
                                 poll=Backoff(initial=0.0, factor=1.0, maximum=0.0, jitter=0.0), wait_timeout=30)
    with client:
        done = client.wait(client.submit(**BASE))
        client.download(done, downloads)

    # queued_image_urls and batch_id: fetch an image before the job is done, then after
    queued = post({**BASE, "queued_image_urls": True, "batch_id": "proxy-batch-1"})
    served = None
    if queued.ok and queued.json().get("download_urls"):
        http.get(queued.json()["download_urls"][0], timeout=30)
        final = until_done(queued)
        if final.get("download_urls"):
            served = final["download_urls"][0]
            http.get(served, timeout=30)

    # direct_link: a friendly URL
    direct = post({**BASE, "direct_link": True})
    if direct.ok:
        for url in until_done(direct).get("download_urls") or []:
            http.get(url, timeout=30)
        status(direct.json()["id"])                                   # a final state, read again

    # numbers around the limits (some are refused, some accepted, depending on the upstream)
    for samples in (3, 4, 5):
        post({**BASE, "samples": samples})
    for steps in (100, 101):
        post({**BASE, "num_inference_steps": steps})
    for side in (960, 992, 1024, 1032):
        post({**BASE, "width": side, "height": side})

    post({**BASE, "colour": "red"})                                  # an unknown field
    post(BASE, content_type=None)                                     # JSON sent without its Content-Type
    post(BASE, key="not-a-key-of-this-app")                           # a bad key
    status("no-such-job-0001")                                        # an unknown id
    post(None, raw=json.dumps({**BASE, "prompt": "x" * (1024 * 1024 + 16)}).encode())   # a body over 1 MiB

    # a job that fails (the upstream's own doing: its control plane fails it)
    doomed = post(BASE)
    if doomed.ok and doomed.json().get("status") == "PENDING":
        control.fail(doomed.json()["id"])
        status(doomed.json()["id"])

    # a key without credits
    control.configure(credits={POOR_KEY: 0})
    post(BASE, key=POOR_KEY)
    control.configure(credits={})

    # a day later, the first image's URL again
    if served:
        control.advance(25 * 3600)
        http.get(served, timeout=30)

    # one request a minute for one key: a status read, then a refused submit
    control.configure(profile={"rate_limits": {"requests_per_minute": 1, "max_pending": None}})
    status("no-such-job-0002", key=LIMITED_KEY)
    post(BASE, key=LIMITED_KEY)
    control.configure(profile={"rate_limits": {"requests_per_minute": None, "max_pending": None}})
    control.close()
    http.close()


def leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        out.update(leaves(value, path) if isinstance(value, dict) else {path: value})
    return out


__all__ = ["KEY", "BASE", "Variant", "launch_upstream", "drive", "leaves"]
