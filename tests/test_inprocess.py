"""The twin in-process (mockserver.inprocess): an app with the live URL written into it, on requests, httpx and
httpx's async client, answered with no socket; faults raise what the same fault raises over real HTTP."""

import asyncio
import socket
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import requests

from sd35_twin.mockserver.inprocess import DEFAULT_BASE_URL, mock_sd35

pytest_plugins = ["pytester"]

API = "https://api.imagepipeline.io"  # what an app under test has written into it
KEY = {"API-Key": "any-key"}
REQ = {"prompt": "a fox in the snow", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
       "guidance_scale": 0}


# --- an app under test: submit, poll, download, with the provider's URL in it --------------------------------

def generate_with_requests(prompt: str) -> bytes:
    with requests.Session() as http:
        job = http.post(f"{API}/sd3_5/v1", json={**REQ, "prompt": prompt}, headers=KEY, timeout=10).json()
        while job["status"] == "PENDING":
            job = http.get(f"{API}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=10).json()
        assert job["status"] == "SUCCESS", job
        return http.get(job["download_urls"][0], timeout=10).content


def generate_with_httpx(prompt: str) -> bytes:
    with httpx.Client(base_url=API, headers=KEY, timeout=10) as http:
        job = http.post("/sd3_5/v1", json={**REQ, "prompt": prompt}).json()
        while job["status"] == "PENDING":
            job = http.get(f"/sd3_5/v1/status/{job['id']}").json()
        assert job["status"] == "SUCCESS", job
        return http.get(job["download_urls"][0]).content


async def generate_with_httpx_async(prompt: str) -> bytes:
    async with httpx.AsyncClient(base_url=API, headers=KEY, timeout=10) as http:
        job = (await http.post("/sd3_5/v1", json={**REQ, "prompt": prompt})).json()
        while job["status"] == "PENDING":
            job = (await http.get(f"/sd3_5/v1/status/{job['id']}")).json()
        assert job["status"] == "SUCCESS", job
        return (await http.get(job["download_urls"][0])).content


APPS = {"requests": generate_with_requests, "httpx": generate_with_httpx,
        "httpx-async": lambda prompt: asyncio.run(generate_with_httpx_async(prompt))}


@pytest.fixture
def no_sockets(monkeypatch):
    """Any socket connect fails the test: proof that nothing went over the network."""
    def refuse(self, address):
        raise AssertionError(f"a socket was opened to {address}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.parametrize("library", APPS)
def test_an_app_with_the_live_url_runs_its_whole_flow_with_no_socket(library, no_sockets):
    with mock_sd35(pending_polls=2) as twin:
        image = APPS[library]("a red fox")
    assert image[:3] == b"\xff\xd8\xff"  # a real JPEG the twin rendered
    kinds = [e["kind"] for e in twin.requests()]
    assert kinds == ["submit", "status", "status", "download"]
    assert all(e["status"] == 200 for e in twin.requests())


def test_the_fixture_answers_in_process_and_is_reset_for_each_test(sd35_inprocess, no_sockets):
    assert sd35_inprocess.requests() == [] and sd35_inprocess.jobs() == []
    generate_with_requests("first")
    sd35_inprocess.assert_submits(1)
    assert sd35_inprocess.url == DEFAULT_BASE_URL


def test_the_fixture_is_reset_again(sd35_inprocess):
    assert sd35_inprocess.requests() == []


def test_control_plane_as_usual_configure_rules_faults_assertions(sd35_inprocess, no_sockets):
    sd35_inprocess.add_rule({"batch_id": "doomed"}, outcome="FAILURE", error="nsfw")
    job = requests.post(f"{API}/sd3_5/v1", json={**REQ, "batch_id": "doomed"}, headers=KEY).json()
    assert requests.get(f"{API}/sd3_5/v1/status/{job['id']}", headers=KEY).json()["status"] == "FAILURE"
    sd35_inprocess.configure(lifecycle="manual")
    job = requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).json()
    assert requests.get(f"{API}/sd3_5/v1/status/{job['id']}", headers=KEY).json()["status"] == "PENDING"
    sd35_inprocess.complete(job["id"])
    assert requests.get(f"{API}/sd3_5/v1/status/{job['id']}", headers=KEY).json()["status"] == "SUCCESS"
    sd35_inprocess.fault(endpoint="submit", type="status", status=503, retry_after=1)
    assert requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).status_code == 503
    sd35_inprocess.assert_submits(3)
    sd35_inprocess.assert_no_duplicate_submit(status=200)   # the 503 resent REQ: by default that counts
    with pytest.raises(AssertionError, match="the same body with the same key submitted 2 times"):
        sd35_inprocess.assert_no_duplicate_submit()
    assert [e["fault"] for e in sd35_inprocess.requests(kind="submit") if e.get("fault")] == ["status"]


