"""Every error the client raises. No ``requests`` exception escapes the client.

    ImagePipelineError                  base; ``.job_id`` is set when a job id is known
    ├── TransportError                  no usable HTTP answer
    │   ├── ConnectError                the request surely never reached the server
    │   │   └── ConnectTimeoutError     (also a TimeoutError) timed out while connecting
    │   ├── TimeoutError                no answer in time; the server may have acted on the request
    │   └── ConnectionLostError         the connection broke after the request may have been sent
    ├── APIError                        the server answered with an error HTTP status
    │   ├── AuthenticationError         401, 403: missing, unknown or refused API key
    │   ├── InvalidRequestError         400, 413, 422 (or the client's own check): ``.fields``
    │   ├── NotFoundError               404: unknown job id (or a job of another key)
    │   │   └── ImageUnavailableError   a download URL answered 403, 404 or 410: not ready, or expired
    │   ├── CreditsExhaustedError       402 (or a 403/429 whose text says so): the key has no credits left
    │   ├── RateLimitedError            429: ``.retry_after`` seconds, or None
    │   └── ServerError                 5xx
    ├── UnexpectedResponseError         a 2xx answer the client cannot use: malformed JSON,
    │                                   unknown status, SUCCESS without download_urls, ...
    ├── JobFailedError                  the job ended in FAILURE: ``.job_id``, ``.error``
    └── WaitTimeoutError                wait() gave up: ``.last_status``

The split of TransportError is what the retry rule needs (see ``client.api``): a submit POST may
be repeated after a ConnectError only, never after a TimeoutError or a ConnectionLostError,
because the job might already exist and would be billed twice.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ImagePipelineError",
    "TransportError",
    "ConnectError",
    "ConnectTimeoutError",
    "TimeoutError",
    "ConnectionLostError",
    "APIError",
    "AuthenticationError",
    "InvalidRequestError",
    "NotFoundError",
    "ImageUnavailableError",
    "CreditsExhaustedError",
    "RateLimitedError",
    "ServerError",
    "UnexpectedResponseError",
    "JobFailedError",
    "WaitTimeoutError",
    "error_for_status",
]


class ImagePipelineError(Exception):
    """Base of every client error; catch this to catch them all."""

    def __init__(self, message: str, *, job_id: str | None = None, status_code: int | None = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        #: the job this error concerns, when known (so a caller can resume with ``wait``)
        self.job_id = job_id
        #: for errors built from an HTTP answer: its status, and its decoded JSON body (else raw text)
        self.status_code = status_code
        self.body = body

    def __str__(self) -> str:
        return self.message


# --- transport --------------------------------------------------------------------------------

class TransportError(ImagePipelineError):
    """No usable HTTP answer arrived."""


class ConnectError(TransportError):
    """The connection could not be made (refused, DNS, proxy): the request was never sent."""


class TimeoutError(TransportError):  # noqa: A001 - deliberately mirrors httpx's naming
    """No answer in time. Not a subclass of the builtin (that one is an OSError)."""


class ConnectTimeoutError(ConnectError, TimeoutError):
    """Timed out while connecting: a timeout, but the request was never sent."""


class ConnectionLostError(TransportError):
    """The connection broke after the request may have reached the server."""


# --- API errors (the server answered with an error status) ------------------------------------

class APIError(ImagePipelineError):
    """An error HTTP status from the server, with its parsed body (or raw text)."""

    def __str__(self) -> str:
        if self.status_code is None:
            return self.message
        return f"HTTP {self.status_code}: {self.message}"


class AuthenticationError(APIError):
    """401/403: the API key is missing, unknown or refused."""


_FIELD_IN_TEXT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-\[\]]*)\s*:")


class InvalidRequestError(APIError):
    """The request was refused as invalid, by the server (400/413/422) or by the client's check.

    ``.fields`` names the offending fields, taken from the FAILURE body's ``errors[].field``, or
    failing that from its ``error`` text of the form ``"field: rule; field: rule"``.
    ``.client_side`` is True when the client refused it before sending anything.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        errors: list[dict[str, Any]] | None = None,
        client_side: bool = False,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, job_id=job_id)
        self.client_side = client_side
        self.errors: list[dict[str, Any]] = list(errors) if errors is not None else _errors_from_body(body)
        self.fields: tuple[str, ...] = _unique(
            str(e["field"]) for e in self.errors if isinstance(e, dict) and e.get("field") is not None
        )
        if not self.fields and isinstance(body, dict):
            for key in _TEXT_KEYS:   # the rejection's text, wherever the server puts it
                if isinstance(body.get(key), str):
                    self.fields = fields_from_error_text(body[key])
                    if self.fields:
                        break


