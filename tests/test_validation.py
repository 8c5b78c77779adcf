"""The request schema: every rule, and the properties 'valid converges' / 'one broken rule is named'."""

import math
import time

import pytest
from hypothesis import given, settings

from sd35_twin.mockserver.config import load_default_profile, load_profile
from sd35_twin.mockserver.coverage import collect, stop_collecting
from sd35_twin.mockserver.errors import InvalidRequest
from sd35_twin.mockserver.validation import GenerationRequest, RequestValidator, parse_json_body
from tests.strategies import one_rule_broken, valid_requests

PAGE_EXAMPLE = {
    "prompt": "beautiful waterfall in the rainforest, anime style",
    "negative_prompt": "error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",
    "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0, "width": 1024, "height": 1024,
}


def default_validator() -> RequestValidator:
    """Built per test, never at import: a module-level validator would be built once, before a fork-based
    mutation tool (docs/mutation.md) switches a mutant on, and hide every mutant of the schema's making."""
    return RequestValidator(load_default_profile())


def rejected_fields(body, validator: RequestValidator | None = None) -> dict[str, set[str]]:
    with pytest.raises(InvalidRequest) as caught:
        (validator or default_validator()).validate(body)
    fields: dict[str, set[str]] = {}
    for error in caught.value.errors:
        fields.setdefault(error.field, set()).add(error.rule)
    return fields


def refuses(validator: RequestValidator, field: str, value: str) -> bool:
    """Whether ``validator`` names ``field`` when the page's example holds ``value`` there."""
    try:
        validator.validate(dict(PAGE_EXAMPLE, **{field: value}))
    except InvalidRequest as caught:
        return field in {e.field for e in caught.errors}
    return False


def test_page_example_is_valid_and_defaults_apply():
    request = default_validator().validate(PAGE_EXAMPLE)
    assert request.guidance_scale == 0.0 and request.samples == 1
    minimal = {k: v for k, v in PAGE_EXAMPLE.items() if k not in ("width", "height")}
    assert (default_validator().validate(minimal).width, default_validator().validate(minimal).height) == (1024, 1024)
    assert request == GenerationRequest(**PAGE_EXAMPLE)


@pytest.mark.parametrize("field", ["prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale"])
def test_each_required_field_is_named_when_missing(field):
    body = {k: v for k, v in PAGE_EXAMPLE.items() if k != field}
    assert rejected_fields(body) == {field: {"required"}}


def test_all_violations_are_reported_not_only_the_first():
    body = dict(PAGE_EXAMPLE, samples=3, guidance_scale=21, width=1001, direct_link="yes")
    del body["prompt"]
    assert rejected_fields(body) == {"prompt": {"required"}, "samples": {"maximum"}, "guidance_scale": {"maximum"},
                                     "width": {"multipleOf"}, "direct_link": {"type"}}


@pytest.mark.parametrize("field,value,rule", [
    ("samples", True, "type"), ("samples", "2", "type"), ("samples", 2.0, "type"), ("samples", None, "type"),
    ("samples", 3, "maximum"), ("samples", 0, "minimum"),
    ("num_inference_steps", 0, "minimum"), ("num_inference_steps", 51, "maximum"),
    ("guidance_scale", math.nan, "type"), ("guidance_scale", math.inf, "type"), ("guidance_scale", True, "type"),
    ("guidance_scale", "1.5", "type"), ("guidance_scale", 20.5, "maximum"), ("guidance_scale", -0.1, "minimum"),
    ("width", 10**30, "maximum"), ("width", 248, "minimum"), ("height", 1544, "maximum"), ("height", 1020, "multipleOf"),
    ("prompt", "", "minLength"), ("prompt", "   ", "pattern"), ("prompt", "x" * 10_001, "maxLength"),
    ("negative_prompt", 5, "type"), ("webhook", "ftp://host/x", "pattern"), ("webhook", "http://", "pattern"),
    ("webhook", "http://host/\n", "pattern"), ("file_prefix", "../", "pattern"), ("file_prefix", "a/b", "pattern"),
    ("file_prefix", "ok\n", "pattern"), ("file_prefix", "x" * 65, "maxLength"), ("batch_id", 7, "type"),
    ("direct_link", 1, "type"), ("queued_image_urls", "true", "type"),
])
def test_single_rule(field, value, rule):
    assert rejected_fields(dict(PAGE_EXAMPLE, **{field: value})) == {field: {rule}}


