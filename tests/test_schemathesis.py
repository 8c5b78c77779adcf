"""Schemathesis against our own /openapi.json, in-process (WSGI) and over real HTTP: no 5xx, responses conform to the document, invalid data is rejected, a bad key is refused."""

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from sd35_twin.mockserver import MockConfig, create_app
from sd35_twin.mockserver.openapi import openapi_document
from sd35_twin.mockserver.server import serve

KEY = "schema-key"
CONFIG = MockConfig(lifecycle="immediate", seed=1, api_keys=(KEY,))  # a closed key list, so bad keys are 401

wsgi_schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(CONFIG))


@wsgi_schema.parametrize()
@settings(max_examples=80, deadline=None)
def test_wsgi_conforms(case):
    case.call_and_validate(headers={"API-Key": KEY})


@pytest.fixture(scope="module")
def http_mock():
    with serve(CONFIG) as mock:
        yield mock


# The very document the server serves (built from the same profile), loaded without a server at
# collection time; each case is then sent over real HTTP to the module's server.
http_schema = schemathesis.openapi.from_dict(openapi_document(CONFIG.profile))


@http_schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_http_conforms(http_mock, case):
    case.call_and_validate(base_url=http_mock.url, headers={"API-Key": KEY})


def test_served_document_is_the_one_tested(http_mock):
    import requests

    served = requests.get(f"{http_mock.url}/openapi.json", timeout=10).json()
    served.pop("servers")
    assert served == openapi_document(CONFIG.profile)


def test_schemathesis_cli_all_checks_and_modes_find_nothing(tmp_path):
    """The whole tool as a user runs it against a served mock with a closed key list: every check, positive
    and negative data, the stateful phase (submit -> status links); 0 findings is exit code 0."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from sd35_twin.mockserver.testing import launch

    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    with launch("--api-key", KEY, "--api-key", "other-key", "--pending-seconds", "0", "--seed", "1", "--quiet") as mock:
        done = subprocess.run([cli, "run", f"{mock.url}/openapi.json", "--checks", "all", "--mode", "all",
                               "-H", f"API-Key: {KEY}", "--max-examples", "30", "--seed", "1", "--no-color"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert "passed" in done.stdout and "Tested: 4" in done.stdout


def test_schemathesis_cli_all_checks_find_nothing_with_rate_limits_on(tmp_path):
    """With rate limits set, most answers are 429 with Retry-After: the document says so (ST103 Undocumented
    status code before), so every check still finds nothing."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from sd35_twin.mockserver.testing import launch

    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    profile = tmp_path / "limits.json"
    profile.write_text(json.dumps({"rate_limits": {"requests_per_minute": 5, "max_pending": 2}}))
    with launch("--api-key", KEY, "--pending-seconds", "0", "--seed", "1", "--quiet", "--profile", str(profile)) as mock:
        done = subprocess.run([cli, "run", f"{mock.url}/openapi.json", "--checks", "all", "--mode", "all",
                               "-H", f"API-Key: {KEY}", "--max-examples", "30", "--seed", "1", "--no-color"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        limited = requests.get(f"{mock.url}/__mock__/journal", timeout=10).json()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert "Tested: 4" in done.stdout
    assert any(entry["status"] == 429 for entry in limited["requests"])  # the limit was met, not avoided
