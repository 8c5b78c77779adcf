"""The request schema and its validation.

One JSON Schema, built from the profile's limits, is both what the mock enforces and what
``/openapi.json`` publishes, so the two cannot drift. Validation reports every violation, each
naming its field and rule.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import jsonschema
from jsonschema import validators

from .errors import FieldError, InvalidRequest

REQUIRED = ("prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale")

TYPE_WORDS = {
    "integer": "an integer",
    "number": "a finite number",
    "string": "a string",
    "boolean": "a boolean",
    "object": "a JSON object",
}

PATTERN_MESSAGES = {
    "prompt": "must contain a non-whitespace character",
    "webhook": "must be an http:// or https:// URL with a host",
    "file_prefix": "may hold only letters, digits, '.', '_' and '-', and must not start with '.'",
}

# Whitespace spelled out as ECMA-262 defines \s: Python's \s also takes U+001C..U+001F and U+0085, so a
# pattern with \s would mean one thing here and another to every OpenAPI tool reading /openapi.json.
WHITESPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
PROMPT_PATTERN = f"[^{WHITESPACE}]"
WEBHOOK_PATTERN = f"^[Hh][Tt][Tt][Pp][Ss]?://[^{WHITESPACE}/?#]+([/?#][^{WHITESPACE}]*)?$"


def request_schema(profile: dict) -> dict:
    """The JSON Schema of ``POST /sd3_5/v1`` under this profile (OpenAPI 3.0 and 2020-12 compatible)."""
    lim = profile["limits"]

    def bounded_integer(name: str, description: str) -> dict:
        spec = {"type": "integer", "minimum": lim[name]["min"], "maximum": lim[name]["max"], "description": description}
        if "multiple_of" in lim[name]:
            spec["multipleOf"] = lim[name]["multiple_of"]
        if "default" in lim[name]:
            spec["default"] = lim[name]["default"]
        return spec

    return {
        "type": "object",
        "required": list(REQUIRED),
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": lim["prompt_max_chars"], "pattern": PROMPT_PATTERN,
                       "description": "Required. Description of the image to generate."},
            "negative_prompt": {"type": "string", "maxLength": lim["negative_prompt_max_chars"],
                                "description": "Required. Description of what should not appear in the image."},
            "num_inference_steps": bounded_integer("num_inference_steps", "Required. Number of inference steps."),
            "samples": bounded_integer("samples", "Required. Number of images to generate."),
            "guidance_scale": {"type": "number", "minimum": lim["guidance_scale"]["min"],
                               "maximum": lim["guidance_scale"]["max"],
                               "description": "Required. How much the image should adhere to the prompt."},
            "height": bounded_integer("height", "Optional image height."),
            "width": bounded_integer("width", "Optional image width."),
            "webhook": {"type": "string", "maxLength": lim["webhook_max_chars"], "pattern": WEBHOOK_PATTERN,
                        "description": "The job's final status is POSTed to this URL."},
            "direct_link": {"type": "boolean", "description": "Friendly .png download URLs."},
            "batch_id": {"type": "string", "maxLength": lim["batch_id_max_chars"],
                         "description": "Echoed back with the job."},
            "file_prefix": {"type": "string", "maxLength": lim["file_prefix_max_chars"],
                            "pattern": lim["file_prefix_pattern"], "description": "Prefix of the image file names."},
            "queued_image_urls": {"type": "boolean",
                                  "description": "PENDING answers already carry the download URLs."},
        },
    }


def _is_integer(_checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(_checker, instance) -> bool:
    if isinstance(instance, bool) or not isinstance(instance, (int, float)):
        return False
    return not isinstance(instance, float) or math.isfinite(instance)


def _anchored_pattern(validator, pattern, instance, schema):
    """``pattern`` as JSON Schema means it: ``$`` does not match before a trailing newline."""
    if not isinstance(instance, str):
        return
    match = re.search(pattern, instance)
    if match is None or (pattern.endswith("$") and match.end() != len(instance)):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_StrictValidator = validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _anchored_pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request: the page's fields, with its defaults applied."""

    prompt: str
    negative_prompt: str
    num_inference_steps: int
    samples: int
    guidance_scale: float
    width: int = 1024
    height: int = 1024
    webhook: str | None = None
    direct_link: bool = False
    batch_id: str | None = None
    file_prefix: str | None = None
    queued_image_urls: bool = False

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class RequestValidator:
    """Validates request bodies against the profile's schema; build one per profile."""

    def __init__(self, profile: dict):
        self.schema = request_schema(profile)
        self._validator = _StrictValidator(self.schema)
        self._order = {name: i for i, name in enumerate(self.schema["properties"])}

    def validate(self, body: object) -> GenerationRequest:
        if not isinstance(body, dict):
            raise InvalidRequest(FieldError("body", "type", "must be a JSON object"))
        errors = []
        for error in self._validator.iter_errors(body):
            errors.extend(self._field_errors(error, body))
        if errors:
            empty = {e.field for e in errors if e.rule == "minLength"}  # "empty" says it all
            unique = [e for e in dict.fromkeys(errors) if not (e.rule == "pattern" and e.field in empty)]
            unique.sort(key=lambda e: self._order.get(e.field, len(self._order)))
            raise InvalidRequest(unique)
        props = self.schema["properties"]
        known = {name: body[name] for name in props if name in body}
        for name in ("width", "height"):
            known.setdefault(name, props[name]["default"])
        return GenerationRequest(**known)

    def _field_errors(self, error: jsonschema.ValidationError, body: dict) -> list[FieldError]:
        rule, value = error.validator, error.validator_value
        if rule == "required":
            return [FieldError(name, "required", "is required") for name in value if name not in body]
        field = str(error.path[0]) if error.path else "body"
        if rule == "type":
            message = f"must be {TYPE_WORDS.get(value, value)}"
        elif rule == "minimum":
            message = f"must be at least {value}"
        elif rule == "maximum":
            message = f"must be at most {value}"
        elif rule == "multipleOf":
            message = f"must be a multiple of {value}"
        elif rule == "minLength":
            message = "must not be empty" if value == 1 else f"must be at least {value} characters"
        elif rule == "maxLength":
            message = f"must be at most {value} characters"
        elif rule == "pattern":
            message = PATTERN_MESSAGES.get(field, f"must match {value}")
        else:  # a keyword a user's profile added: say what jsonschema says
            message = error.message[:200]
        return [FieldError(field, rule, message)]


def parse_json_body(raw: bytes) -> object:
    """Decode a request body, turning every way JSON can be broken into a ``body`` error."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(FieldError("body", "encoding", "must be UTF-8 encoded JSON")) from None
    if not text.strip():
        raise InvalidRequest(FieldError("body", "required", "is required: send a JSON object"))
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidRequest(FieldError("body", "json", "is nested too deeply")) from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise InvalidRequest(FieldError("body", "json", f"is not valid JSON ({str(exc)[:120]})")) from None
