"""Who may drive the control plane (docs/wire.md): not a web page the tester has open, not a rebound DNS name,
not a caller without the control token, not the mock's own webhooks; loopback clients may. Real HTTP."""

from urllib.parse import urlsplit

import pytest
import requests

from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.server import serve
from sd35_twin.mockserver.testing import TOKEN_HEADER, MockControl
from sd35_twin.mockserver.webhooks import check_url

KEY = {"API-Key": "guard-key"}
EVIL_PAGE = "http://evil.example"


def port(mock) -> int:
    return urlsplit(mock.url).port


def submit(mock, request) -> dict:
    return requests.post(f"{mock.url}/sd3_5/v1", json=request, headers=KEY, timeout=10).json()


def refusal(response, status: int, field: str) -> str:
    """The rule a FAILURE answer names, once its status and field are the expected ones."""
    body = response.json()
    assert (response.status_code, body["status"], body["errors"][0]["field"]) == (status, "FAILURE", field), body
    assert body["error"].startswith(f"{field}: ")
    return body["errors"][0]["rule"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_cross_site_simple_post_changes_nothing(sd35_mock, valid_request, content_type):
    """What a page elsewhere can send without a preflight: a form or text body, its Origin attached."""
    submit(sd35_mock, valid_request)
    page = {"Content-Type": content_type, "Origin": EVIL_PAGE}
    rigged = requests.post(f"{sd35_mock.url}/__mock__/config", data='{"lifecycle": "manual"}', headers=page,
                           timeout=10)
    assert rigged.status_code == 405  # PATCH only: a browser cannot send a PATCH cross-site without asking
    assert refusal(requests.post(f"{sd35_mock.url}/__mock__/reset", data="x", headers=page, timeout=10),
                   403, "Origin") == "allowed"
    assert refusal(requests.post(f"{sd35_mock.url}/__mock__/reset", headers={"Origin": "null"}, timeout=10),
                   403, "Origin") == "allowed"  # a sandboxed frame, a file:// page
    assert sd35_mock.config()["lifecycle"] == "polls" and len(sd35_mock.jobs()) == 1


@pytest.mark.parametrize("method,path", [("POST", "/reset"), ("PATCH", "/config"), ("POST", "/faults")])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_change_with_a_body_needs_json(sd35_mock, valid_request, method, path, content_type):
    """Even with no Origin at all: only application/json forces a browser to ask first."""
    submit(sd35_mock, valid_request)
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"lifecycle": "manual", "type": "drop"}'
    answer = requests.request(method, f"{sd35_mock.url}/__mock__{path}", data=body, headers=headers, timeout=10)
    assert refusal(answer, 415, "Content-Type") == "json"
    assert sd35_mock.config()["lifecycle"] == "polls" and len(sd35_mock.jobs()) == 1 and sd35_mock.faults() == []


def test_a_change_without_a_body_needs_no_content_type(sd35_mock, valid_request):
    submit(sd35_mock, valid_request)
    assert requests.post(f"{sd35_mock.url}/__mock__/reset", timeout=10).json() == {"ok": True}
    assert sd35_mock.jobs() == []


def test_a_rebound_host_name_is_refused(sd35_mock, valid_request):
    """DNS rebinding: evil.example now resolves to 127.0.0.1, so its page's requests are "same-origin"."""
    submit(sd35_mock, valid_request)
    rebound = {"Host": f"evil.example:{port(sd35_mock)}"}
    assert refusal(requests.get(f"{sd35_mock.url}/__mock__/config", headers=rebound, timeout=10),
                   403, "Host") == "allowed"
    assert refusal(requests.post(f"{sd35_mock.url}/__mock__/reset", json={}, timeout=10,
                                 headers={**rebound, "Origin": f"http://{rebound['Host']}"}), 403, "Origin")
    assert refusal(requests.post(f"{sd35_mock.url}/__mock__/reset", json={}, headers=rebound, timeout=10),
                   403, "Host")
    assert len(sd35_mock.jobs()) == 1


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost", "[::1]:{port}", "[::1]",
                                  "127.3.2.1:80"])
