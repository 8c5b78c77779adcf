"""The typed request, its client-side check, the job status, and the error tree."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

import client
from client import errors
from client.errors import fields_from_error_text
from client.models import DEFAULT_LIMITS, FIELDS, GenerationRequest, JobState, JobStatus, Limits

ROOT = Path(__file__).resolve().parents[2]


# --- the error tree -----------------------------------------------------------------------------

def test_the_tree_in_the_module_docstring_is_the_real_hierarchy():
    """The drawing at the top of client/errors.py must not drift from the classes."""
    stack: list[tuple[int, str]] = []
    drawn: dict[str, str | None] = {}
    for line in errors.__doc__.splitlines():
        m = re.match(r"^[ │├└─]*([A-Z][A-Za-z]+Error)\b", line)
        if not m:
            continue
        depth, name = m.start(1), m.group(1)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    real = {
        name: cls for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.ImagePipelineError)
    }
    assert set(drawn) == set(real)
    for name, parent in drawn.items():
        if parent is not None:
            assert issubclass(real[name], real[parent]), (name, parent)
            assert real[parent] in real[name].__bases__, (name, parent)


def test_every_error_is_exported_and_none_is_a_builtin_oserror():
    for name in errors.__all__:
        obj = getattr(client, name) if hasattr(client, name) else None
        assert obj is getattr(errors, name) or name == "error_for_status"
    assert not issubclass(client.TimeoutError, OSError)
    assert issubclass(client.ConnectTimeoutError, client.TimeoutError)
    assert issubclass(client.ConnectTimeoutError, client.ConnectError)
    assert "TimeoutError" not in client.__all__  # a star-import must not shadow the builtin


@pytest.mark.parametrize("code, cls", [(400, errors.InvalidRequestError), (401, errors.AuthenticationError),
                                       (403, errors.AuthenticationError), (404, errors.NotFoundError),
                                       (413, errors.InvalidRequestError), (422, errors.InvalidRequestError),
                                       (429, errors.RateLimitedError), (500, errors.ServerError),
                                       (503, errors.ServerError), (409, errors.APIError)])
def test_error_for_status(code, cls):
    err = errors.error_for_status(code, {"status": "FAILURE", "error": "why"})
    assert type(err) is cls and err.status_code == code and err.message == "why"


@pytest.mark.parametrize("text, fields", [
    ("samples: must be at most 2", ("samples",)),
    ("samples: must be at most 2; width: must be a multiple of 8", ("samples", "width")),
    ("prompt: is required;prompt: again; body: bad", ("prompt", "body")),
    ("something went wrong", ()),
    ("API-Key: missing", ("API-Key",)),
])
def test_fields_from_error_text(text, fields):
    assert fields_from_error_text(text) == fields


def test_job_and_wait_errors_carry_what_is_needed():
    e = errors.JobFailedError("j1", "GPU on fire")
    assert e.job_id == "j1" and e.error == "GPU on fire" and "GPU on fire" in str(e)
    last = JobStatus(JobState.PENDING, "j1")
    w = errors.WaitTimeoutError("j1", 30, last)
    assert w.last_status is last and "PENDING" in str(w) and "30" in str(w)


# --- the request --------------------------------------------------------------------------------

def test_defaults_are_the_pages_example_and_documented_sizes():
    req = GenerationRequest("a waterfall")
    assert req.to_payload() == {"prompt": "a waterfall", "negative_prompt": "", "num_inference_steps": 4,
                                "samples": 1, "guidance_scale": 0.0, "height": 1024, "width": 1024}
    assert req.problems() == []


def test_optional_fields_and_extra_are_sent():
    req = GenerationRequest("x", webhook="https://h.test/hook", direct_link=True, batch_id="b",
                            file_prefix="p_", queued_image_urls=False, extra={"seed": 3})
    body = req.to_payload()
    assert body["direct_link"] is True and body["queued_image_urls"] is False and body["seed"] == 3
    assert set(FIELDS) <= set(body)


def test_request_is_frozen_and_replace_checks_names():
    req = GenerationRequest("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.samples = 2  # type: ignore[misc]
    assert req.replace(samples=2).samples == 2
    with pytest.raises(TypeError):
        req.replace(sampels=2)


BAD = [
    ("prompt", None, "required"), ("prompt", "", "minLength"), ("prompt", " \t\n", "pattern"),
    ("prompt", 5, "type"), ("prompt", "x" * 10001, "maxLength"),
    ("negative_prompt", None, "required"), ("negative_prompt", ["a"], "type"),
    ("negative_prompt", "x" * 10001, "maxLength"),
    ("num_inference_steps", 0, "minimum"), ("num_inference_steps", 51, "maximum"),
    ("num_inference_steps", 4.0, "type"), ("num_inference_steps", True, "type"),
    ("num_inference_steps", "4", "type"), ("num_inference_steps", None, "required"),
    ("samples", 0, "minimum"), ("samples", 3, "maximum"), ("samples", 4, "maximum"), ("samples", True, "type"),
    ("guidance_scale", -0.1, "minimum"), ("guidance_scale", 20.0001, "maximum"),
    ("guidance_scale", math.nan, "type"), ("guidance_scale", math.inf, "type"),
    ("guidance_scale", False, "type"), ("guidance_scale", "7", "type"), ("guidance_scale", None, "required"),
    ("width", 248, "minimum"), ("width", 1544, "maximum"), ("width", 1020, "multipleOf"),
    ("width", 512.0, "type"), ("height", True, "type"), ("height", 257, "multipleOf"),
    ("webhook", "ftp://h/x", "pattern"), ("webhook", "not a url", "pattern"), ("webhook", "http://", "pattern"),
    ("webhook", "http:///no-host", "pattern"),
    ("webhook", "https://h.test/" + "a" * 2048, "maxLength"), ("webhook", 3, "type"),
    ("direct_link", "true", "type"), ("direct_link", 1, "type"), ("queued_image_urls", 0, "type"),
    ("batch_id", 7, "type"), ("batch_id", "b" * 129, "maxLength"),
    ("file_prefix", ".hidden", "pattern"), ("file_prefix", "a/b", "pattern"), ("file_prefix", "a\n", "pattern"),
    ("file_prefix", "p" * 65, "maxLength"), ("file_prefix", 1, "type"),
]


@pytest.mark.parametrize("name, value, rule", BAD, ids=[f"{n}={str(v)[:12]!r}" for n, v, _ in BAD])
def test_each_limit_is_checked(name, value, rule):
    req = GenerationRequest("ok").replace(**{name: value})
    problems = req.problems()
    assert [(p["field"], p["rule"]) for p in problems] == [(name, rule)]
    with pytest.raises(errors.InvalidRequestError) as info:
        req.validate()
    assert info.value.fields == (name,) and info.value.client_side
    assert info.value.body["errors"] == problems


GOOD = [
    ("guidance_scale", 0), ("guidance_scale", 20), ("guidance_scale", 7.5), ("samples", 2),
    ("num_inference_steps", 1), ("num_inference_steps", 50), ("width", 256), ("width", 1536),
    ("height", 1536), ("negative_prompt", ""), ("batch_id", ""), ("file_prefix", "run-1.a_"),
    ("webhook", "http://127.0.0.1:9/hook?x=1"), ("width", None), ("height", None),
]


@pytest.mark.parametrize("name, value", GOOD)
def test_edges_that_are_valid(name, value):
    assert GenerationRequest("ok").replace(**{name: value}).problems() == []


def test_every_violation_is_reported_at_once():
    req = GenerationRequest("", samples=9, width=7, guidance_scale=99)
    assert {p["field"] for p in req.problems()} == {"prompt", "samples", "width", "guidance_scale"}


def test_limits_mirror_the_mocks_default_profile():
    profile = json.loads((ROOT / "mockserver" / "profiles" / "default.json").read_text())
    assert Limits.from_profile(profile) == DEFAULT_LIMITS


def test_limits_can_be_changed():
    lim = Limits.from_profile({"limits": {"samples": {"max": 4}, "width": {"multiple_of": 64}}})
    assert GenerationRequest("x", samples=4).problems(lim) == []
    assert [p["rule"] for p in GenerationRequest("x", width=1000).problems(lim)] == ["multipleOf"]


@given(
    prompt=st.text(min_size=1, max_size=50).filter(lambda s: s.strip()),
    steps=st.integers(1, 50), samples=st.integers(1, 2),
    guidance=st.floats(0, 20, allow_nan=False) | st.integers(0, 20),
    width=st.integers(32, 192).map(lambda n: n * 8), height=st.integers(32, 192).map(lambda n: n * 8),
)
def test_any_request_within_the_limits_passes(prompt, steps, samples, guidance, width, height):
    req = GenerationRequest(prompt, num_inference_steps=steps, samples=samples, guidance_scale=guidance,
                            width=width, height=height)
    assert req.problems() == []
    assert json.loads(json.dumps(req.to_payload()))["samples"] == samples


# --- the status ---------------------------------------------------------------------------------

def test_status_is_frozen_hashable_and_keeps_the_raw_body():
    body = {"status": "SUCCESS", "id": "j", "download_urls": ["u1"], "batch_id": "b", "extra": 1}
    s = JobStatus.from_body(body, http_status=200)
    assert s.is_success and s.is_terminal and not s.is_pending and s.batch_id == "b"
    assert s.raw["extra"] == 1 and s.download_urls == ("u1",)
    assert hash(s) == hash(JobStatus.from_body(dict(body, extra=2)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.status = JobState.PENDING  # type: ignore[misc]
    assert s.status == "SUCCESS" and str(s.status) == "SUCCESS"


def test_pending_with_queued_urls_keeps_them():
    s = JobStatus.from_body({"status": "PENDING", "id": "j", "download_urls": ["u"]})
    assert s.is_pending and s.download_urls == ("u",) and not s.is_terminal


def test_numeric_id_is_read_as_text():
    assert JobStatus.from_body({"status": "PENDING", "id": 12}).id == "12"
