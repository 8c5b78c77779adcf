"""The container image (Dockerfile, docs/docker.md), built and run as a user builds and runs it.

Where no container registry is reachable, ``docker-offline-base`` (../shared/tools) provides the daemon and a
Debian-built base image; builds and containers then use ``--network host``. Without any daemon the test is
skipped, except under CI (env ``CI`` set), where a missing daemon fails: CI can never pass without it.
One test function, so under pytest-xdist only one worker builds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tests.helpers import fixed_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IMAGE = "sd35-twin:test"  # one tag, reused: a warm run rebuilds from the layer cache
PNG = b"\x89PNG\r\n\x1a\n"


def unavailable(reason: str):
    """No daemon here: a skip, or under CI a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the container test must run, but: {reason}")
    pytest.skip(reason)


def find_tool() -> Path | None:
    configured = os.environ.get("SD35_DOCKER_OFFLINE_BASE")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"SD35_DOCKER_OFFLINE_BASE={configured} is not a file")
        return Path(configured)
    for candidate in (REPO.parent / "shared/tools/docker-offline-base", Path("/work/shared/tools/docker-offline-base")):
        if candidate.is_file():
            return candidate
    return None


def docker_client() -> str | None:
    """Debian's client first: the one docker-offline-base uses, whose BuildKit needs no buildx plug-in."""
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


def daemon_and_base() -> tuple[str, str | None]:
    """The docker client and the BASE build argument (None: the Dockerfile's default, from a registry)."""
    tool = find_tool()
    if tool is not None:
        try:
            done = subprocess.run([str(tool)], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            unavailable(f"{tool} did not finish in 900 s")
        if done.returncode != 0 or not done.stdout.strip():
            unavailable(f"{tool} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        docker = docker_client()
        if docker is None:
            pytest.fail(f"{tool} succeeded but there is no docker client")
        return docker, done.stdout.strip().splitlines()[-1]
    docker = docker_client()
    if docker is None:
        unavailable("no docker-offline-base tool and no docker client")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        unavailable(f"no docker-offline-base tool and `{docker} info` fails: {info.stderr.strip()[-300:]}")
    return docker, None


def pip_build_args() -> list[str]:
    """The host's pip index settings and proxies as --build-arg, so pip inside the build reaches packages the
    way pip here does. Local (file://) indexes and paths are left out: they do not exist inside the build.
    The CA bundle is not passed: the offline base image carries this machine's CA certificates already."""
    settings: dict[str, str] = {}
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            timeout=60).stdout
    for scope in ("global", "user", "site", ":env:"):  # later scopes win, as in pip
        for name, value in re.findall(rf"^{re.escape(scope)}\.(index-url|extra-index-url|trusted-host)='(.*)'$",
                                      listed, re.M):
            settings[name] = value
    for name in ("index-url", "extra-index-url", "trusted-host"):
        settings[name] = os.environ.get("PIP_" + name.upper().replace("-", "_"), settings.get(name, ""))
    args = []
    for name, value in settings.items():
        kept = [v for v in value.split() if not v.startswith("file:") and not v.startswith("/")]
        if kept:
            args += ["--build-arg", f"PIP_{name.upper().replace('-', '_')}={' '.join(kept)}"]
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        if os.environ.get(proxy):  # predefined build arguments: no ARG needed in the Dockerfile
            args += ["--build-arg", f"{proxy}={os.environ[proxy]}"]
    return args


def run(*argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])} ... exited {done.returncode}:\n{done.stdout[-2000:]}\n"
                             f"{done.stderr[-2000:]}")
    return done


def wait_for(what: str, check, deadline_s: float, on_timeout=lambda: ""):
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_s} s\n{on_timeout()}")
        time.sleep(0.05)


def started_at(check: dict) -> float:
    """When a health check started, as ``time.time()``: docker writes it in RFC 3339, to the nanosecond."""
    stamp = re.fullmatch(r"(.{19})(\.\d+)?(Z|[+-]\d\d:\d\d)", check["Start"])
    assert stamp, check["Start"]
    whole, fraction, zone = stamp.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(fraction or 0)


