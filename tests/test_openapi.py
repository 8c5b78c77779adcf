"""/openapi.json follows the profile it is served under: it validates (openapi-spec-validator) for the default
profile and every variant, and every answer a tour of the twin meets under that profile is documented (status
code, Content-Type, required headers, body), and nothing else is. Plus what generators read literally."""

from __future__ import annotations

import re

import pytest
import schemathesis
from openapi_spec_validator import validate as validate_spec

from sd35_twin.mockserver import MockConfig, create_app
from sd35_twin.mockserver.config import deep_merge, load_profile
from sd35_twin.mockserver.openapi import openapi_document
from sd35_twin.mockserver.validation import PROMPT_PATTERN, request_schema
from sd35_twin.mockserver.variants import load_variants

RATE_LIMITS = {"rate_limits": {"requests_per_minute": 6, "max_pending": None}}
BODY = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 3.5}
VARIANTS = [pytest.param({}, id="default")] + [pytest.param(v.profile, id=v.id) for v in load_variants()]


def profile_of(overlay: dict, limits: bool) -> dict:
    return load_profile(overrides=deep_merge(overlay, RATE_LIMITS) if limits else overlay)


@pytest.mark.parametrize("limits", [False, True], ids=["no-limits", "rate-limits"])
@pytest.mark.parametrize("overlay", VARIANTS)
def test_the_document_validates_under_every_variant(overlay, limits):
    doc = openapi_document(profile_of(overlay, limits), "http://127.0.0.1:8080")
    validate_spec(doc)  # OpenAPI 3.0 schema and semantics (openapi-spec-validator)


def tour(profile: dict) -> list[tuple[str, str, object]]:
    """Every kind of answer the twin can give, met once through the WSGI app: (path template, method, response)."""
    config = MockConfig(lifecycle="polls", pending_polls=2, credits={"poor": 0}, profile=profile, seed=1,
                        max_body_bytes=4096)
    app = create_app(config)
    backend = app.extensions["sd35_backend"]
    http = app.test_client()
    met = []

    def call(template: str, method: str, url: str, key: str | None = None, **kwargs):
        headers = {"API-Key": key} if key else {}
        if "%FF" in url:  # as a WSGI server hands it over: the path's bytes as latin-1 (the test client decodes)
            kwargs["environ_overrides"] = {"PATH_INFO": url.replace("%FF", "\xff")}
        response = http.open(url, method=method, headers=headers, **kwargs)
        met.append((template, method, response))
        return response

    def submit(key, body=None, **kwargs):
        return call("/sd3_5/v1", "post", "/sd3_5/v1", key, **(kwargs if "data" in kwargs else {"json": body or BODY}))

    def status(key, job_id):
        return call("/sd3_5/v1/status/{id}", "get", f"/sd3_5/v1/status/{job_id}", key)

    def download(url: str):
        path = url.split("://", 1)[1].split("/", 1)[1]
        return call("/files/{token}" if path.startswith("files/") else "/images/{name}", "get", "/" + path)

    urls = []
    for key, extra in (("k1", {}), ("k2", {"direct_link": True})):
        job = submit(key, {**BODY, **extra}).get_json()
        status(key, job["id"])  # PENDING (unless the POST finished it)
        done = status(key, job["id"]).get_json()  # the second poll finishes it (lifecycle polls, 2)
        urls += done["download_urls"]
        download(done["download_urls"][0])
    for extra in ({}, {"direct_link": True}):
        waiting = submit("k3", {**BODY, "queued_image_urls": True, **extra}).get_json()  # PENDING, unless the POST
        if waiting["status"] == "PENDING":                                                # finishes it
            download(waiting["download_urls"][0])  # not ready
    backend.update_config({"failure_rate": 1.0})
    failed = submit("k3", BODY).get_json()  # FAILURE at once, or PENDING and then FAILURE on the second poll
    status("k3", failed["id"])
    status("k3", failed["id"])
    backend.update_config({"failure_rate": 0.0, "lifecycle": "immediate"})
    submit("k3", BODY)  # SUCCESS at once, unless the POST never finishes a job
    backend.update_config({"lifecycle": "polls"})
    submit("k4", {"samples": 99})                               # invalid
    submit(None)                                                # no key
    status(None, "x")
    submit("poor")                                              # no credits
    submit("k5", data=b'{"prompt": "' + b"x" * 5000 + b'"}', content_type="application/json")  # too large
    submit("k5", data=b'{"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, '
                      b'"guidance_scale": 3.5}', content_type="text/plain")  # a JSON body sent as text
    status("k5", "no-such-job")                                 # not found
    download("http://h/files/no-such-token")
    download("http://h/images/no-such-name.png")
    status("k5", "%FF")                                         # not text: invalid
    download("http://h/files/%FF")
    download("http://h/images/%FF")
    backend.advance_clock(profile["urls"]["ttl_seconds"] + 1)
    for url in urls:
        download(url)                                           # expired
    if any(v is not None for v in profile["rate_limits"].values()):
        for _ in range(profile["rate_limits"]["requests_per_minute"]):
            status("k6", "no-such-job")
        assert status("k6", "no-such-job").status_code == profile["http_status"]["rate_limited"]
        submit("k6")
    backend.close()
    return met


