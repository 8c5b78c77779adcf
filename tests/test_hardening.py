"""Hardening: many threads at once, webhook receivers that misbehave, and bounded memory over a long run."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sd35_twin.mockserver import MockBackend, MockConfig
from sd35_twin.mockserver.server import serve
from sd35_twin.mockserver.testing import MockControl, WebhookReceiver
from tests.helpers import refused_port

KEY = {"API-Key": "hard"}
REQ = {"prompt": "load", "negative_prompt": "", "num_inference_steps": 1, "samples": 1, "guidance_scale": 0,
       "width": 256, "height": 256}


def test_concurrent_submit_and_poll_lose_nothing():
    threads, per_thread = 16, 25
    with serve(MockConfig(lifecycle="polls", pending_polls=2, seed=3)) as mock:
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
        listed = MockControl(mock.url).jobs()
        assert len(listed) == len(ids) and {j["status"] for j in listed} == {"SUCCESS"}


def test_slow_webhook_receiver_does_not_slow_the_api():
    config = MockConfig(lifecycle="immediate", webhook_timeout=0.3, webhook_max_attempts=2, webhook_backoff=0.0)
    with WebhookReceiver() as receiver, serve(config) as mock:
        receiver.hold()
        # Every delivery hangs past its timeout; the API must still answer every request at once.
        bodies = [requests.post(f"{mock.url}/sd3_5/v1", json=dict(REQ, webhook=receiver.url), headers=KEY,
                                timeout=10).json() for _ in range(16)]  # 10 s: a loaded machine is not a bug
        assert all(b["status"] == "SUCCESS" for b in bodies)
        records = MockControl(mock.url).webhooks(wait=30)
        assert {r["outcome"] for r in records} <= {"error", "dropped"}
        assert all("timeout" in (r["error"] or "").lower() or r["outcome"] == "dropped" for r in records)


def test_refusing_and_failing_receivers_are_recorded():
    config = MockConfig(lifecycle="immediate", webhook_max_attempts=3, webhook_backoff=0.0)
    with refused_port() as closed_port, WebhookReceiver(status=500) as failing, serve(config) as mock:
        control = MockControl(mock.url)
        refused = requests.post(f"{mock.url}/sd3_5/v1", headers=KEY, timeout=5,
                                json=dict(REQ, webhook=f"http://127.0.0.1:{closed_port}/x")).json()
        erroring = requests.post(f"{mock.url}/sd3_5/v1", json=dict(REQ, webhook=failing.url), headers=KEY,
                                 timeout=5).json()
        assert [r["outcome"] for r in control.webhooks(refused["id"], wait=30)] == ["error"] * 3
        assert [(r["outcome"], r["status_code"]) for r in control.webhooks(erroring["id"])] == [("http_error", 500)] * 3
        assert control.health()


@pytest.mark.parametrize("jobs", [3_000])
def test_long_stream_stays_within_caps(jobs):
    """Store, journal, images and webhook records stay under their caps however many jobs pass."""
    config = MockConfig(lifecycle="immediate", max_jobs=200, journal_size=50, image_cache_bytes=2_000_000,
                        webhook_records=100, webhook_backoff=0.0)
    backend = MockBackend(config)
    try:
        for n in range(jobs):
            job = backend.submit("k", dict(REQ, prompt=f"job {n % 40}", webhook="http://10.0.0.1/blocked"), "http://m/")
            if n % 10 == 0:
                backend.image(job.download_urls[0].rsplit("/", 1)[1], friendly=False)
            backend.journal.record(at=0, method="POST", path="/sd3_5/v1", query="", headers={}, body=b"x" * 10_000,
                                   status=200, duration_ms=1)
        stats = backend.stats()
        assert stats["jobs"] == 200 and stats["evicted"] == jobs - 200
        assert stats["journal"] == 50 and stats["images"]["bytes"] <= 2_000_000
        assert len(backend.webhooks.records()) == 100
        assert len(backend._due) == 0
    finally:
        backend.close()


def test_a_journal_entry_stays_small_whatever_the_headers():
    from sd35_twin.mockserver.journal import HEADER_CHARS, MAX_HEADERS, Journal

    journal = Journal(size=5, body_chars=100)
    journal.record(at=0, method="GET", path="/x", query="", headers=[(f"X-{n}", "v" * 10_000) for n in range(5_000)],
                   body=b"", status=404, duration_ms=1)
    [entry] = journal.entries()
    assert len(entry["headers"]) == MAX_HEADERS and all(len(v) <= HEADER_CHARS for v in entry["headers"].values())
