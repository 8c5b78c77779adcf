"""``--workers N``: several HTTP processes over one shared state, as a user runs them.

The HTTP suites (test_http_api, test_control, test_properties_http) already run against two workers through
the ``sd35_mock_server`` fixture in conftest.py; here is what only a multi-process server can get wrong:
state seen alike from every worker, changes reaching every worker at once, the process tree's life and death.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from mockserver import MockBackend, MockConfig
from mockserver.errors import (BodyTooLarge, Conflict, FieldError, ImageExpired, ImageNotReady, InvalidRequest,
                               NotFound, Unauthorized)
from mockserver.shared import RemoteBackend, StateChannel, StateError, StateServer
from tests.helpers import BlockingReceiver

KEY = {"API-Key": "worker-key"}
REQ = {"prompt": "p", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1,
       "width": 256, "height": 256}


class CliMock:
    def __init__(self, *args, env=None):
        self.process = subprocess.Popen([sys.executable, "-m", "mockserver", "--port", "0", "--quiet", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})})
        line = self.process.stdout.readline()
        assert line.startswith("sd35-mock listening on http://127.0.0.1:"), self.process.stderr.read()
        self.url = line.split()[-1]

    def get(self, path, **kwargs):  # a new connection each time, so requests spread over the workers
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path, **kwargs):
        return requests.post(self.url + path, timeout=10, **kwargs)

    def worker_pids(self) -> dict[int, int]:
        """index -> pid of every worker, asking on fresh connections until each has answered."""
        seen = {}
        for _ in range(400):
            worker = self.get("/__mock__/stats").json()["worker"]
            seen[worker["index"]] = worker["pid"]
            if len(seen) == 2:
                return seen
        raise AssertionError(f"only workers {sorted(seen)} ever answered")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def cli_mock():
    started = []

    def start(*args, env=None):
        started.append(CliMock("--workers", "2", *args, env=env))
        return started[-1]

    yield start
    for mock in started:
        mock.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_gone(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)  # a process's exit, not a lifecycle: nothing to control, only to observe
    return [p for p in pids if alive(p)]


def test_jobs_made_through_one_worker_are_seen_through_every_other(cli_mock):
    mock = cli_mock("--pending-polls", "1")
    assert len(mock.worker_pids()) == 2
    ids = [mock.post("/sd3_5/v1", json=REQ, headers=KEY).json()["id"] for _ in range(30)]
    assert len(set(ids)) == 30
    for job_id in ids:  # each poll on a new connection: whichever worker takes it must know the job
        assert mock.get(f"/sd3_5/v1/status/{job_id}", headers=KEY).json()["status"] == "SUCCESS"
    assert {j["id"] for j in mock.get("/__mock__/jobs?limit=100").json()["jobs"]} == set(ids)
    journal = mock.get("/__mock__/journal").json()["requests"]
    assert [e["method"] for e in journal].count("POST") == 30 and [e["method"] for e in journal].count("GET") == 30


def test_changes_reach_every_worker_before_the_next_request(cli_mock):
    mock = cli_mock("--pending-seconds", "100")
    mock.worker_pids()
    assert mock.post("/__mock__/config", json={"api_keys": ["only-this"]}).status_code == 200
    assert {mock.post("/sd3_5/v1", json=REQ, headers=KEY).status_code for _ in range(20)} == {401}
    mock.post("/__mock__/config", json={"api_keys": []})
    assert mock.post("/__mock__/faults", json={"type": "status", "status": 503, "endpoint": "submit", "rate": 1.0}
                     ).status_code == 201
    assert {mock.post("/sd3_5/v1", json=REQ, headers=KEY).status_code for _ in range(20)} == {503}
    requests.delete(mock.url + "/__mock__/faults", timeout=10)
    job_id = mock.post("/sd3_5/v1", json=REQ, headers=KEY).json()["id"]
    assert mock.post("/__mock__/clock/advance", json={"seconds": 100}).status_code == 200
    assert {mock.get(f"/sd3_5/v1/status/{job_id}", headers=KEY).json()["status"] for _ in range(10)} == {"SUCCESS"}


def test_a_once_only_fault_fires_once_across_workers(cli_mock):
    mock = cli_mock("--pending-polls", "1")
    mock.post("/__mock__/faults", json={"type": "status", "status": 500, "endpoint": "submit", "times": 3})
    codes = [mock.post("/sd3_5/v1", json=REQ, headers=KEY).status_code for _ in range(12)]
    assert codes == [500, 500, 500] + [200] * 9


def test_a_waiting_control_call_holds_up_no_one(cli_mock):
    """``/__mock__/webhooks?wait=S`` blocks in the shared state; every other request still gets through."""
    receiver = BlockingReceiver()
    try:
        mock = cli_mock("--pending-seconds", "0")
        mock.post("/sd3_5/v1", json={**REQ, "webhook": receiver.url}, headers=KEY)
        waited = {}
        waiter = threading.Thread(target=lambda: waited.update(
            answer=requests.get(mock.url + "/__mock__/webhooks?wait=20", timeout=30)))
        waiter.start()
        for _ in range(20):
            assert mock.post("/sd3_5/v1", json=REQ, headers=KEY).status_code == 200
        assert waiter.is_alive()  # still held: the receiver has not answered
        receiver.release.set()
        waiter.join(timeout=30)
        assert [d["outcome"] for d in waited["answer"].json()["deliveries"]] == ["delivered"]
    finally:
        receiver.close()


def test_sigterm_stops_every_process(cli_mock):
    mock = cli_mock()
    pids = list(mock.worker_pids().values())
    mock.process.send_signal(signal.SIGTERM)
    assert mock.process.wait(timeout=10) == 0
    assert wait_until_gone(pids) == []


def test_workers_leave_when_the_main_process_is_killed(cli_mock, tmp_path):
    mock = cli_mock(env={"TMPDIR": str(tmp_path)})
    pids = list(mock.worker_pids().values())
    assert len(list(tmp_path.glob("sd35-mock-*"))) == 1  # the state's socket directory
    mock.process.kill()
    mock.process.wait(timeout=10)
    assert wait_until_gone(pids) == []  # nobody is left holding the port
    assert list(tmp_path.glob("sd35-mock-*")) == []  # and the workers removed what the parent could not


def test_a_dead_worker_stops_the_mock_loudly(cli_mock):
    mock = cli_mock()
    pids = mock.worker_pids()
    os.kill(pids[1], signal.SIGKILL)
    assert mock.process.wait(timeout=10) == 1
    assert "sd35-mock-worker-1" in mock.process.stderr.read()
    assert wait_until_gone([pids[0]]) == []


@pytest.mark.parametrize("args, message", [(["--workers", "0"], "--workers"), (["--workers", "65"], "--workers"),
                                           (["--workers", "2", "--threads", "0"], "--threads")])
def test_bad_worker_options_exit_2(args, message):
    done = subprocess.run([sys.executable, "-m", "mockserver", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr


# -- the state server itself, in-process ------------------------------------------------------------


@pytest.fixture
def shared():
    backend = MockBackend(MockConfig(lifecycle="immediate", seed=7))
    channel = StateChannel()
    state = StateServer(backend, channel)
    state.start()
    remote = RemoteBackend(channel)
    yield backend, remote
    remote.close()
    state.close()
    channel.close()
    backend.close()


@pytest.mark.parametrize("error", [InvalidRequest, BodyTooLarge, Unauthorized, NotFound, ImageNotReady, ImageExpired,
                                   Conflict])
def test_errors_cross_processes_whole(error):
    original = error([FieldError("a", "rule", "one"), FieldError("b", "other", "two")])
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is error and copy.errors == original.errors and copy.body() == original.body()


def test_only_the_http_layers_calls_are_served(shared):
    backend, remote = shared
    for name in ("store.clear", "_finish", "close", "journal._entries"):
        with pytest.raises(StateError):
            remote._call(name)
    assert len(backend.store) == 0


def test_a_remote_error_is_the_same_error(shared):
    _, remote = shared
    with pytest.raises(NotFound) as caught:
        remote.status("k", "nope")
    assert caught.value.errors[0].field == "id"
    with pytest.raises(InvalidRequest) as caught:
        remote.submit("k", {"prompt": ""}, "http://x/")
    assert {e.field for e in caught.value.errors} >= {"prompt", "num_inference_steps"}


def test_in_process_changes_are_published_to_workers(shared):
    """A test's in-process controls (``MockHandle``) change the backend directly; workers still see it."""
    backend, remote = shared
    assert remote.config.lifecycle == "immediate"
    backend.update_config({"lifecycle": "manual"})
    assert remote.config.lifecycle == "manual"
    assert remote.faults.pick("submit").action is None
    backend.faults.add({"type": "status", "status": 502, "times": 1})
    assert remote.faults.pick("submit").action.status == 502
    assert remote.channel.flags.active_faults == 0  # spent, and said so
    backend.reset()
    assert remote.config.lifecycle == "immediate"


