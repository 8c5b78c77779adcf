"""Validation contracts: every request here must be refused, so they are free on live.

The property contracts run their examples under ``@contract.settings``: many on the mock, a
handful on live (``--contracts-examples`` overrides).

Rows: required fields (L04), samples (L05), guidance_scale (L06), width/height type (L07) and bounds
(L08), lower bounds and steps (L09), optional field types (L10), HTTP 400 (L15), rejection detail
(L23), strict types (L25), body size cap (L26).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sd35_twin.contracts.support import OMIT, REQUIRED, body, expect_rejected

# -- L04 required fields -------------------------------------------------------------------------


@pytest.mark.ledger("L04")
@pytest.mark.parametrize("name", REQUIRED)
def test_each_missing_required_field_is_named(contract, name):
    expect_rejected(contract, "L04", body(**{name: OMIT}), fields=(name,), what=f"a body without {name}")


@pytest.mark.ledger("L04")
def test_an_empty_object_names_every_required_field(contract):
    expect_rejected(contract, "L04", {}, fields=REQUIRED, what="an empty JSON object")


# -- L05 samples ---------------------------------------------------------------------------------


@pytest.mark.ledger("L05")
def test_more_than_two_samples_are_refused(contract):
    @contract.settings
    @given(samples=st.integers(min_value=3, max_value=10_000))
    @example(samples=3)
    def refused(samples):
        expect_rejected(contract, "L05", body(samples=samples), fields=("samples",))

    refused()


# -- L06 guidance_scale --------------------------------------------------------------------------


@pytest.mark.ledger("L06")
def test_guidance_scale_above_20_is_refused(contract):
    @contract.settings
    @given(guidance=st.floats(min_value=20, exclude_min=True, max_value=1e9, allow_nan=False, allow_infinity=False)
           | st.integers(min_value=21, max_value=10**6))
    @example(guidance=20.5)
    @example(guidance=21)
    def refused(guidance):
        expect_rejected(contract, "L06", body(guidance_scale=guidance), fields=("guidance_scale",))

    refused()


# -- L07 width/height are integers ---------------------------------------------------------------


@pytest.mark.ledger("L07")
@pytest.mark.parametrize("name, value", [("width", 512.5), ("height", 767.5), ("width", "1024")])
def test_width_and_height_must_be_integers(contract, name, value):
    expect_rejected(contract, "L07", body(**{name: value}), fields=(name,))


# -- L08 width/height bounds ---------------------------------------------------------------------

_OUTSIDE = st.one_of(st.integers(min_value=-10_000, max_value=255), st.integers(min_value=1537, max_value=100_000),
                     st.integers(min_value=256, max_value=1536).filter(lambda v: v % 8))


@pytest.mark.ledger("L08")
def test_dimensions_outside_256_to_1536_or_not_multiples_of_8_are_refused(contract):
    @contract.settings
    @given(name=st.sampled_from(["width", "height"]), value=_OUTSIDE)
    @example(name="width", value=255)
    @example(name="height", value=1537)
    @example(name="width", value=1001)
    def refused(name, value):
        expect_rejected(contract, "L08", body(**{name: value}), fields=(name,))

    refused()


# -- L09 lower bounds and steps ------------------------------------------------------------------


@pytest.mark.ledger("L09")
@pytest.mark.parametrize("name, value", [
    ("samples", 0), ("samples", -1), ("num_inference_steps", 0), ("guidance_scale", -0.5),
    ("prompt", ""), ("prompt", "   \n\t"),
], ids=["samples-0", "samples-neg", "steps-0", "guidance-neg", "prompt-empty", "prompt-blank"])
def test_values_below_the_lower_bounds_are_refused(contract, name, value):
    expect_rejected(contract, "L09", body(**{name: value}), fields=(name,))


@pytest.mark.ledger("L09")
def test_more_than_50_steps_are_refused(contract):
    @contract.settings
    @given(steps=st.integers(min_value=51, max_value=10**6))
    @example(steps=51)
    def refused(steps):
        expect_rejected(contract, "L09", body(num_inference_steps=steps), fields=("num_inference_steps",))

    refused()


# -- L10 optional field types --------------------------------------------------------------------


@pytest.mark.ledger("L10")
@pytest.mark.parametrize("name, value", [
    ("webhook", "not a url"), ("webhook", "ftp://example.com/hook"), ("webhook", 5),
    ("direct_link", "yes"), ("direct_link", 1), ("batch_id", 7), ("file_prefix", 7),
    ("queued_image_urls", "true"),
])
def test_optional_fields_of_the_wrong_type_are_refused(contract, name, value):
    expect_rejected(contract, "L10", body(**{name: value}), fields=(name,))


# -- L15 HTTP 400 --------------------------------------------------------------------------------


@pytest.mark.ledger("L15")
def test_an_invalid_body_answers_400(contract):
    err = expect_rejected(contract, "L15", body(samples=3), fields=("samples",))
    contract.observe("L15", {"invalid_http_status": err.status_code},
                     profile={"http_status": {"invalid": err.status_code}})
    assert err.status_code == 400, f"an invalid body answered HTTP {err.status_code}, not 400"


@pytest.mark.ledger("L15")
@pytest.mark.parametrize("raw", ['{"prompt": "x",', "not json at all", "[1, 2, 3]"],
                         ids=["truncated", "text", "array"])
def test_a_malformed_body_answers_400(contract, raw):
    resp = contract.post_raw(raw)
    contract.observe("L15", {"sent": raw, "http_status": resp.status_code, "body": resp.text[:200]})
    assert resp.status_code == 400, f"{raw!r} answered HTTP {resp.status_code}: {resp.text[:200]}"


# -- L23 rejection detail ------------------------------------------------------------------------


@pytest.mark.ledger("L23")
def test_a_rejection_lists_every_violation_by_field(contract):
    err = expect_rejected(contract, "L23", body(samples=3, guidance_scale=25, width=100, prompt=OMIT),
                          fields=("samples", "guidance_scale", "width", "prompt"))
    data = err.body
    assert isinstance(data, dict), f"the rejection is not a JSON object: {data!r}"
    assert data.get("status") == "FAILURE", f"the rejection's status is {data.get('status')!r}, not FAILURE"
    assert isinstance(data.get("error"), str) and data["error"], "the rejection has no error text"
    errors = data.get("errors")
    assert isinstance(errors, list), f"no errors array: {data!r}"
    named = {e.get("field") for e in errors if isinstance(e, dict)}
    assert {"samples", "guidance_scale", "width", "prompt"} <= named, f"errors name only {sorted(named)}"
    segments = [s.strip() for s in data["error"].split(";")]
    assert {s.split(":", 1)[0] for s in segments} >= {"samples", "guidance_scale", "width", "prompt"}, (
        f"the error text is not 'field: rule; ...': {data['error']!r}")


@pytest.mark.ledger("L23")
def test_a_rejection_is_a_failure_body(contract):
    err = expect_rejected(contract, "L23", body(samples=0), fields=("samples",))
    assert isinstance(err.body, dict), f"the rejection is not JSON: {err.body!r}"
    assert err.body.get("status") == "FAILURE" and isinstance(err.body.get("error"), str), err.body


# -- L25 strict types ----------------------------------------------------------------------------

_INTEGER_FIELDS = ["num_inference_steps", "samples", "width", "height"]
_WRONG_FOR_INTEGER = st.sampled_from([True, False, "2", 2.0, 1.0, None, [1], {"n": 1}])
_WRONG_FOR_NUMBER = st.sampled_from([True, "1.5", None, [1.5], {"g": 1}])
_WRONG_FOR_STRING = st.sampled_from([5, None, True, ["x"], {"text": "x"}])


@pytest.mark.ledger("L25")
def test_values_of_the_wrong_json_type_are_refused(contract):
    @contract.settings
    @given(case=st.one_of(
        st.tuples(st.sampled_from(_INTEGER_FIELDS), _WRONG_FOR_INTEGER),
        st.tuples(st.just("guidance_scale"), _WRONG_FOR_NUMBER),
        st.tuples(st.sampled_from(["prompt", "negative_prompt"]), _WRONG_FOR_STRING),
    ))
    @example(case=("samples", True))
    @example(case=("samples", "2"))
    @example(case=("num_inference_steps", 4.0))
    @example(case=("guidance_scale", None))
    def refused(case):
        name, value = case
        expect_rejected(contract, "L25", body(**{name: value}), fields=(name,), what=f"{name}={json.dumps(value)}")

    refused()


@pytest.mark.ledger("L25")
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_numbers(contract, token):
    raw = json.dumps(body()).replace('"guidance_scale": 0.0', f'"guidance_scale": {token}')
    assert token in raw
    resp = contract.post_raw(raw)
    contract.observe("L25", {"sent": f"guidance_scale={token}", "http_status": resp.status_code})
    assert resp.status_code == 400, f"guidance_scale={token} answered HTTP {resp.status_code}: {resp.text[:200]}"


# -- L26 body size cap ---------------------------------------------------------------------------


@pytest.mark.ledger("L26")
def test_a_body_over_1_mib_is_refused_with_413(contract):
    big = body(prompt="x" * (1024 * 1024 + 100))
    err = expect_rejected(contract, "L26", big, what="a body of more than 1 MiB")
    contract.observe("L26", {"http_status": err.status_code},
                     profile={"http_status": {"body_too_large": err.status_code}})
    assert err.status_code == 413, f"a body over 1 MiB answered HTTP {err.status_code}, not 413"
