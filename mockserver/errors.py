"""The mock's one error hierarchy.

Every error the core raises is a ``MockError`` carrying the violated rules (``FieldError``s) and a
``kind``; the HTTP layer alone turns it into a FAILURE body with the HTTP status the profile names for
that kind (``http_status[<kind>]``), so there is one place that decides what a client sees.

    MockError                      kind
    ├── InvalidRequest             invalid            (every violation listed)
    ├── Unauthorized               unauthorized
    ├── NoCredits                  no_credits         (the key's credit balance is spent)
    ├── RateLimited                rate_limited       (the key's rate limits: carries retry_after, seconds)
    ├── NotFound                   not_found          (unknown id, or a job of another key)
    ├── ImageNotReady              image_not_ready
    ├── ImageExpired               image_expired
    ├── UnsupportedMediaType       unsupported_media_type (a submit's Content-Type is not JSON, row 32)
    └── Conflict                   (control plane: the job is already terminal)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One violated rule: which field, which rule, and a sentence for people."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict:
        return {"field": self.field, "rule": self.rule, "message": self.message}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class MockError(Exception):
    kind = "internal"

    def __init__(self, errors: list[FieldError] | FieldError):
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "; ".join(str(e) for e in self.errors)


class InvalidRequest(MockError):
    kind = "invalid"


class Unauthorized(MockError):
    kind = "unauthorized"


class NoCredits(MockError):
    kind = "no_credits"


class RateLimited(MockError):
    """Over a key's rate limit (ledger row 30): answered with ``Retry-After: retry_after`` (whole seconds)."""

    kind = "rate_limited"

    def __init__(self, errors: list[FieldError] | FieldError, retry_after: int = 1):
        super().__init__(errors)
        self.retry_after = retry_after


class NotFound(MockError):
    kind = "not_found"


class _ImageNotServed(MockError):
    """A download URL whose job exists but whose image is not served: ``job_id`` names the job (for the journal)."""

    def __init__(self, errors: list[FieldError] | FieldError, job_id: str | None = None):
        super().__init__(errors)
        self.job_id = job_id


class ImageNotReady(_ImageNotServed):
    kind = "image_not_ready"


class ImageExpired(_ImageNotServed):
    kind = "image_expired"


class UnsupportedMediaType(MockError):
    kind = "unsupported_media_type"


class Conflict(MockError):
    kind = "conflict"
