"""The ImagePipeline SD3.5 client: submit, status, wait, generate, download.

Retry rule (never bill twice)
-----------------------------
A status or download GET changes nothing on the server, so it is retried on anything transient:
a connection that could not be made, a timeout, a connection lost mid-answer, HTTP 429 (sleeping
the ``Retry-After`` it gives), any 5xx, and a 2xx body that is not JSON. A submit POST creates a
billable job, so it is retried only when the job surely does not exist: the connection was never
made (refused, DNS failure, connect timeout: ``ConnectError``), or the server answered 429 or 503,
which say "not done, try again". It is never retried after a read timeout, a dropped connection,
a 500/502/504 or an unreadable 2xx body: the server may have created the job, and a repeat would
create (and bill) a second one; the error is raised instead. All retries are bounded
(``RetryPolicy``), back off exponentially with jitter up to a cap, and give up rather than sleep
a ``Retry-After`` longer than ``RetryPolicy.max_retry_after`` or past a ``wait`` deadline.

Redirects are not followed for the API calls: ``requests`` would turn a redirected POST into a GET
and would forward the ``API-Key`` header to whatever host the redirect names.
"""

from __future__ import annotations

import email.utils
import json
import mimetypes
import os
import random as _random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions

from . import errors
from .errors import (
    ConnectError,
    ConnectTimeoutError,
    ConnectionLostError,
    ImagePipelineError,
    InvalidRequestError,
    JobFailedError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from .models import GenerationRequest, JobStatus

__all__ = [
    "ImagePipelineClient",
    "RetryPolicy",
    "Backoff",
    "DEFAULT_BASE_URL",
    "API_KEY_ENV",
    "BASE_URL_ENV",
]

DEFAULT_BASE_URL = "https://api.imagepipeline.io"
API_KEY_ENV = "IMAGEPIPELINE_API_KEY"
BASE_URL_ENV = "IMAGEPIPELINE_BASE_URL"
SUBMIT_PATH = "/sd3_5/v1"
STATUS_PATH = "/sd3_5/v1/status/"
USER_AGENT = "sd35-twin-client/0.1"

_IMAGE_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/avif": ".avif",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
}


@dataclass(frozen=True)
class Backoff:
    """Exponential delays with jitter: ``min(maximum, initial * factor**n)``, then shortened by
    up to ``jitter`` of itself (so many clients do not poll in lock-step)."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 8.0
    jitter: float = 0.5

    def delay(self, attempt: int, rand: float) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return max(0.0, base * (1.0 - self.jitter * rand))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry (see the module docstring for *when*)."""

    #: total tries of a status or download GET
    status_attempts: int = 5
    #: total tries of a submit POST (only ever repeated when the job surely does not exist)
    submit_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    #: a Retry-After longer than this is raised as RateLimitedError instead of slept
    max_retry_after: float = 60.0


#: the polling schedule of wait(): 1 s, 1.5 s, 2.25 s, ... up to 10 s, each shortened by <= 30 %
DEFAULT_POLL = Backoff(initial=1.0, factor=1.5, maximum=10.0, jitter=0.3)


