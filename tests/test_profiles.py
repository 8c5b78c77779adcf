"""Profiles are checked whole before they take effect: from a file, the environment or PATCH /__mock__/config,
a bad one is refused naming its key, nothing changes, and no accepted one can break or hang the mock."""

import io
import json
import os
import subprocess
import sys

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from sd35_twin.mockserver.config import load_default_profile
from sd35_twin.mockserver.images import MAX_SIDE
from sd35_twin.mockserver.profile_schema import PROFILE_SCHEMA
from sd35_twin.mockserver.testing import MockControl, launch

KEY = {"API-Key": "profile-key"}
REQUEST = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1,
           "width": 256, "height": 256}
PATHOLOGICAL = ["(a+)+$", "(a|aa)+$", "(.*a){25}$", "^(a|a?)+$", "(?=a)", "(a)\\1", "a{1000}{1000}",
                "((((a{100}){100}){100}){100})", "[", "\\", "(?P<x", "x" * 1001]


def patch_profile(mock: MockControl, profile) -> requests.Response:
    return mock.request("PATCH", "/config", json={"profile": profile}, timeout=10)


def refused_fields(response: requests.Response) -> set[str]:
    assert response.status_code == 400, response.text
    return {e["field"] for e in response.json()["errors"]}


def submit(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/sd3_5/v1", json=body, headers=KEY, timeout=10)


# -- what a bad profile did before: each refused now, naming its key, with nothing changed ------------------

@pytest.mark.parametrize("code", [0, 100, 204, 205, 304, 302, 600, "abc", 200.0, None])
def test_a_status_without_a_body_or_not_a_status_is_refused(sd35_mock, code):
    """0 was a '0 UNKNOWN' status line, 100 a closed connection, 204 a dropped body, "abc" a 500 per submit."""
    before = sd35_mock.config()
    assert refused_fields(patch_profile(sd35_mock, {"http_status": {"pending": code}})) == {"profile.http_status.pending"}
    assert sd35_mock.config() == before
    answer = submit(sd35_mock.url, REQUEST)
    assert answer.status_code == 200 and answer.json()["status"] == "PENDING"


@pytest.mark.parametrize("code", [200, 202, 299, 400, 422, 503, 599])
def test_a_status_that_carries_a_body_is_served(sd35_mock, code):
    sd35_mock.configure(profile={"http_status": {"pending": code}})
    answer = submit(sd35_mock.url, REQUEST)
    assert answer.status_code == code and answer.json()["status"] == "PENDING"


def test_a_null_limit_is_refused_not_a_500_that_half_applies(sd35_mock):
    before = sd35_mock.config()
    assert refused_fields(patch_profile(sd35_mock, {"limits": {"samples": None}})) == {"profile.limits.samples"}
    assert sd35_mock.config() == before


def test_every_violation_is_listed_with_its_key_and_rule(sd35_mock):
    answer = patch_profile(sd35_mock, {
        "limits": {"width": {"min": 2048, "max": 1024}, "height": {"default": 1001}, "samples": {"max": 17},
                   "file_prefix_pattern": "(?=a)", "prompt_max_chars": True},
        "http_status": {"pendng": 202}, "urls": {"opaque_format": "gif", "ttl_seconds": -1}, "echo_batch_id": "yes"})
    assert answer.status_code == 400
    assert {(e["field"], e["rule"]) for e in answer.json()["errors"]} == {
        ("profile.limits.width.max", "limit"), ("profile.limits.width.default", "limit"),
        ("profile.limits.height.default", "limit"), ("profile.limits.samples.max", "maximum"),
        ("profile.limits.file_prefix_pattern", "format"), ("profile.limits.prompt_max_chars", "type"),
        ("profile.http_status.pendng", "unknown"), ("profile.urls.opaque_format", "enum"),
        ("profile.urls.ttl_seconds", "minimum"), ("profile.echo_batch_id", "type")}
    assert "invalid perl operator" in answer.text  # RE2's own reason


@pytest.mark.parametrize("key,value", [("ttl_seconds", 10**400), ("ttl_seconds", 1e300), ("opaque_format", None)])
def test_a_url_setting_the_mock_cannot_use_is_refused(sd35_mock, key, value):
    """A TTL past what a float holds made every download a 500."""
    assert refused_fields(patch_profile(sd35_mock, {"urls": {key: value}})) == {f"profile.urls.{key}"}


def test_a_profile_nested_as_deep_as_json_allows_is_refused(sd35_mock):
    deep = json.loads("[" * 600 + "]" * 600)
    assert refused_fields(patch_profile(sd35_mock, {"failure_message": deep})) == {"profile"}


def test_a_comment_is_a_note_not_a_key(sd35_mock):
    """As in default.json and a --profile file: ``_comment`` is dropped, whatever else the patch holds."""
    config = sd35_mock.configure(profile={"_comment": "as observed live", "echo_batch_id": False})
    assert config["profile"]["echo_batch_id"] is False and "_comment" not in config["profile"]


# -- sizes: the schema's ceiling is what images.py renders -------------------------------------------------

def test_sizes_past_what_the_mock_renders_are_refused(sd35_mock):
    """width.max 8192 was accepted, then its download was a 500."""
    assert PROFILE_SCHEMA["$defs"]["side"]["maximum"] == MAX_SIDE
    answer = patch_profile(sd35_mock, {"limits": {"width": {"max": 8192}, "height": {"max": MAX_SIDE + 8}}})
    assert refused_fields(answer) == {"profile.limits.width.max", "profile.limits.height.max"}


def test_the_largest_size_the_schema_allows_is_served(sd35_mock):
    sd35_mock.configure(profile={"limits": {"width": {"max": MAX_SIDE}, "height": {"max": MAX_SIDE}}})
    job = submit(sd35_mock.url, dict(REQUEST, width=MAX_SIDE, height=MAX_SIDE)).json()
    done = requests.get(f"{sd35_mock.url}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=10).json()
    image = requests.get(done["download_urls"][0], timeout=30)
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (MAX_SIDE, MAX_SIDE)


# -- patterns: linear time, in another process so a hang cannot take the test run with it ------------------

def test_a_catastrophic_pattern_cannot_hang_the_mock():
    """``(a+)+$`` against 40 a's and a '!' took 2^40 steps in Python's re: one submit pinned a core for good."""
    with launch("--quiet") as mock:
        control = MockControl(mock.url, timeout=10)
        try:
            control.configure(profile={"limits": {"file_prefix_pattern": "(a+)+$"}})
            answer = requests.post(f"{mock.url}/sd3_5/v1", json=dict(REQUEST, file_prefix="a" * 40 + "!"),
                                   headers=KEY, timeout=30)  # a hang is forever; 30 s is load
            assert answer.status_code == 400 and [e["field"] for e in answer.json()["errors"]] == ["file_prefix"]
            assert control.health()
        finally:
            control.close()


# -- start-up: a bad profile file or SD35_MOCK_PROFILE exits 2 with one line naming the key ------------------

@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_bad_profile_at_start_up_exits_2_naming_the_key(tmp_path, how):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"http_status": {"pending": 204}}))
    args, env = (["--profile", str(path)], os.environ) if how == "option" else \
        ([], {**os.environ, "SD35_MOCK_PROFILE": str(path)})
    done = subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", "--port", "0", *args], capture_output=True, text=True,
                          timeout=20, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert ("--profile" if how == "option" else "SD35_MOCK_PROFILE:") in line and "http_status.pending" in line


