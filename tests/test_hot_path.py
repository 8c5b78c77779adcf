"""The hot path kept exact: the fast yes of validation (``compile_fast_check``) accepts exactly the bodies jsonschema
in, under the default profile and one that refuses unknown fields; the full, ordered errors stay jsonschema's."""

import copy

import pytest
from hypothesis import given, settings, strategies as st

from sd35_twin.mockserver.config import load_profile
from sd35_twin.mockserver.errors import InvalidRequest
from sd35_twin.mockserver.validation import RequestValidator, StrictValidator, compile_fast_check, request_schema

from tests.strategies import BREAKERS, one_rule_broken, valid_requests

PROFILE = load_profile()
CLOSED = {**copy.deepcopy(PROFILE), "reject_unknown_fields": True}
SCHEMAS = {"default": request_schema(PROFILE), "closed": request_schema(CLOSED)}

# Bodies of every kind: valid ones, one rule broken, several broken, odd values anywhere.
ANYTHING = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                    max_size=3), max_leaves=6)


@st.composite
def bodies(draw):
    kind = draw(st.sampled_from(["valid", "one broken", "many broken", "odd"]))
    if kind == "valid":
        return draw(valid_requests())
    if kind == "one broken":
        return draw(one_rule_broken())[0]
    body = dict(draw(valid_requests()))
    for name in draw(st.lists(st.sampled_from(sorted(BREAKERS)), max_size=4)):
        body[name] = draw(BREAKERS[name]) if kind == "many broken" else draw(ANYTHING)
    return body


@pytest.mark.parametrize("schema", SCHEMAS, ids=str)
@settings(max_examples=300, deadline=None)
@given(body=bodies())
def test_fast_check_accepts_exactly_what_jsonschema_accepts(schema, body):
    fast = compile_fast_check(SCHEMAS[schema])
    assert fast(body) == (not list(StrictValidator(SCHEMAS[schema]).iter_errors(body)))


def test_fast_check_takes_the_full_path_for_a_keyword_it_does_not_know():
    schema = copy.deepcopy(SCHEMAS["default"])
    schema["properties"]["samples"]["exclusiveMaximum"] = 2
    valid = {"prompt": "a", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1}
    assert compile_fast_check(schema)(valid) is False  # "ask jsonschema", which then decides
    assert compile_fast_check(SCHEMAS["default"])(valid) is True


@settings(max_examples=100, deadline=None)
@given(case=one_rule_broken())
def test_an_invalid_body_still_names_its_violations_in_order(case):
    body, field = case
    with pytest.raises(InvalidRequest) as info:
        RequestValidator(PROFILE).validate(body)
    assert field in [e.field for e in info.value.errors]


@settings(max_examples=500)
@given(bits=st.integers(0, 2**128 - 1))
def test_job_ids_are_the_uuid4_text_they_always_were(bits):
    import uuid

    from sd35_twin.mockserver.backend import uuid4_text

    assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


def test_the_prompts_whitespace_set_is_re2s():
    """The fast check reads PROMPT_PATTERN as "not only WHITESPACE_CHARS": the same answer as RE2 for every
    character up to U+3100 (past the last whitespace but U+FEFF), U+FEFF, lone surrogates (which search_text
    reads as U+FFFD) and a sample of the rest."""
    from sd35_twin.mockserver.validation import PROMPT_PATTERN, WHITESPACE_CHARS, compile_pattern, search_text

    regex = compile_pattern(PROMPT_PATTERN)
    for code in [*range(0x3100), 0xFEFF, *range(0xD800, 0xE000, 7), *range(0x3100, 0x110000, 131)]:
        char = chr(code)
        assert (search_text(regex, char) is None) == (char in WHITESPACE_CHARS), hex(code)


def jsonschema_accepts(schema, body) -> bool:
    return not list(StrictValidator(schema).iter_errors(body))


INT = {"type": "integer"}


