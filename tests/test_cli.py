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

from sd35_twin.mockserver.cli import build_parser, config_from_args
from sd35_twin.mockserver.testing import MockControl, launch


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


def refused_at_start(args, env=None):
    """Run the mock with bad values: it must refuse before it listens (a started one would time out here)."""
    done = subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", *args], capture_output=True, text=True, timeout=20,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no usage block
    return done.stderr


@pytest.mark.parametrize("args", [
    ["--port", "80000"], ["--port", "-1"], ["--port", "abc"], ["--host", "999.1.1.1"],
    ["--host", "no-such-host.invalid"], ["--host", ""], ["--public-url", "http://a b"], ["--public-url", "ftp://x"],
    ["--public-url", "https://"], ["--public-url", "http://a:99999"], ["--public-url", "http://a\x01b"],
    ["--public-url", "https://a/?"], ["--public-url", "https://a/#"], ["--public-url", "https://a?q"],
    ["--threads", "0"], ["--threads", "257"], ["--max-jobs", "0"], ["--failure-rate", "2"],
    ["--pending-seconds", "-1"], ["--pending-seconds", "nan"], ["--profile", "/no/such/file.json"],
    ["--control-token", ""], ["--control-token", "two words"],
])
def test_a_bad_option_exits_2_with_one_line_naming_it(args):
    assert f"argument {args[0]}: " in refused_at_start(args)


def test_a_bad_profile_is_named_by_its_option(tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"limits": {"samples": {"max": -1}}}))
    assert "argument --profile: limits.samples.max: " in refused_at_start(["--profile", str(profile)])


@pytest.mark.parametrize("name,value,option", [
    ("PORT", "x", "--port"), ("PORT", "70000", "--port"), ("HOST", "999.1.1.1", "--host"),
    ("THREADS", "two", "--threads"), ("PENDING_SECONDS", "soon", "--pending-seconds"), ("SEED", "1.5", "--seed"),
    ("PUBLIC_URL", "http://a b", "--public-url"), ("CONTROL_TOKEN", "", "--control-token"),
])
def test_a_bad_environment_value_exits_2_naming_the_variable(name, value, option):
    """The user set the variable, not the option: the error names what they set. An empty
    SD35_MOCK_CONTROL_TOKEN is refused, not read as "no token": a template left unfilled fails closed."""
    line = refused_at_start([], env={f"SD35_MOCK_{name}": value})
    assert f"error: SD35_MOCK_{name}: " in line and option not in line, line


@pytest.mark.parametrize("args", [
    ["--manual", "--pending-polls", "2"], ["--pending-seconds", "0", "--pending-polls", "2"],
    ["--manual", "--pending-seconds", "1"],
])
def test_two_timings_of_the_lifecycle_are_refused_naming_both(args):
    line = refused_at_start(args)
    assert args[0] in line and [a for a in args[1:] if a.startswith("--")][0] in line and "cannot both be given" in line


def test_two_timings_in_the_environment_are_refused_naming_both_variables():
    line = refused_at_start([], env={"SD35_MOCK_MANUAL": "1", "SD35_MOCK_PENDING_POLLS": "2"})
    assert "SD35_MOCK_PENDING_POLLS" in line and "SD35_MOCK_MANUAL" in line and "cannot both be given" in line


def test_a_timing_on_the_command_line_replaces_the_environments(monkeypatch):
    monkeypatch.setenv("SD35_MOCK_MANUAL", "1")
    monkeypatch.setenv("SD35_MOCK_PENDING_SECONDS", "7")  # with MANUAL: refused alone, replaced here
    config = config_from_args(build_parser().parse_args(["--pending-polls", "3"]))
    assert (config.lifecycle, config.pending_polls, config.pending_seconds) == ("polls", 3, 2.0)
    monkeypatch.delenv("SD35_MOCK_PENDING_SECONDS")
    assert config_from_args(build_parser().parse_args([])).lifecycle == "manual"


