"""The request schema and its validation.

One JSON Schema, built from the profile's limits, is both what the mock enforces and what
``/openapi.json`` publishes, so the two cannot drift. Validation reports every violation, each
naming its field and rule.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import deque
from dataclasses import dataclass
from urllib.parse import parse_qsl

import jsonschema
import re2
from jsonschema import validators

from .coverage import meet
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
# Anchored, so it means the same under re.match (openapi-generator's clients) as under JSON Schema's search.
PROMPT_PATTERN = f"^[{WHITESPACE}]*[^{WHITESPACE}]"
# The same set as characters: "a character not in it" is ``text.strip(WHITESPACE_CHARS) != ""``, which the fast
# check (``compile_fast_check``) runs in C where an RE2 search through its binding costs ~12 µs.
# tests/test_hot_path.py checks it against RE2 (every code point to U+3100, U+FEFF, surrogates, a sample beyond).
WHITESPACE_CHARS = "".join(chr(c) for c in (*range(0x3001), 0xFEFF) if re.fullmatch(f"[{WHITESPACE}]", chr(c)))
WEBHOOK_PATTERN = f"^[Hh][Tt][Tt][Pp][Ss]?://[^{WHITESPACE}/?#]+([/?#][^{WHITESPACE}]*)?$"


def request_schema(profile: dict) -> dict:
    """The JSON Schema of ``POST /sd3_5/v1`` under this profile (OpenAPI 3.0 and 2020-12 compatible)."""
    lim = profile["limits"]
    closed = {"additionalProperties": False} if profile.get("reject_unknown_fields") else {}

    def bounded_integer(name: str, description: str) -> dict:
        spec = {"type": "integer", "minimum": lim[name]["min"], "maximum": lim[name]["max"], "description": description}
        if "multiple_of" in lim[name]:
            spec["multipleOf"] = lim[name]["multiple_of"]
        if "default" in lim[name]:
            spec["default"] = lim[name]["default"]
        return spec

    return {
        "type": "object",
        **closed,
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


# Patterns run on RE2: its time is linear in the text whatever the pattern, so no pattern a profile sets can
# hang the mock; and its ``$`` matches only at the very end, as JSON Schema's (ECMA-262's) does. RE2 has
# no ``\uXXXX`` escape (the whitespace above uses it, and a profile may): it is read as ``\x{XXXX}``.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad profile pattern is a 400 naming it, not a line on stderr
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)  # a pair, so an escaped backslash stays one


@functools.lru_cache(maxsize=64)
def compile_pattern(pattern: str):
    """A JSON Schema ``pattern`` compiled by RE2; ``ValueError`` with RE2's reason if it cannot be (it refuses
    what it cannot match in linear time: look-around, backreferences)."""
    translated = _ESCAPE.sub(lambda m: "\\x{" + m[1][1:] + "}" if len(m[1]) == 5 else m[0], pattern)
    try:
        return re2.compile(translated, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0]
        raise ValueError(reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)) from None
    except UnicodeEncodeError:
        raise ValueError("holds a lone surrogate, which is not text") from None


def search_text(regex, text: str):
    try:
        return regex.search(text)
    except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8, so it reads one as U+FFFD
        return regex.search(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))


def _pattern(validator, pattern, instance, schema):
    """JSON Schema's ``pattern``: a search, not a full match, in RE2."""
    if isinstance(instance, str) and search_text(compile_pattern(pattern), instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# JSON Schema 2020-12 with JSON's integers and finite numbers (no bool, no NaN), and RE2 patterns.
StrictValidator = validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)


def rule_message(rule: str, value: object, fallback: str) -> str:
    """A sentence for people on a broken JSON Schema rule; ``fallback`` (jsonschema's own message, which
    quotes the value) for any other."""
    if rule == "type":
        return f"must be {TYPE_WORDS.get(value, value)}"
    if rule == "minimum":
        return f"must be at least {value}"
    if rule == "maximum":
        return f"must be at most {value}"
    if rule == "multipleOf":
        return f"must be a multiple of {value}"
    if rule == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters"
    if rule == "maxLength":
        return f"must be at most {value} characters"
    if rule == "enum":
        return "must be one of " + ", ".join(map(str, value))
    return fallback


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


def _never(_body) -> bool:
    return False