class ImagePipelineClient:
    """A client of ``POST /sd3_5/v1`` and ``GET /sd3_5/v1/status/{id}``.

    ``api_key`` falls back to $IMAGEPIPELINE_API_KEY and ``base_url`` to $IMAGEPIPELINE_BASE_URL
    (then the live API), so one program runs against the mock or the live API unchanged.
    ``session`` is the transport seam (any ``requests.Session``); ``sleep``, ``clock`` and
    ``random`` are injectable so tests of backoff and deadlines never sleep for real.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | tuple[float, float] = (10.0, 120.0),
        session: requests.Session | None = None,
        *,
        retry: RetryPolicy | None = None,
        poll: Backoff = DEFAULT_POLL,
        wait_timeout: float = 600.0,
        validate: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._api_key = key or None
        url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {url!r}")
        self.base_url = url.rstrip("/")
        self.timeout = timeout
        self._own_session = session is None
        self.session = session if session is not None else EnvironmentOnceSession()
        self.retry = retry if retry is not None else RetryPolicy()
        self.poll = poll
        self.wait_timeout = wait_timeout
        self.validate = validate
        self._sleep = sleep
        self._clock = clock
        self._random = random

    def __repr__(self) -> str:  # never shows the key
        return f"ImagePipelineClient(base_url={self.base_url!r}, key={'set' if self._api_key else 'none'})"

    # --- lifecycle of the client ---------------------------------------------------------------

    def close(self) -> None:
        """Close the session (and its sockets, at once) if this client created it."""
        if self._own_session:
            _close_connections(self.session)
            self.session.close()

    def __enter__(self) -> "ImagePipelineClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the API -------------------------------------------------------------------------------

    def build_request(self, request: GenerationRequest | None = None, /, **fields: Any) -> GenerationRequest:
        """A GenerationRequest from a request object and/or the page's field names."""
        if request is None:
            if "prompt" not in fields:
                raise TypeError("a request object or prompt=... is required")
            return GenerationRequest(**fields)
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"expected a GenerationRequest, got {type(request).__name__}")
        return request.replace(**fields) if fields else request

    def submit(
        self,
        request: GenerationRequest | None = None,
        /,
        *,
        validate: bool | None = None,
        **fields: Any,
    ) -> JobStatus:
        """Create a job; returns its first status (PENDING, or SUCCESS/FAILURE when already done).

        A missing required field or a wrong JSON type is refused with InvalidRequestError before
        anything is sent, unless ``validate=False`` (here or on the client); every limit is the
        server's to judge, and its 400 is raised as InvalidRequestError too.
        """
        req = self.build_request(request, **fields)
        if self.validate if validate is None else validate:
            req.validate()
        try:
            data = json.dumps(req.to_payload()).encode("utf-8")
        except (TypeError, ValueError) as exc:  # a set, an object, an int past Python's digit limit
            message = f"body: cannot be encoded as JSON ({exc})"
            raise InvalidRequestError(message, client_side=True, errors=[
                {"field": "body", "rule": "json", "message": message[6:]}]) from None
        body, code = self._json_call("submit", "POST", self.base_url + SUBMIT_PATH, data=data)
        return JobStatus.from_body(body, http_status=code)

    def status(self, job_id: str) -> JobStatus:
        """The job's current status (a FAILURE is returned, not raised)."""
        return self._status(job_id, None)

    def _status(self, job_id: str, deadline: float | None) -> JobStatus:
        url = self.base_url + STATUS_PATH + _quote_job_id(job_id)
        body, code = self._json_call("status", "GET", url, job_id=job_id, deadline=deadline)
        return JobStatus.from_body(body, http_status=code, job_id=job_id)

    def wait(
        self,
        job: str | JobStatus,
        timeout: float | None = None,
        on_update: Callable[[JobStatus], Any] | None = None,
    ) -> JobStatus:
        """Poll until the job is terminal; return the SUCCESS status.

        Polls at once, then on the ``poll`` backoff schedule, and once more at the deadline.
        Raises JobFailedError on FAILURE and WaitTimeoutError (with ``.last_status``) when
        ``timeout`` seconds (default ``wait_timeout``) pass first. ``on_update`` sees every status.
        """
        if isinstance(job, JobStatus):
            if job.is_terminal:
                return _success_or_raise(job)
            job_id = job.id
        else:
            job_id = job
        if not job_id:
            raise ValueError("wait() needs a job id")
        limit = self.wait_timeout if timeout is None else float(timeout)
        deadline = self._clock() + limit
        polls = 0
        while True:
            current = self._status(job_id, deadline)
            polls += 1
            if on_update is not None:
                on_update(current)
            if current.is_terminal:
                return _success_or_raise(current)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise WaitTimeoutError(job_id, limit, current)
            self._sleep(min(self.poll.delay(polls - 1, self._random()), remaining))

    def generate(
        self,
        request: GenerationRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        on_update: Callable[[JobStatus], Any] | None = None,
        validate: bool | None = None,
        **fields: Any,
    ) -> JobStatus:
        """submit + wait: the SUCCESS status with its ``id`` and ``download_urls``.

        Any error raised after the job exists carries ``.job_id``, so it can be resumed with
        ``wait(err.job_id)`` instead of submitting (and paying) again.
        """
        first = self.submit(request, validate=validate, **fields)
        if on_update is not None:
            on_update(first)
        if first.is_terminal:
            return _success_or_raise(first)
        try:
            return self.wait(first.id, timeout, on_update)
        except ImagePipelineError as exc:
            if exc.job_id is None:
                exc.job_id = first.id
            raise

    def download(self, result: JobStatus | Iterable[str], dest_dir: str | os.PathLike[str]) -> list[Path]:
        """Save every image of ``result`` into ``dest_dir``; returns the paths, in URL order.

        The extension is what the image really is: its first bytes (PNG -> ``.png``, JPEG -> ``.jpg``),
        else the answer's Content-Type, never the URL's; the name from the URL's last segment (or
        ``<id>-<n>``). A URL that answers 403, 404 or 410 raises ImageUnavailableError.
        An image is never saved incomplete: an answer cut off (short of its Content-Length, or reset) is
        retried like a dropped connection, then raises ConnectionLostError; a PNG or JPEG whose bytes end
        before the image does (a Content-Length below the body) is retried, then raises
        UnexpectedResponseError. Nothing is written until the whole image is in hand.
        The API key is not sent: the URLs need none and may point at another host.
        """
        if isinstance(result, JobStatus):
            urls, job_id = list(result.download_urls), result.id
        else:
            urls, job_id = list(result), None
        if not urls:
            raise ValueError("nothing to download: no download_urls")
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        used: set[str] = set()
        for n, url in enumerate(urls, 1):
            resp = self._download_one(url, job_id)
            ext = _extension(resp, url, job_id)
            stem = _stem_from_url(url)
            if not stem or (stem + ext).lower() in used:
                stem = f"{_safe(job_id or '') or 'image'}-{n}"
                while (stem + ext).lower() in used:
                    stem += "_"
            used.add((stem + ext).lower())
            path = dest / (stem + ext)
            part = dest / f".{stem}{ext}.part"
            try:
                part.write_bytes(resp.content)
                os.replace(part, path)
            except OSError:
                part.unlink(missing_ok=True)   # a full disk keeps no half image (the room a retry needs)
                raise
            paths.append(path)
        return paths

    def _download_one(self, url: str, job_id: str | None) -> requests.Response:
        """One image, whole: an image that ends early is retried (within the status budget), then raised."""
        attempt = 0
        while True:
            attempt += 1
            resp, _ = self._call("download", "GET", url, job_id=job_id, send_key=False)
            problem = _incomplete_image(resp.content)
            if problem is None:
                return resp
            err = UnexpectedResponseError(
                f"download {_redact(url)}: {problem} ({len(resp.content)} bytes); not saved",
                status_code=resp.status_code, job_id=job_id)
            if attempt >= self.retry.status_attempts:
                raise err
            self._sleep(self.retry.backoff.delay(attempt - 1, self._random()))

    # --- transport and retries ----------------------------------------------------------------

    def _headers(self, send_key: bool, has_body: bool) -> dict[str, str]:
        # the API calls carry the key and want JSON; downloads (send_key=False) want the image
        headers = {"Accept": "application/json" if send_key else "image/*, */*;q=0.5",
                   "User-Agent": USER_AGENT}
        if has_body:
            headers["Content-Type"] = "application/json"
        if send_key and self._api_key:
            headers["API-Key"] = self._api_key
        return headers

    def _json_call(self, kind: str, method: str, url: str, *, data: bytes | None = None,
                   job_id: str | None = None, deadline: float | None = None) -> tuple[Any, int]:
        resp, body = self._call(kind, method, url, data=data, job_id=job_id, deadline=deadline,
                                parse_json=True)
        return body, resp.status_code

    def _timeout_until(self, deadline: float | None) -> float | tuple[float, float]:
        """The request timeout, shortened so one slow answer cannot overrun a wait deadline."""
        if deadline is None:
            return self.timeout
        left = max(0.5, deadline - self._clock())
        pair = self.timeout if isinstance(self.timeout, tuple) else (self.timeout, self.timeout)
        return tuple(left if t is None else min(t, left) for t in pair)  # type: ignore[return-value]

    def _call(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        job_id: str | None = None,
        deadline: float | None = None,
        send_key: bool = True,
        parse_json: bool = False,
    ) -> tuple[requests.Response, Any]:
        """One logical call with the retry rule of the module docstring.

        Returns a 2xx answer and, with ``parse_json``, its decoded body (else None).
        """
        is_submit = kind == "submit"
        attempts = self.retry.submit_attempts if is_submit else self.retry.status_attempts
        headers = self._headers(send_key, data is not None)
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                resp = self.session.request(
                    method, url, data=data, headers=headers, timeout=self._timeout_until(deadline),
                    allow_redirects=not send_key,
                )
            except requests.RequestException as exc:
                err: ImagePipelineError = transport_error(exc, url)
                err.__cause__ = exc  # kept for debugging; never raised itself
                err.job_id = job_id
                retryable = isinstance(err, ConnectError) if is_submit else (
                    type(err) is not TransportError
                )
            else:
                # The body is already read (no streaming): hand the connection back to the pool
                # now, or an error held in a traceback keeps the socket open until the next GC.
                resp.close()
                if 200 <= resp.status_code < 300:
                    if not parse_json:
                        return resp, None
                    try:
                        return resp, json.loads(resp.content)
                    except (ValueError, RecursionError):
                        err = UnexpectedResponseError(
                            f"HTTP {resp.status_code} with a body that is not JSON: "
                            f"{_snippet(resp.text)!r}",
                            status_code=resp.status_code, body=resp.text, job_id=job_id,
                        )
                        retryable = not is_submit
                else:
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                    err = _api_error(resp, retry_after, job_id, download=kind == "download")
                    code = resp.status_code
                    retryable = code in (429, 503) if is_submit else (
                        code == 429 or 500 <= code <= 599
                    )
                    if isinstance(err, errors.CreditsExhaustedError):
                        retryable = False   # a 429 about credits: waiting does not top the key up
            if not retryable or attempt >= attempts:
                raise err
            if retry_after is not None:
                if retry_after > self.retry.max_retry_after:
                    raise err
                delay = retry_after
            else:
                delay = self.retry.backoff.delay(attempt - 1, self._random())
            if deadline is not None and self._clock() + delay > deadline:
                raise err
            self._sleep(delay)