def test_loopback_host_names_are_accepted(sd35_mock, host):
    answer = requests.get(f"{sd35_mock.url}/__mock__/config", headers={"Host": host.format(port=port(sd35_mock))},
                          timeout=10)
    assert answer.status_code == 200 and answer.json()["lifecycle"] == "polls"


def test_a_loopback_origin_may_change_things(sd35_mock):
    """A tool served from another local port (a dashboard on localhost:3000) is the tester's own."""
    for origin in ("http://localhost:3000", f"http://127.0.0.1:{port(sd35_mock)}", "https://[::1]"):
        answer = requests.patch(f"{sd35_mock.url}/__mock__/config", json={"failure_rate": 0.5},
                                headers={"Origin": origin}, timeout=10)
        assert answer.status_code == 200 and answer.json()["failure_rate"] == 0.5


def test_with_a_token_every_control_call_needs_it():
    with serve(MockConfig(lifecycle="manual", control_token="s3cret-t0ken")) as mock:
        job = submit(mock, {"prompt": "p", "negative_prompt": "", "num_inference_steps": 1, "samples": 1,
                            "guidance_scale": 0})  # the provider's API needs no control token
        anyone = MockControl(mock.url)
        assert refusal(anyone.request("POST", f"/jobs/{job['id']}/complete"), 401, TOKEN_HEADER) == "required"
        assert refusal(anyone.request("GET", "/health"), 401, TOKEN_HEADER) == "required"
        guesser = MockControl(mock.url, token="s3cret-t0keN")
        assert refusal(guesser.request("POST", "/reset"), 401, TOKEN_HEADER) == "valid"
        owner = MockControl(mock.url, token="s3cret-t0ken")
        assert owner.jobs()[0]["status"] == "PENDING" and owner.health()
        assert owner.config()["control_token"] == "***"  # never shown whole
        # The token proves the caller, so any Host is accepted (a container reached by its service name).
        assert owner.request("GET", "/config", headers={"Host": "mock:8080"}).status_code == 200
        assert refusal(owner.request("GET", "/config", headers={"Origin": EVIL_PAGE}), 403, "Origin")
        assert owner.complete(job["id"])["status"] == "SUCCESS"


def test_with_the_control_plane_off_every_mock_path_is_a_404():
    with serve(MockConfig(lifecycle="immediate", control_plane=False)) as mock:
        for method, path in [("GET", "/health"), ("POST", "/reset"), ("PATCH", "/config"), ("GET", "/nope")]:
            answer = requests.request(method, f"{mock.url}/__mock__{path}", json={}, timeout=10)
            assert refusal(answer, 404, "path") == "exists"
        assert submit(mock, {"prompt": "p", "negative_prompt": "", "num_inference_steps": 1, "samples": 1,
                             "guidance_scale": 0})["status"] == "SUCCESS"


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_a_webhook_to_the_mock_itself_is_blocked(sd35_mock, valid_request, name):
    """It would come from loopback, with a loopback Host and JSON: the guard would let it reset the mock."""
    sd35_mock.configure(lifecycle="immediate")
    submit(sd35_mock, valid_request)
    job = submit(sd35_mock, dict(valid_request, webhook=f"http://{name}:{port(sd35_mock)}/__mock__/reset"))
    [record] = sd35_mock.webhooks(job["id"])
    assert record["outcome"] == "blocked" and "own address" in record["error"]
    assert len(sd35_mock.jobs()) == 2 and sd35_mock.config()["lifecycle"] == "immediate"


def test_the_own_address_rule():
    own = {("0.0.0.0", 8080)}
    for url in ("http://127.0.0.1:8080/x", "http://[::1]:8080/", "http://0.0.0.0:8080/", "http://LOCALHOST.:8080/"):
        assert check_url(url, ["*"], own)[0] == "blocked", url
    assert check_url("https://localhost/x", [], {("localhost", 443)})[0] == "blocked"  # the scheme's port
    assert check_url("http://mock.lan:8080/x", ["*"], {("mock.lan", 8080)})[0] == "blocked"
    assert check_url("http://127.0.0.1:8081/x", [], own) == ("ok", None)  # another port: a receiver
    assert check_url("http://mock.lan:8080/x", ["*"], own) == ("ok", None)