def compile_fast_check(schema: dict):
    """A function of a JSON object that is True only for one ``schema`` accepts, and costs a few checks per field
    where jsonschema's ``iter_errors`` costs ~90 µs. Built from the same schema, so it cannot drift from it:
    a keyword it does not know makes it say False for every body, and False only means "ask jsonschema", which
    then names every violation (or finds none). It keeps jsonschema's rules: ``required``,
    ``additionalProperties: false``, the types as ``StrictValidator`` has them, bounds, ``multipleOf`` (whole
    numbers), lengths in code points, and RE2 ``pattern`` searches."""
    if set(schema) - {"type", "required", "properties", "additionalProperties"} or schema.get("type") != "object" \
            or schema.get("additionalProperties", True) not in (True, False):
        return _never
    checks = {}
    for name, spec in schema.get("properties", {}).items():
        check = _compile_property(spec)
        if check is None:
            return _never
        checks[name] = check
    required = tuple(schema.get("required", ()))
    closed = schema.get("additionalProperties") is False

    def accepts(body: dict) -> bool:
        for name in required:
            if name not in body:
                return False
        for name, value in body.items():
            check = checks.get(name)
            if check is None:
                if closed:
                    return False
            elif not check(value):
                return False
        return True
    return accepts


_FAST_TYPES = {"integer": lambda v: _is_integer(None, v), "number": lambda v: _is_number(None, v),
               "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool)}


def _compile_property(spec: dict):
    """One property's check for ``compile_fast_check``; None for a schema it does not know exactly."""
    kind = spec.get("type")
    if kind not in _FAST_TYPES or set(spec) - {"type", "description", "default", "minimum", "maximum", "multipleOf",
                                               "minLength", "maxLength", "pattern"}:
        return None
    numeric, textual = kind in ("integer", "number"), kind == "string"
    if (not numeric and set(spec) & {"minimum", "maximum", "multipleOf"}) or \
            (not textual and set(spec) & {"minLength", "maxLength", "pattern"}):
        return None
    low, high, step = spec.get("minimum"), spec.get("maximum"), spec.get("multipleOf")
    shortest, longest = spec.get("minLength"), spec.get("maxLength")
    if step is not None and not (_is_integer(None, step) and step > 0):
        return None
    try:
        regex = compile_pattern(spec["pattern"]) if "pattern" in spec else None
    except ValueError:
        return None
    if spec.get("pattern") == PROMPT_PATTERN:
        regex = _NOT_ONLY_WHITESPACE
    is_type = _FAST_TYPES[kind]

    def check(value) -> bool:
        if not is_type(value):
            return False
        if numeric:
            if (low is not None and value < low) or (high is not None and value > high):
                return False
            return step is None or value % step == 0  # jsonschema's test for a whole-number step
        if textual:
            size = len(value)
            if (shortest is not None and size < shortest) or (longest is not None and size > longest):
                return False
            return regex is None or search_text(regex, value) is not None
        return True
    return check


class _NotOnlyWhitespace:
    """``PROMPT_PATTERN``'s search, as ``search_text`` calls it, with ``str.strip``."""

    @staticmethod
    def search(text: str):
        return True if text.strip(WHITESPACE_CHARS) else None


_NOT_ONLY_WHITESPACE = _NotOnlyWhitespace()


class RequestValidator:
    """Validates request bodies against the profile's schema; build one per profile."""

    def __init__(self, profile: dict):
        self.schema = request_schema(profile)
        self._validator = StrictValidator(self.schema)
        self._accepts = compile_fast_check(self.schema)  # the cheap yes; jsonschema for every no
        self._order = {name: i for i, name in enumerate(self.schema["properties"])}
        props = self.schema["properties"]
        self._max_samples, self._max_steps = props["samples"]["maximum"], props["num_inference_steps"]["maximum"]

    def validate(self, body: object) -> GenerationRequest:
        if not isinstance(body, dict):
            raise InvalidRequest(FieldError("body", "type", "must be a JSON object"))
        self._meet_bounds(body)
        errors = []
        if not self._accepts(body):  # every violation, named, ordered, only for a body that may have one
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

    def _meet_bounds(self, body: dict) -> None:
        """Mark the assumed rows this body's values reach (coverage.py), refused or not."""
        if "width" in body or "height" in body:
            meet("L08")  # the width and height bounds are assumed
        samples, steps = body.get("samples"), body.get("num_inference_steps")
        if _is_integer(None, samples) and samples >= self._max_samples:
            meet("L05")  # the samples maximum: the page says 2 and 4
        if _is_integer(None, steps) and steps >= self._max_steps:
            meet("L09")  # the steps maximum is assumed
        if any(name not in self._order for name in body):
            meet("L20")  # that an unknown field is ignored is assumed

    def _field_errors(self, error: jsonschema.ValidationError, body: dict) -> list[FieldError]:
        rule, value = error.validator, error.validator_value
        if rule == "type" and error.path:
            meet("L25")  # a value a laxer API might take ("2", 2.0, null)
        elif rule in LOWER_BOUND_RULES and error.path and error.path[0] in LOWER_BOUNDED:
            meet("L09")  # the lower bounds are assumed
        if rule == "required":
            return [FieldError(name, "required", "is required") for name in value if name not in body]
        if rule == "additionalProperties":  # the profile's reject_unknown_fields: each one named
            unknown = [name for name in body if name not in self.schema["properties"]]
            return [FieldError(shown(name)[:MAX_FIELD_CHARS], "unknown", "is not a field of this endpoint")
                    for name in unknown[:MAX_TEXT_ERRORS]]
        field = str(error.path[0]) if error.path else "body"
        if rule == "pattern":
            message = PATTERN_MESSAGES.get(field, f"must match {value}")
        else:
            message = rule_message(rule, value, error.message[:200])
        return [FieldError(field, rule, message)]


# Ledger row 9's lower bounds: the rules and fields a refusal under them names.
LOWER_BOUND_RULES = ("minimum", "minLength", "pattern")
LOWER_BOUNDED = ("samples", "num_inference_steps", "guidance_scale", "prompt")

NOT_TEXT = "must be Unicode text (no lone surrogate, no bytes that are not UTF-8)"
MAX_TEXT_ERRORS = 20  # a body can hold thousands of bad strings: name the first ones
MAX_FIELD_CHARS = 200  # and keys of any length, nested a thousand deep


def parse_json_body(raw: bytes) -> object:
    """Decode a request body, turning every way JSON can be broken into a ``body`` error, and refusing any
    string that is not text (a ``"\\udc00"`` escape decodes to a lone surrogate, which no answer, journal or
    webhook can encode: kept, it would turn every later read of it into a 500)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(FieldError("body", "encoding", "must be UTF-8 encoded JSON")) from None
    if not text.strip():
        raise InvalidRequest(FieldError("body", "required", "is required: send a JSON object"))
    try:
        document = json.loads(text)
    except RecursionError:
        raise InvalidRequest(FieldError("body", "json", "is nested too deeply")) from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise InvalidRequest(FieldError("body", "json", f"is not valid JSON ({str(exc)[:120]})")) from None
    if "\\u" in text:  # strictly decoded UTF-8 holds no surrogate: only an escape can make one
        errors = _non_text_fields(document)
        if errors:
            raise InvalidRequest(errors)
    return document


def _is_text(value: str) -> bool:
    """False for a string holding a lone surrogate (from a JSON escape, or bytes read with ``surrogateescape``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """``name`` fit to print or encode in any answer, even when it is not text itself (a lone surrogate
    becomes ``\\udc00``)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _non_text_fields(document: object) -> list[FieldError]:
    """The strings and keys of a JSON document that are not text, named by path (``batch_id``,
    ``profile.limits.x``, ``api_keys[0]``; cut short past ``MAX_FIELD_CHARS``). Breadth first with a queue:
    a document nested as deeply as ``json.loads`` allows would overflow a recursive walk."""
    errors: list[FieldError] = []
    queue = deque([("", document)])
    while queue and len(errors) < MAX_TEXT_ERRORS:
        path, value = queue.popleft()
        if isinstance(value, str) and not _is_text(value):
            errors.append(FieldError(path or "body", "unicode", NOT_TEXT))
        elif isinstance(value, dict):
            for key, item in value.items():
                child = (f"{path}.{shown(key)}" if path else shown(key))[:MAX_FIELD_CHARS]
                if not _is_text(key):
                    errors.append(FieldError(child, "unicode", "name " + NOT_TEXT))
                queue.append((child, item))
        elif isinstance(value, list):
            queue.extend((f"{path}[{i}]"[:MAX_FIELD_CHARS], item) for i, item in enumerate(value))
    return errors[:MAX_TEXT_ERRORS]


def check_url_text(path_field: str, path: bytes, query: bytes = b"") -> None:
    """Refuse a URL whose path or query parameters, percent-decoded, are not UTF-8. werkzeug would read them
    as other text (U+FFFD in a path; the escapes left as they are in a query, so ``?batch_id=%FF`` would
    filter on the text ``%FF``). ``path``: the decoded path (WSGI's ``PATH_INFO`` as bytes); ``path_field``:
    what a bad path is named (only a route's variable part can be anything but ASCII)."""
    errors = []
    if not _is_text(path.decode("utf-8", "surrogateescape")):
        errors.append(FieldError(path_field, "unicode", NOT_TEXT))
    pairs = parse_qsl(query.decode("utf-8", "surrogateescape"), keep_blank_values=True, errors="surrogateescape")
    errors += [FieldError(shown(name)[:MAX_FIELD_CHARS] or "query", "unicode", NOT_TEXT)
               for name, value in pairs if not (_is_text(name) and _is_text(value))]
    if errors:
        raise InvalidRequest(errors[:MAX_TEXT_ERRORS])