def test_guidance_zero_and_limits_inclusive():
    validator = default_validator()
    for guidance in (0, 0.0, 20, 20.0, 7.5):
        assert validator.validate(dict(PAGE_EXAMPLE, guidance_scale=guidance)).guidance_scale == guidance
    for side in (256, 1536):
        request = validator.validate(dict(PAGE_EXAMPLE, width=side, height=side, samples=2, num_inference_steps=50))
        assert (request.width, request.height, request.samples, request.num_inference_steps) == (side, side, 2, 50)


@pytest.mark.parametrize("url", ["HTTPS://Example.com/hook", "http://user:pw@localhost:8000/cb?x=1#f",
                                 "http://[::1]:9000/h"])
def test_webhook_urls_accepted(url):
    assert default_validator().validate(dict(PAGE_EXAMPLE, webhook=url)).webhook == url


def test_unknown_fields_are_ignored():
    request = default_validator().validate(dict(PAGE_EXAMPLE, model_id="sd3", extra={"a": [1]}))
    assert request == GenerationRequest(**PAGE_EXAMPLE)


@pytest.mark.parametrize("body", [[], "text", 5, None, True])
def test_body_must_be_an_object(body):
    assert rejected_fields(body) == {"body": {"type"}}


@pytest.mark.parametrize("raw,rule", [
    (b"{", "json"), (b"", "required"), (b"   ", "required"), (b"\xff\xfe{}", "encoding"),
    (b"[" * 100_000 + b"]" * 100_000, "json"), (b'{"samples": ' + b"9" * 5000 + b"}", "json"), (b"{'a': 1}", "json"),
])
def test_broken_json_is_a_body_error(raw, rule):
    with pytest.raises(InvalidRequest) as caught:
        parse_json_body(raw)
    assert [(e.field, e.rule) for e in caught.value.errors] == [("body", rule)]


def test_nan_literal_parses_then_fails_as_a_field_error():
    body = parse_json_body(b'{"guidance_scale": NaN}')
    assert "type" in rejected_fields(body)["guidance_scale"]


def test_profile_changes_the_rules():
    strict = RequestValidator(load_profile(overrides={"limits": {"samples": {"max": 4}}}))
    assert strict.validate(dict(PAGE_EXAMPLE, samples=4)).samples == 4
    assert "maximum" in rejected_fields(dict(PAGE_EXAMPLE, samples=4))["samples"]


@settings(max_examples=300, deadline=None)
@given(valid_requests())
def test_any_valid_request_is_accepted(body):
    request = default_validator().validate(body)
    assert request.as_dict() == {"width": 1024, "height": 1024, "direct_link": False, "queued_image_urls": False,
                                 **{k: v for k, v in body.items() if k != "some_unknown_field"}}
    assert request.samples == body["samples"]
    assert request.width == body.get("width", 1024) and request.height == body.get("height", 1024)


@settings(max_examples=500, deadline=None)
@given(one_rule_broken())
def test_any_request_breaking_one_rule_is_rejected_naming_that_field(case):
    body, field = case
    assert set(rejected_fields(body)) == {field}


def test_patterns_match_in_linear_time():
    """Python's re took 2^n steps for ``(a+)+$`` against n a's and a '!' (n = 40: a core pinned for good)."""
    validator = RequestValidator(load_profile(overrides={"limits": {"file_prefix_pattern": "(a+)+$"}}))
    started = time.monotonic()
    with pytest.raises(InvalidRequest) as caught:
        validator.validate(dict(PAGE_EXAMPLE, file_prefix="a" * 30 + "!"))
    # Backtracking would take 2^30 steps (minutes; pytest-timeout ends it); RE2 takes microseconds. 5 s tells
    # them apart on a loaded machine too (it said 0.5 s against 2^24 steps, too near both).
    assert time.monotonic() - started < 5
    assert [(e.field, e.rule) for e in caught.value.errors] == [("file_prefix", "pattern")]


