"""Properties over real HTTP: valid requests converge with the right images; one broken rule is named."""

import io
import json

import requests
from hypothesis import HealthCheck, given, settings
from PIL import Image

from tests.strategies import one_rule_broken, valid_requests

KEY = {"API-Key": "prop-key"}
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]  # too_slow: a loaded machine (conftest.py)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(request=valid_requests(max_side=512))
def test_valid_requests_converge_to_success_with_right_images(sd35_mock_server, request):
    mock = sd35_mock_server
    mock.reset()  # a session server: start each example from the start-up state
    mock.configure(lifecycle="polls", pending_polls=2)
    submitted = requests.post(f"{mock.url}/sd3_5/v1", json=request, headers=KEY, timeout=10)
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    for _ in range(3):
        if body["status"] != "PENDING":
            break
        body = requests.get(f"{mock.url}/sd3_5/v1/status/{body['id']}", headers=KEY, timeout=10).json()
    assert body["status"] == "SUCCESS"
    assert len(body["download_urls"]) == request["samples"]
    size = (request.get("width", 1024), request.get("height", 1024))
    for url in body["download_urls"]:
        image = requests.get(url, timeout=30)
        assert image.status_code == 200
        assert Image.open(io.BytesIO(image.content)).size == size


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(case=one_rule_broken())
def test_one_broken_rule_is_rejected_naming_that_field(sd35_mock_server, case):
    request, field = case
    mock = sd35_mock_server
    mock.reset()
    jobs_before = len(mock.jobs())
    # json.dumps, not requests' json=: NaN and Infinity must reach the server as the literals clients send.
    response = requests.post(f"{mock.url}/sd3_5/v1", data=json.dumps(request), timeout=10,
                             headers={**KEY, "Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "FAILURE" and body["error"].startswith(f"{field}: ")
    assert {e["field"] for e in body["errors"]} == {field}
    assert len(mock.jobs()) == jobs_before
