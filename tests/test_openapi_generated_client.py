"""A client generated from the twin's own /openapi.json by a tool nobody here wrote (openapi-python-client)
submits, polls and downloads against a real twin, and parses its refusals (400, 401, 404, 429) as the
documented Failure body, not ``parsed=None``."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from sd35_twin.mockserver import MockConfig
from sd35_twin.mockserver.config import load_profile
from sd35_twin.mockserver.server import serve
from sd35_twin.mockserver.testing import MockControl

KEY = "generated-key"
PER_MINUTE = 8
PROFILE = load_profile(overrides={"rate_limits": {"requests_per_minute": PER_MINUTE, "max_pending": None}})


@pytest.fixture(scope="module")
def twin():
    with serve(MockConfig(lifecycle="polls", pending_polls=2, api_keys=(KEY, "spent-key"), profile=PROFILE)) as mock:
        yield mock


@pytest.fixture(scope="module")
def generated(twin, tmp_path_factory):
    """The package openapi-python-client writes for the served document, imported. Generation reads a local
    file and runs no post-hook (no ruff); a proxy that refuses every connection makes any download fail it."""
    tool = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    assert tool, "openapi-python-client is in the test extra: pip install -e '.[test]'"
    work = tmp_path_factory.mktemp("generated")
    (work / "openapi.json").write_text(json.dumps(requests.get(f"{twin.url}/openapi.json", timeout=10).json()))
    (work / "config.json").write_text(json.dumps({"package_name_override": "twin_client", "post_hooks": []}))
    no_network = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                  "NO_PROXY": ""}
    done = subprocess.run([tool, "generate", "--path", "openapi.json", "--config", "config.json", "--meta", "none",
                           "--output-path", "twin_client", "--fail-on-warning"],
                          cwd=work, env=no_network, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    sys.path.insert(0, str(work))
    try:
        yield {name: importlib.import_module(f"twin_client.{name}") for name in (
            "client", "models", "api.default.submit", "api.default.status", "api.default.download_opaque",
            "api.default.download_direct")}
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m == "twin_client" or m.startswith("twin_client.")]:
            del sys.modules[name]


def request_body(models, **changes):
    fields = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
              "guidance_scale": 3.5, **changes}
    return models.GenerationRequest(**fields)  # width and height left out: optional, the twin's defaults apply


def test_submit_poll_and_download_through_the_generated_client(twin, generated):
    MockControl(twin.url).reset()
    models, client = generated["models"], generated["client"].Client(base_url=twin.url, headers={"API-Key": KEY})
    submitted = generated["api.default.submit"].sync_detailed(client=client, body=request_body(models))
    assert submitted.status_code == 200 and isinstance(submitted.parsed, models.JobStatus)
    assert submitted.parsed.status.value == "PENDING"
    job = submitted.parsed
    while job.status.value == "PENDING":
        polled = generated["api.default.status"].sync_detailed(id=job.id, client=client)
        assert isinstance(polled.parsed, models.JobStatus), polled.content
        job = polled.parsed
    assert job.status.value == "SUCCESS" and len(job.download_urls) == 1
    token = urlsplit(job.download_urls[0]).path.rsplit("/", 1)[1]
    image = generated["api.default.download_opaque"].sync_detailed(token=token, client=generated["client"].Client(base_url=twin.url))
    assert image.status_code == 200 and image.parsed is not None
    assert image.parsed.payload.read()[:3] == b"\xff\xd8\xff"  # the JPEG the twin serves, as a File
    direct = generated["api.default.submit"].sync(client=client, body=request_body(models, direct_link=True))
    for _ in range(2):
        direct = generated["api.default.status"].sync(id=direct.id, client=client)
    png = generated["api.default.download_direct"].sync_detailed(name=urlsplit(direct.download_urls[0]).path.rsplit("/", 1)[1],
                                                                client=generated["client"].Client(base_url=twin.url))
    assert png.parsed.payload.read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_refusals_parse_as_the_documented_failure(twin, generated):
    MockControl(twin.url).reset()
    models, make = generated["models"], generated["client"].Client
    submit, status = generated["api.default.submit"], generated["api.default.status"]
    client = make(base_url=twin.url, headers={"API-Key": KEY})

    invalid = submit.sync_detailed(client=client, body=request_body(models, samples=99))
    assert invalid.status_code == 400 and isinstance(invalid.parsed, models.Failure)
    assert invalid.parsed.errors[0].field == "samples" and "samples" in invalid.parsed.error

    unauthorized = status.sync_detailed(id="x", client=make(base_url=twin.url, headers={"API-Key": "nobody"}))
    assert unauthorized.status_code == 401 and isinstance(unauthorized.parsed, models.Failure)
    assert unauthorized.parsed.errors[0].field == "API-Key"

    unknown = status.sync_detailed(id="no-such-job", client=client)
    assert unknown.status_code == 404 and isinstance(unknown.parsed, models.Failure)
    missing = generated["api.default.download_opaque"].sync_detailed(token="nope", client=make(base_url=twin.url))
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Failure)

    answers = [status.sync_detailed(id="no-such-job", client=client) for _ in range(PER_MINUTE)]
    limited = answers[-1]
    assert [a.status_code for a in answers].count(429) >= 1 and limited.status_code == 429
    assert isinstance(limited.parsed, models.Failure) and limited.parsed.errors[0].rule == "rate_limit"
    assert int(limited.headers["Retry-After"]) >= 1
    refused = submit.sync_detailed(client=client, body=request_body(models))
    assert refused.status_code == 429 and isinstance(refused.parsed, models.Failure)
