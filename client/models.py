"""The typed request and job status, and the client-side check of the documented limits.

The limits mirror docs/wire.md (the mock's default profile): the page documents samples <= 2 and
guidance_scale <= 20; the other bounds are the mock's assumptions and can be replaced with
``Limits.from_profile(...)`` when a profile or the live API says otherwise. Checking them before
sending saves a billable round trip and names every bad field at once; ``validate=False`` on the
client skips the check so the server's own errors can be tested.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequestError, UnexpectedResponseError

__all__ = ["Limits", "DEFAULT_LIMITS", "GenerationRequest", "JobState", "JobStatus", "FIELDS"]

#: the request fields the page documents, in the page's order
FIELDS = (
    "prompt",
    "negative_prompt",
    "num_inference_steps",
    "samples",
    "guidance_scale",
    "height",
    "width",
    "webhook",
    "direct_link",
    "batch_id",
    "file_prefix",
    "queued_image_urls",
)


@dataclass(frozen=True)
class Limits:
    """Numeric and length bounds of the request fields (defaults: docs/wire.md)."""

    samples: tuple[int, int] = (1, 2)
    guidance_scale: tuple[float, float] = (0.0, 20.0)
    num_inference_steps: tuple[int, int] = (1, 50)
    width: tuple[int, int] = (256, 1536)
    height: tuple[int, int] = (256, 1536)
    width_multiple_of: int = 8
    height_multiple_of: int = 8
    prompt_max_chars: int = 10000
    negative_prompt_max_chars: int = 10000
    webhook_max_chars: int = 2048
    batch_id_max_chars: int = 128
    file_prefix_max_chars: int = 64
    file_prefix_pattern: str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
    #: http(s), a host, no user-info, no whitespace (the mock's published schema)
    # The mock's patterns, whitespace spelled out as ECMA-262 (and so /openapi.json) means \s.
    prompt_pattern: str = r"[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
    webhook_pattern: str = (r"^[Hh][Tt][Tt][Pp][Ss]?://[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
                            r"\u205f\u3000\ufeff/?#]+([/?#][^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
                            r"\u205f\u3000\ufeff]*)?$")

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> "Limits":
        """Limits from a mock profile (its ``limits`` section, or the profile itself)."""
        lim = profile.get("limits", profile)
        base = cls()

        def pair(name: str) -> Any:
            entry = lim.get(name)
            if not isinstance(entry, Mapping):
                return getattr(base, name)
            lo, hi = getattr(base, name)
            return (entry.get("min", lo), entry.get("max", hi))

        def multiple(name: str) -> int:
            entry = lim.get(name)
            default = getattr(base, f"{name}_multiple_of")
            return entry.get("multiple_of", default) if isinstance(entry, Mapping) else default

        return cls(
            samples=pair("samples"),
            guidance_scale=pair("guidance_scale"),
            num_inference_steps=pair("num_inference_steps"),
            width=pair("width"),
            height=pair("height"),
            width_multiple_of=multiple("width"),
            height_multiple_of=multiple("height"),
            **{
                name: lim.get(name, getattr(base, name))
                for name in (
                    "prompt_max_chars",
                    "negative_prompt_max_chars",
                    "webhook_max_chars",
                    "batch_id_max_chars",
                    "file_prefix_max_chars",
                    "file_prefix_pattern",
                    "webhook_pattern",
                )
            },
        )


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class GenerationRequest:
    """One ``POST /sd3_5/v1`` body, with the page's field names.

    The five required fields get defaults from the page's own example (steps 4, one sample,
    guidance 0.0, empty negative prompt) so ``GenerationRequest("a cat")`` is a complete request;
    they are always sent, because the API requires them. width/height default to 1024 as
    documented. Optional fields left as None are not sent; a required field set to None is not
    sent either (the check refuses that; with ``validate=False`` it tests the server's
    "required" error). ``extra`` is merged into the body last, unchecked (unknown fields, or
    deliberately wrong values).
    """

    prompt: str
    negative_prompt: str = ""
    num_inference_steps: int = 4
    samples: int = 1
    guidance_scale: float = 0.0
    width: int = 1024
    height: int = 1024
    webhook: str | None = None
    direct_link: bool | None = None
    batch_id: str | None = None
    file_prefix: str | None = None
    queued_image_urls: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_payload(self) -> dict[str, Any]:
        """The JSON body: every field that is not None, then ``extra``."""
        body = {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}
        body.update(self.extra)
        return body

    def replace(self, **changes: Any) -> "GenerationRequest":
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def problems(self, limits: Limits = DEFAULT_LIMITS) -> list[dict[str, str]]:
        """Every violation, as ``{"field", "rule", "message"}`` like the server's ``errors``."""
        return _check(self, limits)

    def validate(self, limits: Limits = DEFAULT_LIMITS) -> "GenerationRequest":
        """Raise InvalidRequestError (``client_side=True``) naming every bad field, else self."""
        problems = self.problems(limits)
        if problems:
            text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidRequestError(
                text,
                body={"status": "FAILURE", "error": text, "errors": problems},
                errors=problems,
                client_side=True,
            )
        return self


