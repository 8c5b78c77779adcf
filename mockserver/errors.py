"""The mock's one error hierarchy.

Every error the core raises is a ``MockError``; the HTTP layer turns each into a FAILURE body with
the HTTP status named by the profile (``http_status[<kind>]``), so there is one place that decides
what a client sees.

    MockError                      kind
    ├── InvalidRequest             invalid            (every violation listed)
    │   └── BodyTooLarge           body_too_large
    ├── Unauthorized               unauthorized
    ├── NotFound                   not_found          (unknown id, or a job of another key)
    ├── ImageNotReady              image_not_ready
    ├── ImageExpired               image_expired
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
    default_status = 500

    def __init__(self, errors: list[FieldError] | FieldError):
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__(self.message)

    def __reduce__(self):
        """Pickle by field errors, not by message: errors cross from the shared state to the workers."""
        return self.__class__, (self.errors,)

    @property
    def message(self) -> str:
        return "; ".join(str(e) for e in self.errors)

    def body(self) -> dict:
        return {
            "status": "FAILURE",
            "error": self.message,
            "errors": [e.as_dict() for e in self.errors],
        }


class InvalidRequest(MockError):
    kind = "invalid"
    default_status = 400


class BodyTooLarge(InvalidRequest):
    kind = "body_too_large"
    default_status = 413


class Unauthorized(MockError):
    kind = "unauthorized"
    default_status = 401


class NotFound(MockError):
    kind = "not_found"
    default_status = 404


class ImageNotReady(MockError):
    kind = "image_not_ready"
    default_status = 404


class ImageExpired(MockError):
    kind = "image_expired"
    default_status = 404


class Conflict(MockError):
    kind = "conflict"
    default_status = 409