def test_a_journal_entry_sent_without_reply_is_read_by_the_next_caller(shared):
    backend, remote = shared
    remote.record_request(method="GET", path="/x", query="", headers=[], body=b"", status=404, duration_ms=1.0)
    other = RemoteBackend(remote.channel)  # another connection, as another worker would have
    try:
        entries = other.journal.entries()
    finally:
        other.close()
    assert [e["path"] for e in entries] == ["/x"]


def test_a_journaled_call_journals_once_with_its_outcome(shared):
    backend, remote = shared
    entry = {"method": "GET", "path": "/sd3_5/v1/status/nope", "query": "", "headers": [], "body": b"",
             "started": time.monotonic()}
    with pytest.raises(NotFound):
        remote.status("k", "nope", journal=entry)
    assert entry["taken"]
    assert [(e["path"], e["status"]) for e in backend.journal.entries()] == [("/sd3_5/v1/status/nope", 404)]
    assert json.dumps(backend.journal.entries())  # shaped for JSON like any other entry


# -- final answers given again by the worker --------------------------------------------------------

FINAL_REQ = {"prompt": "p", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1,
             "width": 256, "height": 256, "batch_id": "b1"}


def test_a_repeated_final_answer_still_counts_and_is_journaled(shared):
    backend, remote = shared
    job = remote.submit("k", FINAL_REQ, "http://x/")
    bodies = [remote.status("k", job["id"]) for _ in range(5)]
    assert all(b == bodies[0] and b["status"] == "SUCCESS" for b in bodies)
    assert (job["id"] == bodies[0]["id"]) and len(remote._final) == 1  # answered by the worker after the first
    detail = remote.job_detail(job["id"])  # a control call takes in the unanswered messages first
    assert detail["polls"] == 5


