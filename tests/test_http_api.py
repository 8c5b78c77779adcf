"""The public API over real HTTP: bodies, codes, downloads, hostile input, and the page's own example."""

import io
import json
import subprocess
import sys

import pytest
import requests
from PIL import Image

from sd35_twin.mockserver import MockConfig
from sd35_twin.mockserver.server import serve
from tests.helpers import PAGE, PAGE_EXAMPLE, PAGE_URL

KEY = {"API-Key": "test-key"}


def post(mock, body, headers=KEY, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{mock.url}/sd3_5/v1", data=data, headers=headers, timeout=10, **kwargs)


def status(mock, job_id, headers=KEY):
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers=headers, timeout=10)


def assert_failure(response, code, field):
    assert response.status_code == code
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "FAILURE" and field in body["error"]
    assert field in [e["field"] for e in body["errors"]]
    assert "Traceback" not in response.text
    return body


def test_page_example_against_the_mock(sd35_mock):
    """The provider's own snippet, with only its URL changed, gets a valid answer."""
    code = PAGE_EXAMPLE.read_text()
    assert PAGE_URL in code
    out = subprocess.run([sys.executable, "-c", code.replace(PAGE_URL, f"{sd35_mock.url}/sd3_5/v1")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    answer = eval(out)  # the snippet prints a dict repr
    assert answer["status"] in ("PENDING", "SUCCESS") and answer["id"]
    assert sd35_mock.jobs()[0]["id"] == answer["id"]


@pytest.mark.skipif(not PAGE.exists(), reason="../shared/api/sd3_5-v1.txt is not beside this checkout")
def test_vendored_example_is_the_page_verbatim():
    body = PAGE_EXAMPLE.read_text().split("\n", 1)[1].strip()
    assert body in PAGE.read_text()


def test_lifecycle_over_http(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="polls", pending_polls=2)
    submitted = post(sd35_mock, valid_request)
    assert submitted.status_code == 200 and submitted.json() == {"status": "PENDING", "id": submitted.json()["id"]}
    job_id = submitted.json()["id"]
    first, second = status(sd35_mock, job_id), status(sd35_mock, job_id)
    assert first.json() == {"status": "PENDING", "id": job_id}
    assert second.status_code == 200 and second.json()["status"] == "SUCCESS"
    assert len(second.json()["download_urls"]) == 2
    assert status(sd35_mock, job_id).json() == second.json()


def test_immediate_success_at_post(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="immediate")
    body = post(sd35_mock, dict(valid_request, samples=1)).json()
    assert body["status"] == "SUCCESS" and len(body["download_urls"]) == 1


def test_images_are_real_exact_and_deterministic(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="immediate")
    request = dict(valid_request, width=320, height=512)
    first, again = (post(sd35_mock, request).json() for _ in range(2))
    downloads = [requests.get(u, timeout=30) for u in first["download_urls"] + again["download_urls"]]
    for response in downloads:
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (320, 512)
    assert downloads[0].content == downloads[2].content and downloads[1].content == downloads[3].content
    assert downloads[0].content != downloads[1].content


def test_direct_link_prefix_and_batch(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="immediate")
    body = post(sd35_mock, dict(valid_request, direct_link=True, file_prefix="fox-", batch_id="batch 7")).json()
    assert body["batch_id"] == "batch 7"
    for n, url in enumerate(body["download_urls"], 1):
        assert url == f"{sd35_mock.url}/images/fox-{body['id']}-{n}.png"
        image = requests.get(url, timeout=30)
        assert image.headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).format == "PNG"
    assert [j["id"] for j in sd35_mock.jobs(batch_id="batch 7")] == [body["id"]]


def test_queued_urls_serve_only_after_success(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="manual")
    body = post(sd35_mock, dict(valid_request, queued_image_urls=True)).json()
    assert body["status"] == "PENDING" and len(body["download_urls"]) == 2
    assert_failure(requests.get(body["download_urls"][0], timeout=10), 404, "url")
    sd35_mock.complete(body["id"])
    assert requests.get(body["download_urls"][0], timeout=30).status_code == 200
    assert status(sd35_mock, body["id"]).json()["download_urls"] == body["download_urls"]


def test_public_url_and_host_header(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="immediate")
    via_host = post(sd35_mock, valid_request, headers={**KEY, "Host": "twin.example:9000"}).json()
    assert via_host["download_urls"][0].startswith("http://twin.example:9000/files/")
    with serve(MockConfig(lifecycle="immediate", public_url="https://images.internal/base")) as behind_proxy:
        body = post(behind_proxy, valid_request).json()
    assert body["download_urls"][0].startswith("https://images.internal/base/files/")


def test_a_startup_setting_is_refused_while_serving_and_nothing_changes(sd35_mock, valid_request):
    before = sd35_mock.config()
    refused = sd35_mock.request("PATCH", "/config", json={"max_body_bytes": 50, "lifecycle": "manual"})
    assert_failure(refused, 400, "max_body_bytes")
    assert refused.json()["errors"] == [{"field": "max_body_bytes", "rule": "startup", "message": refused.json()["errors"][0]["message"]}]
    assert sd35_mock.config() == before
    assert post(sd35_mock, dict(valid_request, prompt="x" * 150)).status_code == 200  # the cap stayed 1 MiB


def test_auth(sd35_mock, valid_request):
    assert_failure(post(sd35_mock, valid_request, headers={}), 401, "API-Key")
    assert_failure(post(sd35_mock, valid_request, headers={"API-Key": ""}), 401, "API-Key")
    assert_failure(status(sd35_mock, "x", headers={}), 401, "API-Key")
    sd35_mock.configure(api_keys=["the-key"])
    assert_failure(post(sd35_mock, valid_request), 401, "API-Key")
    assert post(sd35_mock, valid_request, headers={"api-key": "the-key"}).status_code == 200


def test_key_isolation(sd35_mock, valid_request):
    job_id = post(sd35_mock, valid_request).json()["id"]
    foreign = assert_failure(status(sd35_mock, job_id, headers={"API-Key": "someone-else"}), 404, "id")
    unknown = assert_failure(status(sd35_mock, "no-such-job", headers={"API-Key": "someone-else"}), 404, "id")
    assert foreign["errors"][0]["rule"] == unknown["errors"][0]["rule"]


def test_every_violation_is_listed(sd35_mock, valid_request):
    bad = dict(valid_request, samples=4, guidance_scale="high", width=96)
    del bad["prompt"]
    body = assert_failure(post(sd35_mock, bad), 400, "samples")
    assert [e["field"] for e in body["errors"]] == ["prompt", "samples", "guidance_scale", "width"]
    assert sd35_mock.jobs() == []


HOSTILE = [
    ("malformed json", b'{"prompt": "x",', "body"),
    ("array body", b"[1, 2, 3]", "body"),
    ("string body", b'"just a string"', "body"),
    ("number body", b"42", "body"),
    ("null body", b"null", "body"),
    ("empty body", b"", "body"),
    ("not utf-8", b"\xff\xfe\x00{", "body"),
    ("deep nesting", b"[" * 50_000 + b"]" * 50_000, "body"),
    ("giant integer", b'{"width": ' + b"9" * 10_000 + b"}", "body"),
    ("NaN literal", b'{"prompt":"a","negative_prompt":"","num_inference_steps":4,"samples":1,"guidance_scale":NaN}',
     "guidance_scale"),
    ("Infinity literal", b'{"prompt":"a","negative_prompt":"","num_inference_steps":4,"samples":1,'
                         b'"guidance_scale":Infinity}', "guidance_scale"),
]


@pytest.mark.parametrize("name,raw,field", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_are_rejected_cleanly(sd35_mock, name, raw, field):
    assert_failure(post(sd35_mock, raw, headers={**KEY, "Content-Type": "application/json"}), 400, field)


@pytest.mark.parametrize("changes,field", [
    ({"width": 10**30}, "width"), ({"height": -(10**12)}, "height"), ({"file_prefix": "../"}, "file_prefix"),
    ({"file_prefix": "../../etc/passwd"}, "file_prefix"), ({"prompt": "x" * 100_000}, "prompt"),
    ({"webhook": "file:///etc/passwd"}, "webhook"), ({"samples": True}, "samples"), ({"samples": "2"}, "samples"),
])
def test_hostile_fields_are_rejected_cleanly(sd35_mock, valid_request, changes, field):
    assert_failure(post(sd35_mock, dict(valid_request, **changes)), 400, field)


def test_body_over_the_cap_is_413_json(sd35_mock):
    assert_failure(post(sd35_mock, b"{" + b" " * 5_000_000 + b"}"), 413, "body")


def test_unicode_prompts_render(sd35_mock, valid_request):
    sd35_mock.configure(lifecycle="immediate")
    for prompt in ("🦊 im Schnee — 雪の中の狐 — الثعلب", "\u202eevil\u0000ctrl\x1b[31m", "z" * 10_000):
        body = post(sd35_mock, dict(valid_request, prompt=prompt, samples=1)).json()
        image = requests.get(body["download_urls"][0], timeout=30)
        assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (256, 256)


@pytest.mark.parametrize("job_id", ["nope", "..%2F..%2Fetc%2Fpasswd", "%00", "x" * 5000, "a/b/c", "🦊", "/0", "a%0Ab"])
def test_unknown_ids_are_404(sd35_mock, job_id):
    assert_failure(status(sd35_mock, job_id), 404, "id")


@pytest.mark.parametrize("path", ["/files/nope", "/images/nope.png", "/images/../../etc/passwd", "/files/"])
def test_unknown_images_are_404(sd35_mock, path):
    response = requests.get(sd35_mock.url + path, timeout=10)
    assert response.status_code == 404 and response.json()["status"] == "FAILURE"


def test_wrong_method_and_path_are_json(sd35_mock):
    wrong = requests.put(f"{sd35_mock.url}/sd3_5/v1", timeout=10)
    assert_failure(wrong, 405, "method")
    assert "POST" in wrong.headers["Allow"]
    assert_failure(requests.get(f"{sd35_mock.url}/sd3_5/v2", timeout=10), 404, "path")
    assert_failure(requests.get(f"{sd35_mock.url}/sd3_5/v1/status/", headers=KEY, timeout=10), 404, "path")


def test_openapi_document_matches_what_is_served(sd35_mock, valid_request):
    import jsonschema

    doc = requests.get(f"{sd35_mock.url}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.") and set(doc["paths"]) >= {"/sd3_5/v1", "/sd3_5/v1/status/{id}"}
    schemas = doc["components"]["schemas"]
    assert schemas["GenerationRequest"]["properties"]["samples"]["maximum"] == 2
    jsonschema.validate(valid_request, schemas["GenerationRequest"])
    sd35_mock.configure(lifecycle="polls", pending_polls=1)
    pending = post(sd35_mock, valid_request)
    done = status(sd35_mock, pending.json()["id"])
    invalid = post(sd35_mock, {"samples": 9})
    for response, operation in ((pending, "post"), (done, "get"), (invalid, "post")):
        path = "/sd3_5/v1" if operation == "post" else "/sd3_5/v1/status/{id}"
        declared = doc["paths"][path][operation]["responses"][str(response.status_code)]
        ref = declared["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        jsonschema.validate(response.json(), schemas[ref])
    sd35_mock.configure(profile={"http_status": {"pending": 202}})
    assert "202" in requests.get(f"{sd35_mock.url}/openapi.json", timeout=10).json()["paths"]["/sd3_5/v1"]["post"]["responses"]
    assert post(sd35_mock, valid_request).status_code == 202
