"""Hardening: many threads at once, webhook receivers that misbehave, and bounded memory over a long run."""

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mockserver import MockBackend, MockConfig
from tests.helpers import SERVING, BlockingReceiver, running_mock

KEY = {"API-Key": "hard"}
REQ = {"prompt": "load", "negative_prompt": "", "num_inference_steps": 1, "samples": 1, "guidance_scale": 0,
       "width": 256, "height": 256}


@pytest.mark.parametrize("serving", SERVING)
def test_concurrent_submit_and_poll_lose_nothing(serving):
    threads, per_thread = 16, 25
    with running_mock(MockConfig(lifecycle="polls", pending_polls=2, seed=3), serving) as mock:
        def worker(_):
            with requests.Session() as session:
                finals = []
                for _ in range(per_thread):
                    job = session.post(f"{mock.url}/sd3_5/v1", json=REQ, headers=KEY, timeout=30).json()
                    seen = [job["status"]]
                    while seen[-1] == "PENDING":
                        seen.append(session.get(f"{mock.url}/sd3_5/v1/status/{job['id']}", headers=KEY,
                                                timeout=30).json()["status"])
                    finals.append((job["id"], seen))
                return finals

        with ThreadPoolExecutor(threads) as pool:
            results = [item for chunk in pool.map(worker, range(threads)) for item in chunk]
        ids = [job_id for job_id, _ in results]
        assert len(ids) == len(set(ids)) == threads * per_thread
        assert all(seen == ["PENDING", "PENDING", "SUCCESS"] for _, seen in results)
        listed = mock.backend.list_jobs(limit=10_000)
        assert len(listed) == len(ids) and {j["status"] for j in listed} == {"SUCCESS"}


@pytest.mark.parametrize("serving", SERVING)
def test_slow_webhook_receiver_does_not_slow_the_api(serving):
    receiver = BlockingReceiver()
    try:
        config = MockConfig(lifecycle="immediate", webhook_timeout=0.3, webhook_max_attempts=2, webhook_backoff=0.0)
        with running_mock(config, serving) as mock:
            # Every delivery hangs past its timeout; the API must still answer every request at once.
            bodies = [requests.post(f"{mock.url}/sd3_5/v1", json=dict(REQ, webhook=receiver.url), headers=KEY,
                                    timeout=2).json() for _ in range(16)]
            assert all(b["status"] == "SUCCESS" for b in bodies)
            assert mock.backend.webhooks.wait_idle(timeout=30)
            records = mock.backend.webhooks.records()
            assert {r["outcome"] for r in records} <= {"error", "dropped"}
            assert all("timeout" in (r["error"] or "").lower() or r["outcome"] == "dropped" for r in records)
    finally:
        receiver.close()


@pytest.mark.parametrize("serving", SERVING)
def test_refusing_and_failing_receivers_are_recorded(serving):
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    failing = BlockingReceiver(status=500)
    failing.release.set()
    try:
        with running_mock(MockConfig(lifecycle="immediate", webhook_max_attempts=3, webhook_backoff=0.0), serving) as mock:
            refused = requests.post(f"{mock.url}/sd3_5/v1", headers=KEY, timeout=5,
                                    json=dict(REQ, webhook=f"http://127.0.0.1:{closed_port}/x")).json()
            erroring = requests.post(f"{mock.url}/sd3_5/v1", json=dict(REQ, webhook=failing.url), headers=KEY,
                                     timeout=5).json()
            mock.backend.webhooks.wait_idle(timeout=30)
            assert [r["outcome"] for r in mock.backend.webhooks.records(refused["id"])] == ["error"] * 3
            assert [(r["outcome"], r["status_code"]) for r in mock.backend.webhooks.records(erroring["id"])] == \
                [("http_error", 500)] * 3
            assert requests.get(f"{mock.url}/__mock__/health", timeout=5).json() == {"ok": True}
    finally:
        failing.close()


@pytest.mark.parametrize("jobs", [3_000])
def test_long_stream_stays_within_caps(jobs):
    """Store, journal, images and webhook records stay under their caps however many jobs pass."""
    config = MockConfig(lifecycle="immediate", max_jobs=200, journal_size=50, image_cache_bytes=2_000_000,
                        webhook_records=100, webhook_backoff=0.0)
    backend = MockBackend(config)
    try:
        for n in range(jobs):
            body = backend.submit("k", dict(REQ, prompt=f"job {n % 40}", webhook="http://10.0.0.1/blocked"), "http://m/")
            if n % 10 == 0:
                backend.image(body["download_urls"][0].rsplit("/", 1)[1], friendly=False)
            backend.journal.record(at=0, method="POST", path="/sd3_5/v1", query="", headers={}, body=b"x" * 10_000,
                                   status=200, duration_ms=1)
        stats = backend.stats()
        assert stats["jobs"] == 200 and stats["evicted"] == jobs - 200
        assert stats["journal"] == 50 and stats["images"]["bytes"] <= 2_000_000
        assert len(backend.webhooks.records()) == 100
        assert len(backend._due) == 0
    finally:
        backend.close()