@pytest.mark.parametrize("schema, bodies", [
    # a schema the fast check knows: its answer is jsonschema's, for schemas the profile never makes too
    ({"type": "object", "required": ["a"]}, [{"a": 1}, {}, {"b": 1}]),                 # no properties
    ({"type": "object", "properties": {"a": INT}}, [{}, {"a": 1}, {"a": "1"}, {"b": 1}]),   # no required
    ({"type": "object", "properties": {"a": INT}, "additionalProperties": False}, [{"a": 1}, {"b": 1}]),
    ({"type": "object"}, [{}, {"x": [1]}]),
    ({"type": "object", "properties": {"a": {"type": "string", "minLength": 2, "maxLength": 3}}},   # both edges
     [{"a": "x"}, {"a": "xy"}, {"a": "xyz"}, {"a": "wxyz"}]),
    ({"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 1}}}, [{"a": 3}, {"a": 3.5}]),
])
def test_fast_check_is_jsonschema_on_any_schema_it_knows(schema, bodies):
    fast = compile_fast_check(schema)
    assert [fast(body) for body in bodies] == [jsonschema_accepts(schema, body) for body in bodies]


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": INT}, "additionalProperties": {"type": "string"}},   # a schema, not a bool
    {"type": "object", "properties": {"a": INT}, "minProperties": 2},                           # a keyword it lacks
    {"properties": {"a": INT}},                                                                  # no type: any
    # a bound of another type's: jsonschema ignores it, and the fast check, not knowing it there, declines
    *({"type": "object", "properties": {"a": {"type": "string", key: 1}}}
      for key in ("minimum", "maximum", "multipleOf")),
    *({"type": "object", "properties": {"a": {"type": "integer", key: value}}}
      for key, value in (("minLength", 1), ("maxLength", 1), ("pattern", "x"))),
    # a step that is not a whole number above 0: jsonschema's float arithmetic, not the fast check's
    *({"type": "object", "properties": {"a": {"type": "number", "multipleOf": step}}} for step in (0.5, -1)),
])
def test_fast_check_never_says_yes_for_a_schema_it_does_not_know(schema):
    fast = compile_fast_check(schema)
    bodies = [{"a": 1}, {"a": 1, "b": 2}, {"a": 1, "b": "x"}, {}, {"a": "x"}, {"a": 1.5}]
    assert [fast(body) for body in bodies] == [False] * 6          # "ask jsonschema", which then decides
    assert any(jsonschema_accepts(schema, body) for body in bodies)


def test_fast_check_declines_a_step_of_zero_rather_than_divide_by_it():
    schema = {"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 0}}}
    assert compile_fast_check(schema)({"a": 1}) is False      # jsonschema itself fails on it: not the fast path's


def test_unseeded_ids_and_tokens_read_the_os_a_page_at_a_time_and_never_repeat(monkeypatch, valid_request):
    """os.urandom lets go of the GIL, and ids are drawn under the store lock: one call per id queued every other
    thread behind the lock (backend.Entropy). So 100 submits of two samples (300 draws of 16 bytes) read two pages
    instead of making 300 calls."""
    import os
    import uuid

    from sd35_twin.mockserver.backend import Entropy, MockBackend
    from sd35_twin.mockserver.config import MockConfig

    calls = []
    real = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: calls.append(n) or real(n))
    backend = MockBackend(MockConfig(lifecycle="immediate"))
    try:
        jobs = [backend.submit("k", valid_request, "http://h") for _ in range(100)]
    finally:
        backend.close()
    assert valid_request["samples"] == 2
    assert calls == [16, Entropy.PAGE, Entropy.PAGE]  # the journal's salt, then two pages
    ids = [job.id for job in jobs]
    assert len(set(ids)) == 100 and all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    urls = [url for job in jobs for url in job.download_urls]
    assert len(set(urls)) == 200


def test_the_entropy_page_is_used_up_exactly_and_a_forked_child_reads_its_own(monkeypatch):
    import os

    from sd35_twin.mockserver.backend import Entropy

    pages = [bytes(range(256)) * 16, bytes(reversed(range(256))) * 16, b"\x07" * 4096]
    monkeypatch.setattr(os, "urandom", lambda n: pages.pop(0))
    entropy = Entropy()
    drawn = [entropy.bits128() for _ in range(Entropy.PAGE // 16)]  # the whole first page, 16 bytes each
    assert drawn[0] == int.from_bytes(bytes(range(16)), "big")
    assert drawn[1] == int.from_bytes(bytes(range(16, 32)), "big")
    assert entropy.bits128() == int.from_bytes(bytes(reversed(range(240, 256))), "big")  # the next page's first
    monkeypatch.setattr(os, "getpid", lambda: -7)  # as in a child forked from this process
    assert entropy.bits128() == int.from_bytes(b"\x07" * 16, "big")
    assert pages == []