@pytest.mark.timeout(1200)  # a cold run installs docker.io and debootstraps a base image first
def test_the_image_serves_the_lifecycle_runs_as_a_user_and_stops_at_once(record_property):
    docker, base = daemon_and_base()
    env_build = dict(os.environ)
    if docker == "/usr/bin/docker":  # Debian's 20.10 client: BuildKit built in, but off unless asked for
        env_build.setdefault("DOCKER_BUILDKIT", "1")
    started = time.monotonic()
    build = subprocess.run([docker, "build", "--network", "host", *(["--build-arg", f"BASE={base}"] if base else []),
                            *pip_build_args(), "-t", IMAGE, str(REPO)],
                           capture_output=True, text=True, timeout=900, env=env_build)
    assert build.returncode == 0, f"docker build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    build_s = time.monotonic() - started

    port = fixed_port()
    url = f"http://127.0.0.1:{port}"
    name = f"sd35-twin-test-{os.getpid()}-{port}"

    def logs() -> str:
        done = run(docker, "logs", name, check=False)
        return f"container output:\n{done.stdout}{done.stderr}"

    try:
        started = time.monotonic()
        run(docker, "run", "-d", "--name", name, "--network", "host", "--health-interval=1s",
            "-e", f"SD35_MOCK_PORT={port}", "-e", "SD35_MOCK_PENDING_POLLS=1", IMAGE)

        def answers():
            try:
                return requests.get(f"{url}/openapi.json", timeout=2).ok
            except requests.ConnectionError:
                state = run(docker, "inspect", "-f", "{{.State.Status}}", name).stdout.strip()
                assert state in ("created", "running"), f"the container is {state}:\n{logs()}"
                return False
        wait_for("/openapi.json answers", answers, 30, logs)
        answered_at = time.time()
        startup_s = time.monotonic() - started

        # The provider's lifecycle: submit, SUCCESS on the first poll, a PNG download.
        body = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
                "guidance_scale": 0, "direct_link": True}
        job = requests.post(f"{url}/sd3_5/v1", json=body, headers={"API-Key": "k"}, timeout=10)
        assert job.status_code == 200 and job.json()["status"] == "PENDING", job.text
        status = requests.get(f"{url}/sd3_5/v1/status/{job.json()['id']}", headers={"API-Key": "k"}, timeout=10)
        assert status.json()["status"] == "SUCCESS", status.text
        image = requests.get(status.json()["download_urls"][0], timeout=10)
        assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
        assert image.content.startswith(PNG)

        # The image's HEALTHCHECK (python, no curl), the user, and the mock as PID 1 (exec form).
        health = lambda: run(docker, "inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()  # noqa: E731
        wait_for("the health check reports healthy", lambda: health() == "healthy", 30,
                 lambda: run(docker, "inspect", "-f", "{{json .State.Health}}", name).stdout)
        # Health checks are not traffic: /healthz answered docker, and neither the journal nor its counts hold it.
        # A check that ran before the mock listened failed, as it should (on a busy machine a start takes over the
        # 1 s between checks); every one since passed.
        def checks() -> list[dict]:
            return json.loads(run(docker, "inspect", "-f", "{{json .State.Health.Log}}", name).stdout)

        def since() -> list[dict]:
            return [c for c in checks() if started_at(c) >= answered_at]

        wait_for("a health check that started after the mock answered", since, 30, lambda: str(checks()))
        assert all(c["ExitCode"] == 0 for c in since()), checks()
        journal = requests.get(f"{url}/__mock__/journal", timeout=10).json()["requests"]
        assert journal and not [e for e in journal if e["path"] == "/healthz"], journal
        assert requests.get(f"{url}/__mock__/journal/counts", timeout=10).json()["total"] == len(journal)
        assert run(docker, "exec", name, "id", "-u").stdout.strip() != "0"
        assert run(docker, "inspect", "-f", "{{.Config.User}}", name).stdout.strip() not in ("", "0", "root")
        assert "mockserver" in run(docker, "exec", name, "cat", "/proc/1/cmdline").stdout

        # docker stop sends SIGTERM and kills after 10 s: the mock must exit 0 (not 137) at once.
        started = time.monotonic()
        run(docker, "stop", name, timeout=30)
        stop_s = time.monotonic() - started
        exit_code = run(docker, "inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        print(f"\ndocker build {build_s:.1f} s, start-up until /openapi.json answers {startup_s:.2f} s, "
              f"docker stop {stop_s:.2f} s (exit code {exit_code})")
        for key, value in (("docker_build_s", build_s), ("startup_s", startup_s), ("docker_stop_s", stop_s)):
            record_property(key, round(value, 3))
        assert exit_code == "0", f"exit code {exit_code}: SIGTERM not handled\n{logs()}"
        assert stop_s < 5, f"docker stop took {stop_s:.1f} s"
    finally:
        run(docker, "rm", "-f", name, check=False, timeout=60)