#: where an error body may carry its text: the page's ``error``, or the common ``message``, ``detail``
_TEXT_KEYS = ("error", "message", "detail")


def _errors_from_body(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return [e for e in body["errors"] if isinstance(e, dict)]
    if isinstance(body, dict) and isinstance(body.get("detail"), list):   # FastAPI's 422: loc and msg
        return [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                 "rule": str(e.get("type", "invalid")), "message": str(e.get("msg", ""))}
                for e in body["detail"] if isinstance(e, dict) and isinstance(e.get("loc"), list)]
    return []


def _unique(items: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def fields_from_error_text(text: str) -> tuple[str, ...]:
    """Field names from ``"field: rule; field: rule"`` (segments without a ``name:`` are skipped)."""
    found = []
    for segment in text.split(";"):
        match = _FIELD_IN_TEXT.match(segment)
        if match:
            found.append(match.group(1))
    return _unique(found)


class NotFoundError(APIError):
    """404: the job id is unknown to this key (or a download URL is not ready or expired)."""


class ImageUnavailableError(NotFoundError):
    """A download URL answered 403, 404 or 410: the image is not ready yet, or its URL has expired
    (signed storage URLs often answer 403 once expired; no API key is involved in a download)."""


class CreditsExhaustedError(APIError):
    """402 (or a 403/429 whose text speaks of credits): the key has no credits left. Not retried;
    no job was created."""


class RateLimitedError(APIError):
    """429: slow down. ``.retry_after`` is the server's Retry-After in seconds, or None."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed. Whether a job was created is unknown for a POST."""


# --- answers the client cannot use, and job outcomes ------------------------------------------

class UnexpectedResponseError(ImagePipelineError):
    """A 2xx answer that breaks the contract: not JSON, unknown status, missing fields."""


class JobFailedError(ImagePipelineError):
    """The job reached FAILURE. ``.error`` is the provider's text; ``.status`` the JobStatus."""

    def __init__(self, job_id: str | None, error: str, status: Any = None) -> None:
        label = job_id if job_id is not None else "(no id)"
        super().__init__(f"job {label} failed: {error}", job_id=job_id)
        self.error = error
        self.status = status


class WaitTimeoutError(ImagePipelineError):
    """wait() reached its deadline; the job may still finish. ``.last_status`` is the last seen."""

    def __init__(self, job_id: str | None, timeout: float, last_status: Any = None) -> None:
        state = getattr(getattr(last_status, "status", None), "value", None) or "unknown"
        super().__init__(
            f"job {job_id} still {state} after {timeout:g} s", job_id=job_id
        )
        self.timeout = timeout
        self.last_status = last_status


def error_for_status(
    status_code: int,
    body: Any,
    *,
    retry_after: float | None = None,
    job_id: str | None = None,
) -> APIError:
    """The APIError subclass for an error HTTP status, its message taken from the body."""
    message = _message_from_body(body) or f"HTTP {status_code}"
    kwargs: dict[str, Any] = {"status_code": status_code, "body": body, "job_id": job_id}
    if status_code == 402 or (status_code in (403, 429) and "credit" in message.lower()):
        return CreditsExhaustedError(message, **kwargs)
    if status_code in (401, 403):
        return AuthenticationError(message, **kwargs)
    if status_code in (400, 413, 422):
        return InvalidRequestError(message, **kwargs)
    if status_code == 404:
        return NotFoundError(message, **kwargs)
    if status_code == 429:
        return RateLimitedError(message, retry_after=retry_after, **kwargs)
    if 500 <= status_code <= 599:
        return ServerError(message, **kwargs)
    return APIError(message, **kwargs)


def _message_from_body(body: Any) -> str:
    if isinstance(body, dict):
        for key in _TEXT_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    if isinstance(body, str) and body.strip():
        text = " ".join(body.split())
        return text if len(text) <= 300 else text[:297] + "..."
    return ""