def test_a_final_answer_is_not_given_for_an_evicted_job(shared):
    backend, remote = shared
    backend.update_config({"max_jobs": 2})
    first = remote.submit("k", FINAL_REQ, "http://x/")["id"]
    assert remote.status("k", first)["status"] == "SUCCESS"  # known final to the worker now
    remote.submit("k", FINAL_REQ, "http://x/")
    remote.submit("k", FINAL_REQ, "http://x/")  # the store holds 2: the first job, least recently used, goes
    with pytest.raises(NotFound):
        remote.status("k", first)


def test_a_final_answer_is_not_given_after_a_reset_or_to_another_key(shared):
    backend, remote = shared
    job_id = remote.submit("k", FINAL_REQ, "http://x/")["id"]
    remote.status("k", job_id)
    with pytest.raises(NotFound):
        remote.status("someone-else", job_id)
    backend.reset()
    with pytest.raises(NotFound):
        remote.status("k", job_id)


def test_a_final_answer_follows_a_profile_change(shared):
    backend, remote = shared
    job_id = remote.submit("k", FINAL_REQ, "http://x/")["id"]
    assert remote.status("k", job_id)["batch_id"] == "b1"
    backend.update_config({"profile": {"echo_batch_id": False}})
    assert "batch_id" not in remote.status("k", job_id)


def test_a_pending_answer_is_never_given_again(shared):
    backend, remote = shared
    backend.update_config({"lifecycle": "polls", "pending_polls": 3})
    job_id = remote.submit("k", FINAL_REQ, "http://x/")["id"]
    assert [remote.status("k", job_id)["status"] for _ in range(4)] == ["PENDING", "PENDING", "SUCCESS", "SUCCESS"]
    assert remote.job_detail(job_id)["polls"] == 4