@pytest.mark.parametrize("limits", [False, True], ids=["no-limits", "rate-limits"])
@pytest.mark.parametrize("overlay", VARIANTS)
def test_every_answer_is_documented_and_every_documented_answer_is_given(overlay, limits):
    profile = profile_of(overlay, limits)
    doc = openapi_document(profile)
    schema = schemathesis.openapi.from_dict(doc)
    answered: dict[tuple[str, str], set[str]] = {}
    for template, method, response in tour(profile):
        code = str(response.status_code)
        answered.setdefault((template, method), set()).add(code)
        declared = doc["paths"][template][method]["responses"]
        assert code in declared, f"{method.upper()} {template} answered {code}: documented only {sorted(declared)}"
        content_type = response.headers["Content-Type"].split(";")[0]
        assert content_type in declared[code]["content"], (template, code, content_type)
        for name, header in declared[code].get("headers", {}).items():
            assert not header.get("required") or name in response.headers, (template, code, name)
        schema[template][method.upper()].validate_response(response)  # the body against the documented schema
    documented = {(t, m): set(op["responses"]) for t, ops in doc["paths"].items() for m, op in ops.items()}
    assert answered == documented


def test_rate_limits_document_429_with_retry_after_and_only_then():
    without = openapi_document(load_profile())["paths"]
    with_limits = openapi_document(load_profile(overrides=RATE_LIMITS))["paths"]
    for path, method in (("/sd3_5/v1", "post"), ("/sd3_5/v1/status/{id}", "get")):
        assert "429" not in without[path][method]["responses"]
        assert with_limits[path][method]["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert "429" not in with_limits["/files/{token}"]["get"]["responses"]  # downloads are not rate limited


def test_no_credits_at_429_shares_the_code_and_makes_retry_after_optional():
    profile = load_profile(overrides=deep_merge({"http_status": {"no_credits": 429}}, RATE_LIMITS))
    answer = openapi_document(profile)["paths"]["/sd3_5/v1"]["post"]["responses"]["429"]
    assert answer["headers"]["Retry-After"]["required"] is False and "credits" in answer["description"]


def test_downloads_need_no_key_and_the_api_does():
    paths = openapi_document(load_profile())["paths"]
    assert paths["/files/{token}"]["get"]["security"] == [] and paths["/images/{name}"]["get"]["security"] == []
    assert paths["/sd3_5/v1"]["post"]["security"] == [{"ApiKey": []}]


def test_image_bodies_are_the_served_type_and_generic_binary():
    paths = openapi_document(load_profile(overrides={"urls": {"opaque_format": "webp"}}))["paths"]
    assert list(paths["/files/{token}"]["get"]["responses"]["200"]["content"]) == ["image/webp", "application/octet-stream"]
    assert list(paths["/images/{name}"]["get"]["responses"]["200"]["content"]) == ["image/png", "application/octet-stream"]


def test_optional_fields_carry_no_default_keyword_but_say_it():
    """openapi-typescript makes a component property with a ``default`` required; the validator keeps them."""
    profile = load_profile()
    published = openapi_document(profile)["components"]["schemas"]["GenerationRequest"]
    for name, spec in published["properties"].items():
        assert "default" not in spec or name in published["required"], name
    assert "1024 when not sent" in published["properties"]["width"]["description"]
    assert request_schema(profile)["properties"]["width"]["default"] == 1024


@pytest.mark.parametrize("prompt, ok", [("a fox", True), (" fox", True), ("\n\tfox ", True), (" ", False),
                                        ("\u00a0\u3000", False), ("", False)])
def test_the_prompt_pattern_means_the_same_under_match_and_search(prompt, ok):
    """openapi-generator's Python client checks ``pattern`` with re.match, JSON Schema with a search."""
    assert (re.match(PROMPT_PATTERN, prompt) is not None) is ok
    assert (re.search(PROMPT_PATTERN, prompt) is not None) is ok
    answer = create_app(MockConfig(lifecycle="immediate")).test_client().post(
        "/sd3_5/v1", json={**BODY, "prompt": prompt}, headers={"API-Key": "k"})
    assert (answer.status_code == 200) is ok


def test_a_kind_a_profile_switch_turns_on_is_documented_only_when_it_is_on():
    """A refusal the profile names but never answers (the Content-Type row's, off by default) is not described;
    turned on, it is, on the submit, at the code the profile gives it."""
    from sd35_twin.mockserver.openapi import openapi_document as document

    profile = load_profile()
    off = dict(profile, http_status=dict(profile["http_status"], unsupported_media_type=415))
    on = dict(off, require_json_content_type=True)
    assert "415" not in document(off)["paths"]["/sd3_5/v1"]["post"]["responses"]
    assert "Content-Type" in document(on)["paths"]["/sd3_5/v1"]["post"]["responses"]["415"]["description"]
    assert "415" not in document(on)["paths"]["/sd3_5/v1/status/{id}"]["get"]["responses"]
