"""``python -m mockserver`` as a user runs it: a real process, a ready line, options and env vars."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mockserver.cli import build_parser, config_from_args
from mockserver.testing import launch


@pytest.fixture
def run_mock():
    launched = []

    def run(*args, env=None):
        mock = launch("--quiet", *args, env=env)
        launched.append(mock)
        assert mock.url.startswith("http://127.0.0.1:")
        return mock.url

    yield run
    for mock in launched:
        mock.stop()


def test_serves_with_waitress_and_options_apply(run_mock):
    url = run_mock("--api-key", "k1", "--api-key", "k2", "--pending-polls", "1", "--seed", "5")
    body = {"prompt": "p", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1}
    assert requests.post(f"{url}/sd3_5/v1", json=body, headers={"API-Key": "nope"}, timeout=10).status_code == 401
    job = requests.post(f"{url}/sd3_5/v1", json=body, headers={"API-Key": "k2"}, timeout=10)
    assert job.headers["Server"] == "sd35-mock" and job.json()["status"] == "PENDING"
    assert requests.get(f"{url}/sd3_5/v1/status/{job.json()['id']}", headers={"API-Key": "k2"},
                        timeout=10).json()["status"] == "SUCCESS"


def test_environment_variables(run_mock, tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"limits": {"samples": {"max": 4}}}))
    url = run_mock(env={"SD35_MOCK_API_KEYS": "env-key", "SD35_MOCK_PENDING_SECONDS": "0",
                        "SD35_MOCK_PROFILE": str(profile), "SD35_MOCK_PUBLIC_URL": "https://cdn.example"})
    body = {"prompt": "p", "negative_prompt": "", "num_inference_steps": 4, "samples": 4, "guidance_scale": 1,
            "width": 256, "height": 256}
    answer = requests.post(f"{url}/sd3_5/v1", json=body, headers={"API-Key": "env-key"}, timeout=10).json()
    assert answer["status"] == "SUCCESS" and len(answer["download_urls"]) == 4
    assert answer["download_urls"][0].startswith("https://cdn.example/files/")


@pytest.mark.parametrize("args,expected", [
    ([], ("seconds", 2.0)), (["--pending-seconds", "0"], ("immediate", 0.0)),
    (["--pending-seconds", "3.5"], ("seconds", 3.5)), (["--pending-polls", "4"], ("polls", 2.0)),
    (["--manual"], ("manual", 2.0)),
])
def test_lifecycle_options(args, expected):
    config = config_from_args(build_parser().parse_args(args))
    assert (config.lifecycle, config.pending_seconds) == expected


@pytest.mark.parametrize("args,message", [
    (["--failure-rate", "2"], "failure_rate"), (["--pending-seconds", "-1"], "pending_seconds"),
    (["--public-url", "ftp://x"], "public_url"), (["--profile", "/no/such/file.json"], "profile"),
    (["--port", "abc"], "invalid int"),
])
def test_bad_options_exit_2_with_the_reason(args, message):
    done = subprocess.run([sys.executable, "-m", "mockserver", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("name,value,option", [("PORT", "x", "--port"), ("THREADS", "two", "--threads"),
                                               ("PENDING_SECONDS", "soon", "--pending-seconds"), ("SEED", "1.5", "--seed")])
def test_bad_environment_values_exit_2_naming_the_option(name, value, option):
    done = subprocess.run([sys.executable, "-m", "mockserver"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, f"SD35_MOCK_{name}": value})
    assert done.returncode == 2 and f"argument {option}: invalid" in done.stderr and "Traceback" not in done.stderr


def test_port_in_use_is_a_clear_error(run_mock):
    url = run_mock()
    port = url.rsplit(":", 1)[1]
    done = subprocess.run([sys.executable, "-m", "mockserver", "--port", port], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "cannot listen" in done.stderr


def test_workers_is_an_unknown_option():
    done = subprocess.run([sys.executable, "-m", "mockserver", "--workers", "2"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "unrecognized arguments: --workers" in done.stderr


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_mock_at_once_with_exit_0(signal_name):
    """``docker stop`` sends SIGTERM and kills after 10 s: the mock must leave cleanly well before."""
    mock = launch("--quiet")
    session = requests.Session()  # a keep-alive connection left open must not hold the mock up
    assert session.get(f"{mock.url}/__mock__/health", timeout=10).ok
    started = time.monotonic()
    mock.process.send_signal(getattr(signal, signal_name))
    assert mock.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 1.0
    session.close()


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare(1)")
def test_sigterm_ends_the_mock_as_pid_1():
    """As a container's first process the kernel gives SIGTERM no default action: only a handler ends it."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"no PID namespace here: {probe.stderr.decode(errors='replace').strip()}")
    mock = launch("--quiet", wrapper=("unshare", "--pid", "--fork", "--kill-child"))
    [child] = Path(f"/proc/{mock.process.pid}/task/{mock.process.pid}/children").read_text().split()
    [nspid] = [line for line in Path(f"/proc/{child}/status").read_text().splitlines() if line.startswith("NSpid:")]
    assert nspid.split()[-1] == "1"  # the mock is PID 1 of its namespace
    started = time.monotonic()
    os.kill(int(child), signal.SIGTERM)
    assert mock.process.wait(timeout=10) == 0  # unshare exits with its child's code
    assert time.monotonic() - started < 1.0
