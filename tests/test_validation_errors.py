"""Validation errors stated whole: (field, rule, message), in the schema's order, at the edge of every bound;
the body's and the URL's text checks named by path. Written against the survivors of a mutation run
(docs/mutation.md): the other validation tests compare only ``{field: {rule}}``."""

from __future__ import annotations

import math

import pytest

from sd35_twin.mockserver.config import load_default_profile, load_profile
from sd35_twin.mockserver.errors import InvalidRequest
from sd35_twin.mockserver.validation import (
    MAX_FIELD_CHARS,
    MAX_TEXT_ERRORS,
    NOT_TEXT,
    GenerationRequest,
    RequestValidator,
    check_url_text,
    compile_pattern,
    parse_json_body,
    request_schema,
    rule_message,
    shown,
)

EXAMPLE = {"prompt": "a waterfall", "negative_prompt": "blurry", "num_inference_steps": 4, "samples": 1,
           "guidance_scale": 0.0}
WEBHOOK = "must be an http:// or https:// URL with a host"
PREFIX = "may hold only letters, digits, '.', '_' and '-', and must not start with '.'"


def errors(body, validator: RequestValidator | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(InvalidRequest) as caught:
        (validator or RequestValidator(load_default_profile())).validate(body)
    return [(e.field, e.rule, e.message) for e in caught.value.errors]


def body_errors(raw: bytes) -> list[tuple[str, str, str]]:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_body(raw)
    return [(e.field, e.rule, e.message) for e in caught.value.errors]


# --- each rule's error, whole ----------------------------------------------------------------------

@pytest.mark.parametrize("field,value,rule,message", [
    ("samples", True, "type", "must be an integer"),
    ("samples", 1.0, "type", "must be an integer"),
    ("guidance_scale", "1.5", "type", "must be a finite number"),
    ("guidance_scale", math.nan, "type", "must be a finite number"),
    ("negative_prompt", 5, "type", "must be a string"),
    ("direct_link", 1, "type", "must be a boolean"),
    ("samples", 0, "minimum", "must be at least 1"),
    ("samples", 3, "maximum", "must be at most 2"),
    ("guidance_scale", 20.5, "maximum", "must be at most 20"),
    ("width", 1001, "multipleOf", "must be a multiple of 8"),
    ("prompt", "", "minLength", "must not be empty"),
    ("prompt", " \t", "pattern", "must contain a non-whitespace character"),
    ("prompt", "x" * 10_001, "maxLength", "must be at most 10000 characters"),
    ("webhook", "ftp://host/x", "pattern", WEBHOOK),
    ("webhook", "http://h/" + "x" * 2040, "maxLength", "must be at most 2048 characters"),
    ("file_prefix", ".hidden", "pattern", PREFIX),
    ("file_prefix", "x" * 65, "maxLength", "must be at most 64 characters"),
    ("batch_id", "b" * 129, "maxLength", "must be at most 128 characters"),
])
def test_one_broken_rule_is_one_whole_error(field, value, rule, message):
    assert errors({**EXAMPLE, field: value}) == [(field, rule, message)]


@pytest.mark.parametrize("body", [[], "text", None, 5])
def test_a_body_that_is_not_an_object(body):
    assert errors(body) == [("body", "type", "must be a JSON object")]


def test_every_error_comes_in_the_schemas_field_order_whatever_the_bodys():
    body = {"queued_image_urls": "x", "file_prefix": ".x", "webhook": "w", "width": 1001, "guidance_scale": 21,
            "samples": 3, "num_inference_steps": 0, "prompt": 5}
    assert errors(body) == [
        ("prompt", "type", "must be a string"),
        ("negative_prompt", "required", "is required"),
        ("num_inference_steps", "minimum", "must be at least 1"),
        ("samples", "maximum", "must be at most 2"),
        ("guidance_scale", "maximum", "must be at most 20"),
        ("width", "multipleOf", "must be a multiple of 8"),
        ("webhook", "pattern", WEBHOOK),
        ("file_prefix", "pattern", PREFIX),
        ("queued_image_urls", "type", "must be a boolean"),
    ]


def test_every_missing_field_is_named_in_order():
    assert errors({}) == [(name, "required", "is required") for name in
                          ("prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale")]


def test_an_empty_prompt_is_only_empty_and_other_patterns_still_count():
    assert errors({**EXAMPLE, "prompt": "", "file_prefix": "../"}) == [("prompt", "minLength", "must not be empty"),
                                                                        ("file_prefix", "pattern", PREFIX)]


# --- the edge of every bound --------------------------------------------------------------------------

@pytest.mark.parametrize("field,inside,outside,rule", [
    ("samples", [1, 2], [0, 3], None),
    ("num_inference_steps", [1, 50], [0, 51], None),
    ("guidance_scale", [0, 0.0, 20, 20.0], [-0.001, 20.001], None),
    ("width", [256, 1536, 1000], [248, 1544, 1001], None),
    ("height", [256, 1536, 1000], [248, 1544, 1001], None),
    ("prompt", ["x", "x" * 10_000], ["x" * 10_001], "maxLength"),
    ("negative_prompt", ["", "x" * 10_000], ["x" * 10_001], "maxLength"),
    ("webhook", ["http://h", "http://h/" + "x" * 2039], ["http://h/" + "x" * 2040], "maxLength"),
    ("batch_id", ["", "b" * 128], ["b" * 129], "maxLength"),
    ("file_prefix", ["a", "a" * 64], ["a" * 65], "maxLength"),
])
def test_each_bound_holds_at_its_edge_and_breaks_one_past_it(field, inside, outside, rule):
    validator = RequestValidator(load_default_profile())
    for value in inside:
        assert getattr(validator.validate({**EXAMPLE, field: value}), field) == value
    for value in outside:
        [(named, broken, _)] = errors({**EXAMPLE, field: value}, validator)
        assert named == field and broken in ({rule} if rule else {"minimum", "maximum", "multipleOf"})


# --- what a valid request becomes ----------------------------------------------------------------------

def test_a_valid_request_keeps_every_field_and_takes_the_profiles_default_sides():
    full = {**EXAMPLE, "width": 512, "height": 768, "webhook": "https://h/cb", "direct_link": True, "batch_id": "b",
            "file_prefix": "p", "queued_image_urls": True}
    assert RequestValidator(load_default_profile()).validate(full) == GenerationRequest(**full)
    wide = RequestValidator(load_profile(overrides={"limits": {"width": {"default": 512}}}))
    request = wide.validate(EXAMPLE)
    assert (request.width, request.height) == (512, 1024)


def test_as_dict_leaves_out_what_is_unset():
    request = RequestValidator(load_default_profile()).validate(EXAMPLE)
    assert request.as_dict() == {**EXAMPLE, "width": 1024, "height": 1024, "direct_link": False,
                                 "queued_image_urls": False}


def test_the_schema_takes_its_numbers_from_the_profile():
    profile = load_profile(overrides={"limits": {"samples": {"max": 4}, "width": {"multiple_of": 64}},
                                      "reject_unknown_fields": True})
    schema = request_schema(profile)
    samples, width = schema["properties"]["samples"], schema["properties"]["width"]
    assert (samples["minimum"], samples["maximum"], "multipleOf" in samples, "default" in samples) == (1, 4, False,
                                                                                                        False)
    assert (width["multipleOf"], width["default"]) == (64, 1024)
    assert schema["type"] == "object" and schema["additionalProperties"] is False and schema["required"] == [
        "prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale"]
    assert "additionalProperties" not in request_schema(load_default_profile())


# --- a profile that refuses unknown fields ------------------------------------------------------------

def closed() -> RequestValidator:
    return RequestValidator(load_profile(overrides={"reject_unknown_fields": True}))


def test_unknown_fields_are_each_named_after_the_known_ones_in_body_order():
    body = {"zeta": 1, **EXAMPLE, "samples": 9, "alpha": 2}
    assert errors(body, closed()) == [("samples", "maximum", "must be at most 2"),
                                      ("zeta", "unknown", "is not a field of this endpoint"),
                                      ("alpha", "unknown", "is not a field of this endpoint")]


def test_unknown_fields_are_named_20_at_most_and_cut_to_200_characters():
    many = errors({**EXAMPLE, **{f"x{n}": n for n in range(30)}}, closed())
    assert many == [(f"x{n}", "unknown", "is not a field of this endpoint") for n in range(MAX_TEXT_ERRORS)]
    assert errors({**EXAMPLE, "k" * 500: 1, "\udc00": 2}, closed()) == [
        ("k" * MAX_FIELD_CHARS, "unknown", "is not a field of this endpoint"),
        ("\\udc00", "unknown", "is not a field of this endpoint")]


# --- rule_message: every branch --------------------------------------------------------------------------

@pytest.mark.parametrize("rule,value,message", [
    ("type", "integer", "must be an integer"), ("type", "object", "must be a JSON object"),
    ("type", "null", "must be null"), ("minimum", 3, "must be at least 3"), ("maximum", 2.5, "must be at most 2.5"),
    ("multipleOf", 8, "must be a multiple of 8"), ("minLength", 1, "must not be empty"),
    ("minLength", 3, "must be at least 3 characters"), ("maxLength", 9, "must be at most 9 characters"),
    ("enum", ["a", 1], "must be one of a, 1"), ("const", "x", "the fallback"),
])
def test_rule_message(rule, value, message):
    assert rule_message(rule, value, "the fallback") == message


# --- the body's text, by path ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    (b"\xff{}", [("body", "encoding", "must be UTF-8 encoded JSON")]),
    (b" \n", [("body", "required", "is required: send a JSON object")]),
    (b"[" * 100_000 + b"]" * 100_000, [("body", "json", "is nested too deeply")]),
    (b'"\\ud800"', [("body", "unicode", NOT_TEXT)]),
    (b'{"batch_id": "\\udc00", "ok": "\\u00e9"}', [("batch_id", "unicode", NOT_TEXT)]),
    (b'{"\\udc00": 1}', [("\\udc00", "unicode", "name " + NOT_TEXT)]),
    (b'{"a": {"b": [1, "\\ud800"]}}', [("a.b[1]", "unicode", NOT_TEXT)]),
    (b'[{"x": "\\ud800"}]', [("[0].x", "unicode", NOT_TEXT)]),
])
def test_a_broken_body_is_one_whole_error_named_by_path(raw, expected):
    assert body_errors(raw) == expected