# --- helpers -------------------------------------------------------------------------------------

class EnvironmentOnceSession(requests.Session):
    """A ``requests.Session`` that reads the environment's proxy and CA-bundle settings once per scheme and
    host, as httpx reads them once per client. requests reads them on every call: it walks every environment
    variable twice (``getproxies`` and ``no_proxy``), a third of the client's own CPU per call (see
    ``bench/inprocess.py``). A variable set after the first call to a host is not seen by that session; the
    session's own ``proxies``, ``verify``, ``cert`` and ``trust_env`` are part of the key, so changing them
    is."""

    MAX_HOSTS = 32  # beyond this many (scheme, host, settings), compute each call as requests does

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict[str, Any]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # noqa: D102 (requests' hook)
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, self.trust_env, tuple(sorted(self.proxies.items())), self.stream,
               str(self.verify), str(self.cert))
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, None, None, None)
            if len(self._environment) < self.MAX_HOSTS:
                self._environment[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}


def _close_connections(session: requests.Session) -> None:
    """Close pooled sockets now. Session.close() only forgets the pools (urllib3 2 closes them on
    garbage collection), and a pool referenced from an error's traceback lives until the next GC."""
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        pools = getattr(manager, "pools", None)
        if pools is None:
            continue
        try:
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
        except Exception:  # best effort: closing must never fail
            pass


