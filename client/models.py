"""The typed request and the job status.

The request check only saves a call that could not succeed: the five required fields are present
and every documented field has its JSON type. Limits (ranges, multiples of 8, lengths, patterns,
URL rules) are left to the server: its 400 names every violated field and rule, and the client
raises it as InvalidRequestError. One copy of the rules, the server's, cannot drift from ours.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequestError, UnexpectedResponseError

__all__ = ["GenerationRequest", "JobState", "JobStatus", "FIELDS"]

#: the request fields the page documents, in the page's order, with their JSON types
FIELD_TYPES = {
    "prompt": "string",
    "negative_prompt": "string",
    "num_inference_steps": "integer",
    "samples": "integer",
    "guidance_scale": "number",
    "height": "integer",
    "width": "integer",
    "webhook": "string",
    "direct_link": "boolean",
    "batch_id": "string",
    "file_prefix": "string",
    "queued_image_urls": "boolean",
}
FIELDS = tuple(FIELD_TYPES)
REQUIRED = ("prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale")

# the server's own words, so a refusal reads the same whichever side made it
_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a finite number", "boolean": "a boolean"}


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

    def problems(self) -> list[dict[str, str]]:
        """Missing required fields and wrong JSON types, as ``{"field", "rule", "message"}`` like
        the server's ``errors``."""
        out = []
        for name, want in FIELD_TYPES.items():
            value = getattr(self, name)
            if value is None:
                if name in REQUIRED:
                    out.append({"field": name, "rule": "required", "message": "is required"})
            elif not _has_json_type(value, want):
                out.append({"field": name, "rule": "type", "message": f"must be {_TYPE_WORDS[want]}"})
        return out

    def validate(self) -> "GenerationRequest":
        """Raise InvalidRequestError (``client_side=True``) naming every bad field, else self."""
        problems = self.problems()
        if problems:
            text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidRequestError(
                text,
                body={"status": "FAILURE", "error": text, "errors": problems},
                errors=problems,
                client_side=True,
            )
        return self


def _has_json_type(value: Any, want: str) -> bool:
    """bool is not a number (Python says it is), a float is not an integer, NaN and infinities
    are not JSON at all."""
    if want == "boolean":
        return isinstance(value, bool)
    if want == "string":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if want == "integer":
        return isinstance(value, int)
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


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

        # the page's "error"; "message" or "detail" if the provider names it otherwise
        error = next((body[k] for k in ("error", "message", "detail") if body.get(k) not in (None, "")), None)
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