@pytest.mark.parametrize("pattern", ["(?=a)", "(a)\\1", "a{1000}{1000}", "[", "caf\\u00e"])
def test_a_profile_pattern_re2_cannot_run_is_refused_naming_its_key(pattern):
    with pytest.raises(InvalidRequest) as caught:
        load_profile(overrides={"limits": {"file_prefix_pattern": pattern}})
    assert [(e.field, e.rule) for e in caught.value.errors] == [("profile.limits.file_prefix_pattern", "format")]


def test_a_profile_pattern_keeps_json_schema_escapes():
    """JSON Schema patterns write a code point \\uXXXX (RE2 alone would refuse it); an escaped backslash stays one."""
    validator = RequestValidator(load_profile(overrides={"limits": {"file_prefix_pattern": "^caf\\u00e9\\\\u$"}}))
    assert not refuses(validator, "file_prefix", "café\\u")
    assert refuses(validator, "file_prefix", "cafe\\u")


@pytest.mark.parametrize("prompt,valid", [("\u3000\u00a0\ufeff\u2028 \t", False), ("\x1c", True), ("\x85", True)])
def test_prompt_whitespace_is_ecma_262s(prompt, valid):
    """As every OpenAPI tool reads the published pattern: Python's \\s would also take U+001C and U+0085."""
    assert refuses(default_validator(), "prompt", prompt) != valid


def test_a_lone_surrogate_is_matched_not_a_crash():
    """RE2 reads UTF-8, which a lone surrogate (JSON allows "\\ud800") is not: it reads as U+FFFD."""
    assert rejected_fields(dict(PAGE_EXAMPLE, prompt="\ud800", file_prefix="x\udc00")) == {"file_prefix": {"pattern"}}


# -- assumption coverage: the rows a body's values reach (mockserver/coverage.py) ----------------------------------

def rows_marked(body, validator: RequestValidator | None = None) -> list[str]:
    """The ledger rows ``validate(body)`` marks, accepted or refused, in the order it marks them."""
    rows: list = []
    token = collect(rows)
    try:
        (validator or default_validator()).validate(body)
    except InvalidRequest:
        pass
    finally:
        stop_collecting(token)
    return rows


PLAIN = {k: v for k, v in PAGE_EXAMPLE.items() if k not in ("width", "height")}


@pytest.mark.parametrize("changes, rows", [
    ({}, []),
    ({"width": 1024}, ["L08"]), ({"height": 100}, ["L08"]),                       # a size: its bounds are assumed
    ({"samples": 2}, ["L05"]), ({"samples": 1}, []), ({"samples": 3}, ["L05"]),     # the samples maximum, reached
    ({"samples": "2"}, ["L25"]), ({"samples": True}, ["L25"]),                     # a value a laxer API might take
    ({"num_inference_steps": 50}, ["L09"]), ({"num_inference_steps": 49}, []), ({"num_inference_steps": 51}, ["L09"]),
    ({"num_inference_steps": 0}, ["L09"]), ({"samples": 0}, ["L09"]), ({"guidance_scale": -0.5}, ["L09"]),
    ({"prompt": ""}, ["L09"]), ({"prompt": " \t"}, ["L09"]),                      # the lower bounds are assumed
    ({"negative_prompt": 5}, ["L25"]), ({"webhook": "ftp://x"}, []), ({"guidance_scale": 21}, []),
    ({"model_id": "sd3"}, ["L20"]),                                                 # an unknown field is ignored
    ({"width": 1, "samples": 2, "num_inference_steps": 50, "seed": 1, "prompt": ""}, ["L08", "L05", "L09", "L20"]),
])
def test_a_body_marks_the_assumed_rows_its_values_reach(changes, rows):
    assert rows_marked(dict(PLAIN, **changes)) == rows


def test_the_maxima_marked_are_the_profile_s():
    profile = load_profile(overrides={"limits": {"samples": {"max": 4}, "num_inference_steps": {"max": 8}}})
    validator = RequestValidator(profile)
    assert rows_marked(dict(PLAIN, samples=2), validator) == []
    assert rows_marked(dict(PLAIN, samples=4, num_inference_steps=8), validator) == ["L05", "L09"]