@pytest.mark.parametrize("args", [["--pending-polls", "0"], ["--pending-polls", "-1"]])
def test_pending_polls_must_be_at_least_one(args):
    assert "argument --pending-polls: " in refused_at_start(args) and "from 1" in refused_at_start(args)


def test_a_config_error_from_the_environment_names_the_variable():
    assert "SD35_MOCK_FAILURE_RATE: " in refused_at_start([], env={"SD35_MOCK_FAILURE_RATE": "2"})
    assert "argument --failure-rate: " in refused_at_start(["--failure-rate", "2"])


def test_a_token_from_the_environment_guards_the_control_plane():
    with launch("--quiet", env={"SD35_MOCK_CONTROL_TOKEN": "env-t0ken"}) as mock:
        assert MockControl(mock.url).request("GET", "/health").status_code == 401
        assert MockControl(mock.url, token="env-t0ken").health()
        assert not any("warning" in line for line in mock.output)


def test_no_control_plane_from_the_environment():
    with launch("--quiet", env={"SD35_MOCK_NO_CONTROL_PLANE": "1"}) as mock:
        assert requests.get(f"{mock.url}/__mock__/health", timeout=10).status_code == 404
        assert requests.get(f"{mock.url}/openapi.json", timeout=10).ok  # a liveness check that always answers


def test_every_interface_without_a_token_warns_once_and_never_calls_itself():
    """--host 0.0.0.0 is reachable from the network; this test only sends loopback traffic to it."""
    with launch("--quiet", "--host", "0.0.0.0", "--pending-seconds", "0") as mock:
        [warning] = [line for line in mock.output if "warning" in line]
        assert "--host 0.0.0.0" in warning and "SD35_MOCK_CONTROL_TOKEN" in warning
        port = mock.url.rsplit(":", 1)[1]
        control = MockControl(mock.url)
        assert control.request("GET", "/config", headers={"Host": f"0.0.0.0:{port}"}).status_code == 200
        assert control.request("GET", "/config", headers={"Host": f"192.0.2.1:{port}"}).status_code == 403
        body = {"prompt": "p", "negative_prompt": "", "num_inference_steps": 1, "samples": 1, "guidance_scale": 0}
        for own in (f"127.0.0.1:{port}", f"0.0.0.0:{port}"):
            job = requests.post(f"{mock.url}/sd3_5/v1", json=dict(body, webhook=f"http://{own}/__mock__/reset"),
                                headers={"API-Key": "k"}, timeout=10).json()
            assert [r["outcome"] for r in control.webhooks(job["id"])] == ["blocked"]
        assert len(control.jobs()) == 2
    with launch("--quiet", "--host", "0.0.0.0", "--control-token", "t0ken") as mock:
        assert not any("warning" in line for line in mock.output)


def test_port_in_use_is_a_clear_error(run_mock):
    url = run_mock()
    port = url.rsplit(":", 1)[1]
    done = subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", "--port", port], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "cannot listen" in done.stderr
    assert f"A twin already answers there (http://127.0.0.1:{port})" in done.stderr and "--port 0" in done.stderr


def test_a_port_another_program_holds_says_so():
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()  # accepts nothing: no twin answers
        port = str(holder.getsockname()[1])
        done = subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", "--port", port], capture_output=True,
                              text=True, timeout=30)
    assert done.returncode == 2 and "Another program holds it (not a twin)" in done.stderr and "--port 0" in done.stderr


def test_workers_is_an_unknown_option():
    done = subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", "--workers", "2"], capture_output=True, text=True,
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
    # Well before docker's 10 s, and before the 15 s a kept-alive idle connection could hold it; not "< 1 s":
    # a loaded machine takes longer than that to tear an interpreter down, and that is no bug.
    assert time.monotonic() - started < 5.0
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
    assert time.monotonic() - started < 5.0  # well before docker's 10 s (see above)
