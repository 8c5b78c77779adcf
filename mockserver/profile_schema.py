"""The profile's schema (``profiles/schema.json``) and the check every profile passes before it takes effect.

A profile comes from a file, the environment or ``PATCH /__mock__/config``, merged over the default one.
Checked whole, a typo or an impossible value is refused naming its key (``profile.http_status.pending``)
instead of turning into a 500, a dropped body or a hung thread later. The schema is data and documents each
key; this module adds what JSON Schema cannot say: the keyword ``limit`` (a range that holds its default),
the annotation ``errorMessage`` (one sentence for any violation of a value) and the format ``re2``.
"""

from __future__ import annotations

import difflib
import json
from importlib import resources

import jsonschema
from jsonschema import validators

from .errors import FieldError, InvalidRequest
from .validation import StrictValidator, compile_pattern, rule_message

PROFILE_SCHEMA = json.loads(resources.files(__package__).joinpath("profiles/schema.json").read_text("utf-8"))
MAX_KEY_CHARS = 100  # an unknown key is named, but not at any length


def _limit(validator, enabled, instance, schema):
    """min <= default <= max, and default a multiple of multiple_of: the default is applied to every request
    that names no size, so it must be one the request schema accepts."""
    if not enabled or not validator.is_type(instance, "object"):
        return
    low, default, high, step = (instance.get(k) for k in ("min", "default", "max", "multiple_of"))
    number, integer = (lambda v: validator.is_type(v, "number")), (lambda v: validator.is_type(v, "integer"))
    if number(low) and number(high) and low > high:
        yield jsonschema.ValidationError(f"must be at least min ({low})", path=["max"])
    if number(default) and number(low) and default < low:
        yield jsonschema.ValidationError(f"must be at least min ({low})", path=["default"])
    if number(default) and number(high) and default > high:
        yield jsonschema.ValidationError(f"must be at most max ({high})", path=["default"])
    if integer(default) and integer(step) and step > 0 and default % step:
        yield jsonschema.ValidationError(f"must be a multiple of multiple_of ({step})", path=["default"])


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("re2", raises=ValueError)
def _compiles_in_re2(value: object) -> bool:
    """RE2 compiles it, so it matches in time linear in the text (and the request validator runs it in RE2)."""
    if isinstance(value, str):
        compile_pattern(value)
    return True


_VALIDATOR = validators.extend(StrictValidator, {"limit": _limit})(PROFILE_SCHEMA, format_checker=_FORMATS)


_STATUS = StrictValidator(PROFILE_SCHEMA["$defs"]["status"])


def is_status_code(value: object) -> bool:
    """A status a profile may name (``$defs/status``: one whose answer carries a body)."""
    return _STATUS.is_valid(value)


def check_profile(profile: dict) -> None:
    """Raise ``InvalidRequest`` listing every violation of the schema, each named ``profile.<key path>``."""
    errors = [e for error in _VALIDATOR.iter_errors(profile) for e in _field_errors(error)]
    if errors:
        raise InvalidRequest(list(dict.fromkeys(errors)))


def _did_you_mean(key: str, known: list[str]) -> str:
    """"; did you mean 'submit_pending'?" for a key close to one of ``known`` (difflib's ratio, as Python's
    own NameError suggestions), else nothing."""
    close = difflib.get_close_matches(key[:MAX_KEY_CHARS].lower(), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _field_errors(error: jsonschema.ValidationError) -> list[FieldError]:
    path = ".".join(["profile", *map(str, error.path)])
    rule, value = error.validator, error.validator_value
    if rule == "required":
        return [FieldError(f"{path}.{key}", "required", "is required") for key in value if key not in error.instance]
    if rule == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        return [FieldError(f"{path}.{key[:MAX_KEY_CHARS]}", "unknown", "is not a profile key" + _did_you_mean(key, known))
                for key in error.instance if key not in known]
    if "errorMessage" in error.schema:
        message = error.schema["errorMessage"]
    elif rule == "format":
        message = f"must be a pattern RE2 compiles ({error.cause})"
    else:
        message = rule_message(rule, value, error.message)
    return [FieldError(path, rule, message)]