def test_json_that_does_not_parse_says_why():
    [(field, rule, message)] = body_errors(b'{"a": }')
    assert (field, rule) == ("body", "json")
    assert message.startswith("is not valid JSON (Expecting value: line 1 column 7") and message.endswith(")")
    [(_, _, long)] = body_errors(b'{"samples": ' + b"9" * 5000 + b"}")
    assert len(long) == len("is not valid JSON ()") + 120


def test_escapes_that_are_text_pass_and_bad_strings_are_named_20_at_most_paths_cut():
    assert parse_json_body(b'{"p": "caf\\u00e9"}') == {"p": "café"}
    many = body_errors(b"[" + b",".join([b'"\\ud800"'] * 30) + b"]")
    assert many == [(f"[{n}]", "unicode", NOT_TEXT) for n in range(MAX_TEXT_ERRORS)]
    deep = b'{"' + b"k" * 300 + b'": {"j": "\\ud800"}}'
    assert body_errors(deep) == [("k" * MAX_FIELD_CHARS, "unicode", NOT_TEXT)]


# --- the URL's text ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,query,expected", [
    (b"/sd3_5/v1/status/\xff", b"", [("id", "unicode", NOT_TEXT)]),
    (b"/x", b"batch_id=%FF&ok=1", [("batch_id", "unicode", NOT_TEXT)]),
    (b"/x", b"%FF=1", [("\\udcff", "unicode", NOT_TEXT)]),
    (b"/x", b"=%FF", [("query", "unicode", NOT_TEXT)]),
    (b"/x", b"%FF=", [("\\udcff", "unicode", NOT_TEXT)]),          # a blank value is still read
    (b"/x", b"%FF", [("\\udcff", "unicode", NOT_TEXT)]),
    (b"/x", b"a=\xff", [("a", "unicode", NOT_TEXT)]),               # raw bytes, not escapes
    (b"/x/\xff", b"a=%FF", [("id", "unicode", NOT_TEXT), ("a", "unicode", NOT_TEXT)]),
])
def test_a_url_that_is_not_utf8_is_named(path, query, expected):
    with pytest.raises(InvalidRequest) as caught:
        check_url_text("id", path, query)
    assert [(e.field, e.rule, e.message) for e in caught.value.errors] == expected


def test_a_url_that_is_text_passes_and_query_errors_stop_at_20():
    assert check_url_text("id", "/é".encode(), "a=%C3%A9&b=".encode()) is None
    with pytest.raises(InvalidRequest) as caught:
        check_url_text("id", b"/x", b"&".join(b"q%d=%%FF" % n for n in range(30)))
    assert [e.field for e in caught.value.errors] == [f"q{n}" for n in range(MAX_TEXT_ERRORS)]


# --- patterns -------------------------------------------------------------------------------------------

def test_a_pattern_with_a_lone_surrogate_is_refused_saying_so():
    compile_pattern.cache_clear()
    with pytest.raises(ValueError) as caught:
        compile_pattern("a\udc00")
    assert str(caught.value) == "holds a lone surrogate, which is not text"


def test_shown_escapes_only_what_is_not_text():
    assert (shown("café"), shown("a\udc00b")) == ("café", "a\\udc00b")