def test_an_invalid_body_names_every_violation_in_process(sd35_inprocess):
    answer = httpx.post(f"{API}/sd3_5/v1", json={**REQ, "samples": 0, "prompt": " "}, headers=KEY)
    assert answer.status_code == 400
    assert [(e["field"], e["rule"]) for e in answer.json()["errors"]] == [("prompt", "pattern"),
                                                                          ("samples", "minimum")]


def test_nesting_the_outermost_owns_the_state():
    with mock_sd35(block_network=True) as outer:  # nothing here may reach a network
        requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY)
        with mock_sd35(base_url="https://mirror.example") as inner:
            assert inner is outer
            requests.post("https://mirror.example/sd3_5/v1", json=REQ, headers=KEY)
            assert len(outer.jobs()) == 2
        with pytest.raises(requests.ConnectionError, match="refuses POST https://mirror.example/"):
            requests.post("https://mirror.example/sd3_5/v1", json=REQ, headers=KEY)  # the inner's URL went with it
        assert len(outer.jobs()) == 2  # and the state stayed
    assert requests.adapters.HTTPAdapter.send.__name__ == "send"  # unpatched once the last context closed


def test_decorator_sync_and_async_each_call_a_fresh_twin():
    @mock_sd35
    def submit_one():
        return requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).json()["status"]

    @mock_sd35(lifecycle="immediate")
    async def submit_async():
        async with httpx.AsyncClient() as http:
            return (await http.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY)).json()["status"]

    assert submit_one() == "PENDING"
    assert asyncio.run(submit_async()) == "SUCCESS"


@mock_sd35(lifecycle="immediate")
class TestADecoratedClass:
    """Each test method gets its own twin, as moto's class decorator does."""

    def test_one(self):
        assert requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).json()["status"] == "SUCCESS"

    def test_two_sees_a_fresh_twin(self):
        requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY)
        with mock_sd35() as twin:  # nested: the decorator's twin, which has only this method's job
            assert len(twin.jobs()) == 1


def test_other_hosts_go_out_as_usual_and_block_network_refuses_them_by_url(sd35_webhooks):
    with mock_sd35():
        assert requests.post(sd35_webhooks.url, json={"a": 1}, timeout=5).status_code == 200
        assert httpx.post(sd35_webhooks.url, json={"a": 1}).status_code == 200
    with mock_sd35(block_network=True):
        with pytest.raises(requests.ConnectionError, match="block_network=True refuses POST " + sd35_webhooks.url):
            requests.post(sd35_webhooks.url, json={}, timeout=5)
        with pytest.raises(httpx.ConnectError, match="refuses GET https://example.org/"):
            httpx.get("https://example.org/")


def test_webhooks_reach_their_receiver_even_with_block_network(sd35_webhooks):
    with mock_sd35(block_network=True, lifecycle="immediate") as twin:
        job = requests.post(f"{API}/sd3_5/v1", json={**REQ, "webhook": sd35_webhooks.url}, headers=KEY).json()
        [call] = sd35_webhooks.expect(1)
        assert call.json["id"] == job["id"] and call.json["status"] == "SUCCESS"
        assert twin.webhooks(job["id"])[0]["outcome"] == "delivered"


def test_sixteen_threads_of_the_app_under_test(sd35_inprocess):
    with ThreadPoolExecutor(16) as pool:
        images = list(pool.map(generate_with_requests, [f"fox {n}" for n in range(32)]))
    assert len({bytes(i) for i in images}) == 32  # every job its own image
    sd35_inprocess.assert_submits(32)
    sd35_inprocess.assert_no_duplicate_submit()


def test_a_bad_base_url_is_refused_by_name():
    with pytest.raises(ValueError, match="base_url"):
        mock_sd35(base_url="ftp://x")


# --- faults: the same exception class as over a real socket ---------------------------------------------

FAULTS = {
    "drop before submit": ("submit", dict(type="drop")),
    "drop after submit": ("submit", dict(type="drop", phase="after")),
    "latency over the read timeout": ("status", dict(type="latency", ms=400)),
    "latency under it": ("status", dict(type="latency", ms=50)),
    "truncate": ("download", dict(type="truncate")),
    "reset": ("download", dict(type="reset", bytes=1000)),
    "wrong_length long": ("download", dict(type="wrong_length", length="long")),
    "wrong_length short": ("download", dict(type="wrong_length", bytes=300)),
    "trickle": ("download", dict(type="trickle", bytes_per_second=400_000)),
    "malformed": ("status", dict(type="malformed")),
}


