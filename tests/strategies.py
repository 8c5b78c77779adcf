"""Hypothesis strategies for requests to the SD3.5 endpoint: valid ones, and ones breaking exactly one rule."""

from __future__ import annotations

import math

from hypothesis import strategies as st

REQUIRED = ("prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale")

# Text that stays small but covers unicode, including astral and combining characters.
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
prompt = st.builds(lambda head, tail: head + tail, st.sampled_from(["cat", "Wasserfall", "海", "🐱", "a"]), text)


def dimension(lo: int = 256, hi: int = 1536) -> st.SearchStrategy[int]:
    return st.integers(lo // 8, hi // 8).map(lambda n: n * 8)


def valid_requests(max_side: int = 1536) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "prompt": prompt,
            "negative_prompt": text,
            "num_inference_steps": st.integers(1, 50),
            "samples": st.integers(1, 2),
            "guidance_scale": st.one_of(st.integers(0, 20), st.floats(0, 20, allow_nan=False)),
        },
        optional={
            "width": dimension(256, max_side),
            "height": dimension(256, max_side),
            "webhook": st.sampled_from(["http://127.0.0.1:9/hook", "https://localhost/cb?x=1", "http://example.invalid/h"]),
            "direct_link": st.booleans(),
            "batch_id": st.text(max_size=128),
            "file_prefix": st.from_regex(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}\Z"),
            "queued_image_urls": st.booleans(),
            "some_unknown_field": st.one_of(st.integers(), st.text(max_size=5), st.none()),
        },
    )


# (field, a strategy of bad values) — each breaks exactly one rule of that one field.
NOT_INTEGER = st.sampled_from([True, False, "2", 2.0, None, [], {}, 1.5])
NOT_NUMBER = st.sampled_from([True, "1", None, math.nan, math.inf, -math.inf, [1]])
NOT_STRING = st.sampled_from([1, 1.5, True, None, [], {"a": 1}])
NOT_BOOLEAN = st.sampled_from([1, 0, "true", "false", None, []])

BREAKERS: dict[str, st.SearchStrategy] = {
    "prompt": st.one_of(NOT_STRING, st.sampled_from(["", " ", "\n\t ", "x" * 10_001])),
    "negative_prompt": st.one_of(NOT_STRING, st.just("y" * 10_001)),
    "num_inference_steps": st.one_of(NOT_INTEGER, st.integers(max_value=0), st.integers(min_value=51)),
    "samples": st.one_of(NOT_INTEGER, st.integers(max_value=0), st.integers(min_value=3)),
    "guidance_scale": st.one_of(NOT_NUMBER, st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                                st.floats(min_value=20.000001, allow_nan=False, allow_infinity=False)),
    "width": st.one_of(NOT_INTEGER, st.integers(max_value=255).map(lambda n: n - n % 8),
                       st.integers(min_value=1537).map(lambda n: n + (-n % 8)),
                       st.integers(32, 192).map(lambda n: n * 8 + 4)),
    "height": st.one_of(NOT_INTEGER, st.integers(min_value=10**6), st.just(10**30), st.just(1001)),
    "webhook": st.one_of(NOT_STRING, st.sampled_from(["ftp://x/y", "not a url", "http://", "javascript:alert(1)",
                                                      "http://h/" + "a" * 2100, "http://a b/"])),
    "direct_link": NOT_BOOLEAN,
    "batch_id": st.one_of(NOT_STRING, st.just("b" * 129)),
    "file_prefix": st.one_of(NOT_STRING, st.sampled_from(["../", "../../etc/passwd", ".hidden", "a/b", "a\\b",
                                                          "x" * 65, "", "a b", "née", "a\n"])),
    "queued_image_urls": NOT_BOOLEAN,
}


@st.composite
def one_rule_broken(draw, base: st.SearchStrategy[dict] | None = None) -> tuple[dict, str]:
    """A valid request with exactly one field made invalid (or one required field removed)."""
    request = dict(draw(base or valid_requests(512)))
    field = draw(st.sampled_from(sorted(BREAKERS) + [f"-{name}" for name in REQUIRED]))
    if field.startswith("-"):
        field = field[1:]
        request.pop(field)
    else:
        request[field] = draw(BREAKERS[field])
    return request, field
