"""The typed request, its client-side check (presence and JSON types only), the job status, and the
error tree."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
from hypothesis import given, strategies as st

from sd35_twin import client
from sd35_twin.client import errors
from sd35_twin.client.errors import fields_from_error_text
from sd35_twin.client.models import FIELD_TYPES, FIELDS, GenerationRequest, JobState, JobStatus


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


WRONG = [
    ("prompt", None, "required"), ("prompt", 5, "type"), ("prompt", b"x", "type"),
    ("negative_prompt", None, "required"), ("negative_prompt", ["a"], "type"),
    ("num_inference_steps", None, "required"), ("num_inference_steps", 4.0, "type"),
    ("num_inference_steps", True, "type"), ("num_inference_steps", "4", "type"),
    ("samples", None, "required"), ("samples", True, "type"), ("samples", 1.5, "type"),
    ("guidance_scale", None, "required"), ("guidance_scale", math.nan, "type"), ("guidance_scale", math.inf, "type"),
    ("guidance_scale", -math.inf, "type"), ("guidance_scale", False, "type"), ("guidance_scale", "7", "type"),
    ("width", 512.0, "type"), ("height", True, "type"), ("webhook", 3, "type"), ("direct_link", "true", "type"),
    ("direct_link", 1, "type"), ("queued_image_urls", 0, "type"), ("batch_id", 7, "type"),
    ("file_prefix", {"a": 1}, "type"),
]


@pytest.mark.parametrize("name, value, rule", WRONG, ids=[f"{n}={str(v)[:12]!r}" for n, v, _ in WRONG])
def test_a_missing_field_or_a_wrong_type_is_refused_by_name(name, value, rule):
    req = GenerationRequest("ok").replace(**{name: value})
    problems = req.problems()
    assert [(p["field"], p["rule"]) for p in problems] == [(name, rule)]
    with pytest.raises(errors.InvalidRequestError) as info:
        req.validate()
    assert info.value.fields == (name,) and info.value.client_side
    assert info.value.body["errors"] == problems


def test_every_violation_is_reported_at_once():
    req = GenerationRequest(None, samples="2", width=7.0, guidance_scale=math.nan)
    assert {p["field"] for p in req.problems()} == {"prompt", "samples", "width", "guidance_scale"}


JSON_OF_ITS_TYPE = {
    "string": st.text(),
    "integer": st.integers(),
    "number": st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
}


@given(st.fixed_dictionaries({}, optional={name: JSON_OF_ITS_TYPE[kind] for name, kind in FIELD_TYPES.items()}))
def test_any_request_of_the_right_types_passes_the_check(values):
    """Limits are the server's: an empty prompt, samples=9 or width=7 are for it to refuse."""
    req = GenerationRequest("ok").replace(**values)
    assert req.problems() == [] and req.validate() is req
    assert json.loads(json.dumps(req.to_payload())) == {**GenerationRequest("ok").to_payload(), **values}


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
