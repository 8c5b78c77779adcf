"""The Node example (docs/examples/node, docs/http.md) passes ``node --test`` against a twin started as its section
says: ``sd35-mock`` started by the example itself, and a twin already serving (as a container would) with a control
token. Skipped without node, except under CI, where a missing node fails (issue 21)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sd35_twin.mockserver.testing import launch
from tests.helpers import REPO

EXAMPLE = REPO / "docs" / "examples" / "node"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed, and CI is set: the Node example must run in CI (install nodejs)")
        pytest.skip("node is not installed")
    return found


def node_test(env: dict[str, str]) -> subprocess.CompletedProcess:
    """``npm test`` as package.json says, run by node itself (npm is not needed to run it)."""
    bin_dir = str(Path(sys.executable).parent)  # where pip put sd35-mock
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SD35_MOCK_")}
    done = subprocess.run([node(), "--test", "--test-reporter=tap", "app.test.mjs"], cwd=EXAMPLE, capture_output=True,
                          text=True, timeout=120,
                          env={**inherited, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **env})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 4" in done.stdout and "# fail 0" in done.stdout, done.stdout
    return done


def test_the_node_example_starts_sd35_mock_itself():
    node_test({})


def test_the_node_example_against_a_running_twin_with_a_control_token():
    with launch("--control-token", "example-token") as mock:
        node_test({"SD35_MOCK_URL": mock.url, "SD35_MOCK_CONTROL_TOKEN": "example-token"})
    assert any("injected fault: POST /sd3_5/v1: drop after" in line for line in mock.output), mock.output


def test_the_package_script_is_what_this_test_runs():
    import json

    assert json.loads((EXAMPLE / "package.json").read_text("utf-8"))["scripts"]["test"] == "node --test app.test.mjs"
