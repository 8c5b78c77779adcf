"""Errors that say what to do: a 405 names the allowed methods in its body, a near miss of a path suggests
the right one (the caller's id kept), and a misspelled profile key suggests the key it resembles."""

from __future__ import annotations

import pytest
import requests

from sd35_twin.mockserver import MockConfig, create_app
from sd35_twin.mockserver.config import load_profile
from sd35_twin.mockserver.errors import InvalidRequest

KEY = {"API-Key": "hint-key"}


@pytest.fixture(scope="module")
def http():
    return create_app(MockConfig(lifecycle="immediate")).test_client()


def test_a_405_body_names_the_allowed_methods(http):
    answer = http.get("/sd3_5/v1", headers=KEY)
    assert answer.status_code == 405
    [error] = answer.get_json()["errors"]
    assert (error["field"], error["rule"]) == ("method", "allowed")
    assert "GET is not allowed here" in error["message"] and "POST" in error["message"]
    assert "POST" in answer.headers["Allow"]


@pytest.mark.parametrize("path, suggestion", [
    ("/sd3_5/v1/", "/sd3_5/v1"), ("/sd3_5/v2", "/sd3_5/v1"), ("/sd3.5/v1", "/sd3_5/v1"),
    ("/sd3_5/v1/status/", "/sd3_5/v1/status/{job_id}"), ("/sd3_5/v1/status", "/sd3_5/v1/status/{job_id}"),
    ("/sd3_5/v1/jobs/abc123", "/sd3_5/v1/status/abc123"), ("/file/tok", "/files/tok"),
    ("/openapi.yaml", "/openapi.json"), ("/__mock__/heath", "/__mock__/health"),
])
def test_a_near_miss_of_a_path_suggests_the_right_one(http, path, suggestion):
    answer = http.get(path, headers=KEY)
    assert answer.status_code == 404
    [error] = answer.get_json()["errors"]
    assert error["field"] == "path" and error["message"] == f"no such endpoint; did you mean {suggestion}?"


@pytest.mark.parametrize("path", ["/", "/favicon.ico", "/robots.txt", "/" + "x" * 5000])
def test_a_path_near_nothing_suggests_nothing(http, path):
    assert http.get(path).get_json()["errors"][0]["message"] == "no such endpoint"


def test_without_a_control_plane_no_control_path_is_suggested():
    http = create_app(MockConfig(control_plane=False)).test_client()
    assert http.get("/__mock__/heath").get_json()["errors"][0]["message"] == "no such endpoint"


@pytest.mark.parametrize("overrides, field, suggestion", [
    ({"submit": {"finish": "always"}}, "profile.submit.finish", "finished"),
    ({"rate_limit": {}}, "profile.rate_limit", "rate_limits"),
    ({"limits": {"sampels": {"max": 3}}}, "profile.limits.sampels", "samples"),
    ({"http_status": {"rate_limitted": 503}}, "profile.http_status.rate_limitted", "rate_limited"),
])
def test_a_misspelled_profile_key_suggests_the_key_it_resembles(overrides, field, suggestion):
    with pytest.raises(InvalidRequest) as caught:
        load_profile(overrides=overrides)
    [error] = caught.value.errors
    assert (error.field, error.rule) == (field, "unknown")
    assert error.message == f"is not a profile key; did you mean {suggestion!r}?"


def test_a_profile_key_like_nothing_suggests_nothing():
    with pytest.raises(InvalidRequest) as caught:
        load_profile(overrides={"zzz": 1})
    assert caught.value.errors[0].message == "is not a profile key"


def test_the_suggestion_reaches_a_patch_of_the_config(sd35_mock):
    answer = requests.patch(f"{sd35_mock.url}/__mock__/config", json={"profile": {"echo_batchid": False}}, timeout=10)
    assert answer.status_code == 400 and "did you mean 'echo_batch_id'?" in answer.json()["error"]