# --- the check ---------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(req: GenerationRequest, lim: Limits) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def bad(name: str, rule: str, message: str) -> None:
        out.append({"field": name, "rule": rule, "message": message})

    def string(name: str, value: Any, max_chars: int, *, required: bool, non_blank: bool,
               pattern: str | None = None, pattern_message: str = "") -> None:
        if value is None:
            if required:
                bad(name, "required", "is required")
        elif not isinstance(value, str):
            bad(name, "type", "must be a string")
        elif non_blank and not value:
            bad(name, "minLength", "must not be empty")
        elif non_blank and not re.search(lim.prompt_pattern, value):
            bad(name, "pattern", "must contain a non-whitespace character")
        elif len(value) > max_chars:
            bad(name, "maxLength", f"must be at most {max_chars} characters")
        elif pattern is not None and not re.fullmatch(pattern, value):
            bad(name, "pattern", pattern_message)

    def integer(name: str, value: Any, bounds: tuple[int, int], multiple_of: int = 1,
                required: bool = True) -> None:
        lo, hi = bounds
        if value is None:
            if required:
                bad(name, "required", "is required")
        elif not _is_int(value):
            bad(name, "type", "must be an integer")
        elif value < lo:
            bad(name, "minimum", f"must be at least {lo}")
        elif value > hi:
            bad(name, "maximum", f"must be at most {hi}")
        elif multiple_of > 1 and value % multiple_of:
            bad(name, "multipleOf", f"must be a multiple of {multiple_of}")

    def boolean(name: str, value: Any) -> None:
        if value is not None and not isinstance(value, bool):
            bad(name, "type", "must be a boolean")

    string("prompt", req.prompt, lim.prompt_max_chars, required=True, non_blank=True)
    string("negative_prompt", req.negative_prompt, lim.negative_prompt_max_chars,
           required=True, non_blank=False)
    integer("num_inference_steps", req.num_inference_steps, lim.num_inference_steps)
    integer("samples", req.samples, lim.samples)

    g = req.guidance_scale
    g_lo, g_hi = lim.guidance_scale
    if g is None:
        bad("guidance_scale", "required", "is required")
    elif not _is_number(g):
        bad("guidance_scale", "type", "must be a number")
    elif isinstance(g, float) and not math.isfinite(g):
        bad("guidance_scale", "type", "must be a finite number")
    elif g < g_lo:
        bad("guidance_scale", "minimum", f"must be at least {g_lo:g}")
    elif g > g_hi:
        bad("guidance_scale", "maximum", f"must be at most {g_hi:g}")

    integer("height", req.height, lim.height, lim.height_multiple_of, required=False)
    integer("width", req.width, lim.width, lim.width_multiple_of, required=False)

    string("webhook", req.webhook, lim.webhook_max_chars, required=False, non_blank=False,
           pattern=lim.webhook_pattern, pattern_message="must be an http:// or https:// URL with a host")

    boolean("direct_link", req.direct_link)
    string("batch_id", req.batch_id, lim.batch_id_max_chars, required=False, non_blank=False)

    string("file_prefix", req.file_prefix, lim.file_prefix_max_chars, required=False, non_blank=False,
           pattern=lim.file_prefix_pattern, pattern_message=f"must match {lim.file_prefix_pattern}")

    boolean("queued_image_urls", req.queued_image_urls)
    return out


# --- the job status ----------------------------------------------------------------------------

class JobState(str, enum.Enum):
    """The three documented job states."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class JobStatus:
    """One PENDING / SUCCESS / FAILURE answer, checked against the documented shape.

    ``raw`` keeps the whole decoded body (fields the page does not document included).
    """

    status: JobState
    id: str | None = None
    download_urls: tuple[str, ...] = ()
    error: str | None = None
    batch_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        """SUCCESS and FAILURE never change again."""
        return self.status is not JobState.PENDING

    @property
    def is_success(self) -> bool:
        return self.status is JobState.SUCCESS

    @property
    def is_failure(self) -> bool:
        return self.status is JobState.FAILURE

    @property
    def is_pending(self) -> bool:
        return self.status is JobState.PENDING

    @classmethod
    def from_body(cls, body: Any, *, http_status: int | None = None,
                  job_id: str | None = None) -> "JobStatus":
        """Parse a decoded 2xx body, or raise UnexpectedResponseError saying what is wrong.

        ``job_id`` is the id the caller asked about; it fills a missing ``id`` (a status answer
        need not repeat it) and a different ``id`` is refused.
        """

        def unexpected(why: str) -> UnexpectedResponseError:
            return UnexpectedResponseError(why, status_code=http_status, body=body, job_id=job_id)

        if not isinstance(body, Mapping):
            raise unexpected(f"expected a JSON object, got {type(body).__name__}")
        raw_state = body.get("status")
        if not isinstance(raw_state, str):
            raise unexpected("the body has no 'status' string")
        try:
            state = JobState(raw_state.strip().upper())
        except ValueError:
            raise unexpected(f"unknown status {raw_state!r}") from None

        job = body.get("id", None)
        if job is not None and (isinstance(job, bool) or not isinstance(job, (str, int))):
            raise unexpected(f"'id' must be a string, got {type(job).__name__}")
        job = str(job) if job is not None else None
        if job is not None and job_id is not None and job != job_id:
            raise unexpected(f"asked for job {job_id!r}, the answer is about {job!r}")
        job = job if job is not None else job_id

        urls = body.get("download_urls")
        if urls is not None and not (
            isinstance(urls, list) and all(isinstance(u, str) and u for u in urls)
        ):
            raise unexpected("'download_urls' must be a list of non-empty strings")
        urls_t = tuple(urls or ())

        error = body.get("error")
        if error is not None and not isinstance(error, str):
            error = str(error)
        batch = body.get("batch_id")
        batch = batch if isinstance(batch, str) else None

        if state is JobState.PENDING and job is None:
            raise unexpected("PENDING without an 'id': the job cannot be polled")
        if state is JobState.SUCCESS and not urls_t:
            raise unexpected("SUCCESS without 'download_urls'")
        if state is JobState.FAILURE and not error:
            error = "(the provider gave no error text)"
        return cls(status=state, id=job, download_urls=urls_t, error=error, batch_id=batch,
                   raw=dict(body))