# -- any override: applied whole, or refused naming a profile key with nothing changed ----------------------

def _leaves(node: dict, path: tuple = ()) -> list[tuple]:
    return [leaf for key, value in node.items()
            for leaf in (_leaves(value, path + (key,)) if isinstance(value, dict) else [path + (key,)])]


LEAVES = _leaves(load_default_profile())
BRANCHES = [("limits",), ("http_status",), ("urls",)] + [("limits", k) for k, v in load_default_profile()["limits"].items()
                                                          if isinstance(v, dict)]
NEW = [("http_status", "conflict"), ("http_status", "pending"), ("limits", "samples", "multiple_of"), ("limits", "samples", "default")]
UNKNOWN = [("unknown_key",), ("limits", "colour"), ("urls", "ttl")]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**15, max_value=10**40),
                 st.sampled_from([10**400, -10**400]),  # past what a float holds
                 st.integers(max_value=-1), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=12), st.sampled_from(PATHOLOGICAL), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _plausible(path: tuple):
    """Values near what the key takes, so that many examples are accepted and get served."""
    key = path[-1]
    if path[0] == "http_status":
        return st.sampled_from([200, 202, 400, 404, 422, 503]) | st.integers(0, 700)
    if path[0] == "rate_limits":  # off, refused, or too high to refuse the example's two requests
        return st.sampled_from([None, 0, -1, 3, 10_000, 10_001, "5", 1.5])
    if key == "file_prefix_pattern":
        return st.sampled_from(["^[a-z!]+$", "^[A-Za-z0-9_-][A-Za-z0-9._-]*$", r"\u00e9|a", "."] + PATHOLOGICAL)
    if key.endswith("_format"):
        return st.sampled_from(["png", "jpeg", "webp", "gif"])
    if key == "ttl_seconds":
        return st.floats(-1, 1e6)
    if key.endswith("_max_chars"):
        return st.integers(-2, 300) | st.sampled_from([200, 201, 1024, 1025, 8192, 8193, 100_000, 100_001])
    if key in ("job_failure_includes_id", "echo_batch_id"):
        return st.booleans()
    if key == "failure_message":
        return st.text(max_size=20)
    if key == "finished":
        return st.sampled_from(["lifecycle", "always", "never", "sometimes"])
    if key == "rejection_text_key":
        return st.sampled_from(["error", "message", "detail", "msg"])
    if key in ("reject_unknown_fields", "require_json_content_type"):
        return st.booleans()
    if path[1] in ("width", "height"):
        return st.sampled_from([0, 1, 8, 64, 256, 1000, 1024, 1536, MAX_SIDE, MAX_SIDE + 8, 8192])
    return st.integers(1, 16) | st.integers(-2, 60)  # samples, num_inference_steps, guidance_scale


