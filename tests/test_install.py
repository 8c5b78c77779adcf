"""Installed next to anyone's code: the wheel puts one distinctive name on the import path (``sd35_twin``), so a
user's own ``contracts/``, ``client.py``, ``mockserver.py`` and ``bench/`` stay theirs, and our fixtures and
contract suite still load beside them, with the ``pytest`` script and with ``python -m pytest``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow

USER_TESTS = {
    "conftest.py": "",   # the usual root conftest: the project's own modules importable under the pytest script too
    "contracts/__init__.py": "OWNER = 'user'\n",
    "contracts/plugin.py": "OWNER = 'user'\n",
    "client.py": "OWNER = 'user'\n",
    "mockserver.py": "OWNER = 'user'\n",
    "bench/__init__.py": "OWNER = 'user'\n",
    "tests/test_own.py": """
        import bench, client, contracts, contracts.plugin, mockserver

        def test_the_projects_own_modules_are_its_own():
            assert {m.OWNER for m in (bench, client, contracts, contracts.plugin, mockserver)} == {"user"}
        """,
    "tests/test_with_the_twin.py": """
        import requests

        import contracts
        from sd35_twin.client import ImagePipelineClient

        def test_the_fixture_serves_the_twin_beside_the_users_modules(sd35_mock):
            sd35_mock.configure(lifecycle="immediate")
            with ImagePipelineClient(api_key="k", base_url=sd35_mock.url) as api:
                done = api.generate(prompt="a fox", negative_prompt="", samples=1, num_inference_steps=4,
                                    guidance_scale=0.0, width=256, height=256)
            assert done.status == "SUCCESS" and len(done.download_urls) == 1
            assert requests.get(done.download_urls[0], timeout=10).status_code == 200
            assert contracts.OWNER == "user"
        """,
    # the in-process twin in the installed package (issue 19), with no httpx installed: requests only
    "tests/test_no_server.py": """
        import socket

        import pytest
        import requests

        import mockserver
        from sd35_twin.mockserver.inprocess import mock_sd35

        API = "https://api.imagepipeline.io"
        REQ = dict(prompt="a fox", negative_prompt="", num_inference_steps=4, samples=1, guidance_scale=0,
                   width=256, height=256)

        @pytest.fixture
        def no_sockets(monkeypatch):
            monkeypatch.setattr(socket.socket, "connect", lambda self, address: pytest.fail(f"socket to {address}"))

        def test_mock_sd35_answers_the_live_url_in_process(no_sockets):
            with mock_sd35() as twin:
                job = requests.post(f"{API}/sd3_5/v1", json=REQ, headers={"API-Key": "k"}).json()
                done = requests.get(f"{API}/sd3_5/v1/status/{job['id']}", headers={"API-Key": "k"}).json()
                assert requests.get(done["download_urls"][0]).content[:3] == bytes([0xFF, 0xD8, 0xFF])  # a JPEG
            twin.assert_submits(1)
            assert mockserver.OWNER == "user"

        def test_the_fixture(sd35_inprocess, no_sockets):
            sd35_inprocess.fault(endpoint="submit", type="drop")
            with pytest.raises(requests.ConnectionError):
                requests.post(f"{API}/sd3_5/v1", json=REQ, headers={"API-Key": "k"})
        """,
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel built from this checkout (and pytest, hypothesis)."""
    where = tmp_path_factory.mktemp("install")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(where / "dist"), str(REPO)],
                   check=True, capture_output=True, env=env, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True, timeout=120)
    wheel = next((where / "dist").glob("sd35_twin-*.whl"))
    subprocess.run([str(where / "venv/bin/python"), "-m", "pip", "install", "-q", str(wheel), "pytest", "hypothesis"],
                   check=True, capture_output=True, env=env, timeout=300)
    return where / "venv"


@pytest.fixture
def user_project(tmp_path) -> Path:
    for name, text in USER_TESTS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def run(argv: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH", "SD35_"))}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


def test_the_wheel_installs_one_distinctive_name_and_no_bench(installed):
    shown = run([str(installed / "bin/python"), "-m", "pip", "show", "-f", "sd35-twin"], cwd=installed).stdout
    files = [line.strip() for line in shown.split("Files:", 1)[1].splitlines() if line.strip()]
    top = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert top == {"sd35_twin", "sd35_twin-0.1.0.dist-info"}, top
    assert not [f for f in files if "bench" in f], files
    assert {"sd35_twin/mockserver/profiles/default.json", "sd35_twin/contracts/ledger.json",
            "sd35_twin/client/api.py"} <= set(files)
    assert sorted(f.rsplit("/", 1)[-1] for f in files if f.startswith("../../../bin/")) == ["sd35-client", "sd35-mock"]


@pytest.mark.parametrize("pytest_command", [["bin/pytest"], ["bin/python", "-m", "pytest"]],
                         ids=["pytest", "python -m pytest"])
def test_a_users_own_modules_and_our_fixtures_work_side_by_side(installed, user_project, pytest_command):
    argv = [str(installed / pytest_command[0]), *pytest_command[1:], "-p", "no:cacheprovider", "-q"]
    done = run(argv, cwd=user_project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout.splitlines()[-1]


def test_our_contract_suite_runs_in_the_same_session_as_the_users_tests(installed, user_project):
    """pytest names a namespace package's test modules by their short name unless told to consider namespace
    packages: with that option our ``sd35_twin.contracts`` never collides with the user's ``contracts``."""
    done = run([str(installed / "bin/pytest"), "-p", "no:cacheprovider", "-q", "tests", "--pyargs",
                "sd35_twin.contracts", "-o", "consider_namespace_packages=true", "--ledger-rows", "L03"],
               cwd=user_project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "10 passed" in done.stdout.splitlines()[-1], done.stdout[-500:]


@pytest.mark.parametrize("argv", [["bin/sd35-mock", "--help"], ["bin/sd35-client", "--help"],
                                  ["bin/python", "-m", "sd35_twin.mockserver", "--help"],
                                  ["bin/python", "-m", "sd35_twin.client", "--help"],
                                  ["bin/python", "-m", "sd35_twin.contracts", "--help"]], ids=" ".join)
def test_the_commands_work_under_the_new_name(installed, user_project, argv):
    done = run([str(installed / argv[0]), *argv[1:]], cwd=user_project)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