def _success_or_raise(status: JobStatus) -> JobStatus:
    if status.is_failure:
        raise JobFailedError(status.id, status.error or "", status)
    return status


def _quote_job_id(job_id: str) -> str:
    """The id as one path segment. "", "." and ".." are refused before sending: HTTP libraries
    resolve dot-segments, so the request would silently go to another endpoint."""
    if not isinstance(job_id, str):
        raise TypeError(f"job id must be a string, got {type(job_id).__name__}")
    if job_id.strip(".") == "":
        rule = "must not be empty" if not job_id else "must not be a dot-segment"
        raise InvalidRequestError(f"id: {rule}", client_side=True,
                                  errors=[{"field": "id", "rule": "format", "message": rule}])
    try:
        return quote(job_id, safe="")
    except UnicodeEncodeError:  # a lone surrogate cannot be sent at all
        raise InvalidRequestError("id: must be encodable as UTF-8", client_side=True, errors=[
            {"field": "id", "rule": "format", "message": "must be encodable as UTF-8"}]) from None


def _never_sent(exc: BaseException) -> bool:
    """True if the chain of causes shows the connection was never established."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError)):
            return True
        if isinstance(item, urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(item, urllib3.exceptions.NameResolutionError):
            return True
        if isinstance(item, urllib3.exceptions.ProtocolError):
            return False
        stack.extend(a for a in item.args if isinstance(a, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        for nxt in (item.__cause__, item.__context__):
            if nxt is not None:
                stack.append(nxt)
    return False


def transport_error(exc: requests.RequestException, url: str = "") -> TransportError:
    """Map a ``requests`` exception onto the client's tree, deciding whether it was sent."""
    where = f" ({_redact(url)})" if url else ""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ConnectTimeoutError(f"timed out connecting{where}: {detail}")
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(f"TLS failure{where}: {detail}")
    if isinstance(exc, requests.exceptions.Timeout):
        return errors.TimeoutError(f"no answer in time{where}: {detail}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _never_sent(exc):
            return ConnectError(f"could not connect{where}: {detail}")
        return ConnectionLostError(f"connection lost{where}: {detail}")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return ConnectionLostError(f"answer cut off{where}: {detail}")
    return TransportError(f"request failed{where}: {detail}")


def _api_error(resp: requests.Response, retry_after: float | None, job_id: str | None,
               download: bool = False) -> errors.APIError:
    try:
        body: Any = json.loads(resp.content)
    except (ValueError, RecursionError):
        body = resp.text
    if download and resp.status_code in (403, 404, 410):
        # a download sends no key: 403 is a signed URL that expired, not an authentication failure
        return errors.ImageUnavailableError(
            f"download {_redact(resp.url or '')} answered {resp.status_code}: "
            f"the image is not ready yet, or its URL has expired",
            status_code=resp.status_code, body=body, job_id=job_id)
    if 300 <= resp.status_code < 400:
        where = resp.headers.get("Location", "?")
        return errors.APIError(
            f"redirected to {where}; not followed (set base_url to the final address)",
            status_code=resp.status_code, body=body, job_id=job_id,
        )
    return errors.error_for_status(resp.status_code, body, retry_after=retry_after, job_id=job_id)


def _retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


#: an image's first bytes, which say what it is whatever the URL or the Content-Type claim
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"))


def _extension(resp: requests.Response, url: str, job_id: str | None) -> str:
    """The extension of what was really sent: the image's own first bytes, else its Content-Type."""
    head = resp.content[:16]
    for magic, ext in _MAGIC:
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype in _IMAGE_EXTENSIONS:
        return _IMAGE_EXTENSIONS[ctype]
    if ctype.startswith("image/"):
        return mimetypes.guess_extension(ctype) or "." + _safe(ctype[6:])[:10]
    raise UnexpectedResponseError(
        f"download {_redact(url)} answered {ctype or 'no content type'}, not an image",
        status_code=resp.status_code, body=_snippet(resp.text), job_id=job_id,
    )


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _incomplete_image(data: bytes) -> str | None:
    """Why ``data`` is a cut-off PNG or JPEG (its end marker missing), else None. Other formats are trusted
    to their Content-Length, which the transport already enforces."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and not data.endswith(_PNG_END):
        return "the PNG ends before its IEND chunk: the image is incomplete"
    if data.startswith(b"\xff\xd8\xff") and not data.rstrip(b"\x00\r\n").endswith(b"\xff\xd9"):
        return "the JPEG ends before its end-of-image marker: the image is incomplete"
    return None


def _stem_from_url(url: str) -> str:
    last = urlsplit(url).path.rsplit("/", 1)[-1]
    stem = last.rsplit(".", 1)[0] if "." in last else last
    return _safe(stem)[:120]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _snippet(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "..."