@st.composite
def profile_overrides(draw) -> dict:
    override: dict = {}
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 9)):  # mostly a known key and a value near what it takes
            path = draw(st.sampled_from(LEAVES + NEW))
            value = draw(_plausible(path))
        else:  # else junk anywhere: on a key, over a whole section, under a key that does not exist
            path = draw(st.sampled_from(LEAVES + NEW + BRANCHES + UNKNOWN))
            value = draw(JUNK)
        parent = override
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
            if not isinstance(parent, dict):  # an earlier path put junk here
                break
        else:
            parent[path[-1]] = value
    return override


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(overrides=profile_overrides(), file_prefix=st.sampled_from([None, "fox_", "a" * 40 + "!"]))
def test_any_profile_is_applied_whole_or_refused_naming_its_keys(sd35_mock_server, overrides, file_prefix):
    mock = sd35_mock_server
    mock.reset()  # a session server: start each example from the start-up state
    before = mock.config()
    answer = patch_profile(mock, overrides)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert all(e["field"].split(".")[0] == "profile" for e in answer.json()["errors"]), answer.text
        assert mock.config() == before
        return
    profile, limits = answer.json()["profile"], answer.json()["profile"]["limits"]
    codes = profile["http_status"]
    body = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": limits["num_inference_steps"]["min"],
            "samples": limits["samples"]["min"], "guidance_scale": limits["guidance_scale"]["min"]}
    if file_prefix:
        body["file_prefix"] = file_prefix
    submitted = submit(mock.url, body)
    job = submitted.json()
    if job["status"] == "FAILURE":  # the profile's limits refuse this request: a field is named
        assert submitted.status_code == codes["invalid"] and job["errors"]
        assert {e["field"] for e in job["errors"]} <= set(body)
        return
    if profile["submit"]["finished"] == "always":  # done at once: the submit answers SUCCESS
        done = submitted
    else:
        assert (submitted.status_code, job["status"]) == (codes["submit_pending"], "PENDING"), submitted.text
        done = requests.get(f"{mock.url}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=10)
    assert (done.status_code, done.json()["status"]) == (codes["success"], "SUCCESS"), done.text
    image = requests.get(done.json()["download_urls"][0], timeout=30)
    if image.status_code != 200:  # a TTL shorter than the time since the job was done
        assert image.status_code == codes["image_expired"] and image.json()["errors"][0]["rule"] == "expired"
        assert profile["urls"]["ttl_seconds"] < 10
        return
    assert Image.open(io.BytesIO(image.content)).size == (limits["width"]["default"], limits["height"]["default"])