def outcome(library: str, base: str, endpoint: str, control) -> tuple:
    """What the app sees of one call to ``endpoint`` under the fault: the exception class, or the status and
    the body's length (a download) or start (the JSON, whose URLs differ between the two)."""
    job = requests.post(f"{base}/sd3_5/v1", json=REQ, headers=KEY, timeout=10).json()
    url = {"submit": f"{base}/sd3_5/v1", "status": f"{base}/sd3_5/v1/status/{job['id']}"}.get(endpoint)
    if endpoint == "download":
        job = requests.get(f"{base}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=10).json()
        url = job["download_urls"][0]
    control.apply()
    method = "POST" if endpoint == "submit" else "GET"
    try:
        if library == "requests":
            answer = requests.request(method, url, json=REQ if method == "POST" else None, headers=KEY,
                                      timeout=(5, 0.25))
        else:
            answer = httpx.request(method, url, json=REQ if method == "POST" else None, headers=KEY,
                                   timeout=httpx.Timeout(5, read=0.25))
    except Exception as exc:  # noqa: BLE001 - the class is what is compared
        return (type(exc).__module__, type(exc).__qualname__)
    return (answer.status_code, len(answer.content) if endpoint == "download" else answer.content[:20])


@pytest.mark.parametrize("library", ["requests", "httpx"])
@pytest.mark.parametrize("name", FAULTS)
def test_each_fault_raises_the_same_exception_in_process_as_over_http(name, library, sd35_mock, sd35_inprocess):
    endpoint, rule = FAULTS[name]

    class Fault:
        def __init__(self, control):
            self.control = control

        def apply(self):
            self.control.fault(endpoint=endpoint, **rule)

    started = time.monotonic()
    in_process = outcome(library, API, endpoint, Fault(sd35_inprocess))
    if name == "trickle":  # slow in-process too (a ~53 KB image at 400 KB/s, in tenths of a second)
        assert time.monotonic() - started > 0.1
    over_http = outcome(library, sd35_mock.url, endpoint, Fault(sd35_mock))
    assert in_process == over_http
    if name.startswith("drop") or name.startswith("latency over"):
        assert isinstance(in_process[1], str), "the fault should raise"
    assert sd35_inprocess.requests(kind=endpoint)[-1]["fault"]  # the journal says what was done, as over HTTP


XDIST_TESTS = textwrap.dedent("""
    import os, pathlib, time
    import requests

    API = "https://api.imagepipeline.io"
    REQ = dict(prompt="a fox", negative_prompt="", num_inference_steps=4, samples=1, guidance_scale=0)
    BARRIER = pathlib.Path(os.environ["BARRIER_DIR"])


    def submit_then_wait_for_the_other(sd35_inprocess, mine, other):
        requests.post(f"{API}/sd3_5/v1", json={**REQ, "batch_id": mine}, headers={"API-Key": "k"})
        (BARRIER / mine).touch()
        deadline = time.monotonic() + 60
        while not (BARRIER / other).exists():  # a barrier between the workers, not a wait for a lifecycle
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert os.environ["PYTEST_XDIST_WORKER"].startswith("gw")
        assert [job["batch_id"] for job in sd35_inprocess.jobs()] == [mine]  # the other's job is not here


    def test_a(sd35_inprocess):
        submit_then_wait_for_the_other(sd35_inprocess, "a", "b")


    def test_b(sd35_inprocess):
        submit_then_wait_for_the_other(sd35_inprocess, "b", "a")
""")


@pytest.mark.slow
def test_xdist_workers_each_have_their_own_twin(pytester, monkeypatch, tmp_path):
    pytest.importorskip("xdist")
    monkeypatch.setenv("BARRIER_DIR", str(tmp_path))
    pytester.makepyfile(test_twins=XDIST_TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def test_download_urls_on_another_host_are_answered_too(no_sockets):
    """With ``public_url`` (where the twin says downloads live), that host is the twin's too."""
    with mock_sd35(public_url="https://images.example.net", lifecycle="immediate", block_network=True):
        job = requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).json()
        [url] = job["download_urls"]
        assert url.startswith("https://images.example.net/files/")
        assert requests.get(url).headers["Content-Type"] == "image/jpeg"
        assert httpx.get(url).status_code == 200
