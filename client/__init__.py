"""A small, correct client of the ImagePipeline Stable Diffusion 3.5 API (and of its offline twin).

    from sd35_twin.client import ImagePipelineClient
    with ImagePipelineClient() as api:           # $IMAGEPIPELINE_API_KEY, $IMAGEPIPELINE_BASE_URL
        done = api.generate(prompt="a waterfall", negative_prompt="blurry", samples=2)
        paths = api.download(done, "out/")

See ``client.errors`` for the exception tree and ``client.api`` for the retry rule.
"""

from .api import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    Backoff,
    ImagePipelineClient,
    RetryPolicy,
)
from .errors import (
    APIError,
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    ImagePipelineError,
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    ImageUnavailableError,
    CreditsExhaustedError,
    RateLimitedError,
    ServerError,
    TimeoutError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from .models import GenerationRequest, JobState, JobStatus

__version__ = "0.1.0"

# TimeoutError is importable by name but left out of __all__: a star-import must not shadow the
# builtin of the same name.
__all__ = [
    "ImagePipelineClient",
    "RetryPolicy",
    "Backoff",
    "DEFAULT_BASE_URL",
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "GenerationRequest",
    "JobState",
    "JobStatus",
    "ImagePipelineError",
    "TransportError",
    "ConnectError",
    "ConnectTimeoutError",
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
]
