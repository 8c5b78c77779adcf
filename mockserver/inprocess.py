"""The twin in-process, as moto's ``mock_aws``: no port, no server thread.

Inside ``mock_sd35`` every call of ``requests`` and ``httpx`` (sync and async) to the live API's base URL
(``https://api.imagepipeline.io`` unless others are given) and to the download URLs the twin hands out is
answered by the twin's own WSGI app (``create_app``: the same validation, lifecycle, rules, faults, journal
and control plane) in the calling thread. Calls to other hosts go out as usual, or, with
``block_network=True``, are refused with an error naming the URL (the twin's own webhook deliveries still go
out).

    with mock_sd35() as twin:               # or @mock_sd35, or the sd35_inprocess fixture
        twin.configure(lifecycle="polls", pending_polls=2)
        my_app.generate("a fox")            # its own requests/httpx calls to https://api.imagepipeline.io
        twin.assert_submits(1)

The seam is the libraries' own transport call, patched while a context is open (what ``responses`` and
``respx`` patch too): ``requests.adapters.HTTPAdapter.send``, ``httpx.HTTPTransport.handle_request`` and
``httpx.AsyncHTTPTransport.handle_async_request``. A matching request becomes a WSGI environ; the answer
becomes the library's own response object over a body reader, so what a broken socket does to a body (cut
short, reset, declared longer or shorter than sent, slow) reaches the app as the same exception class.
"""

from __future__ import annotations

import functools
import inspect
import io
import itertools
import sys
import threading
import time
from http.client import RemoteDisconnected
from urllib.parse import unquote_to_bytes, urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import HTTPResponse
from urllib3.exceptions import ProtocolError

from .config import TEST_SETTINGS, MockConfig, is_origin
from .http import create_app
from .http.faults import INPROCESS_KEY, DropConnection
from .http.guard import serving_at
from .testing import MockControl

try:  # httpx is optional: the twin answers it when the app under test has it
    import httpx
except ImportError:  # pragma: no cover - httpx is in the test extra
    httpx = None

__all__ = ["mock_sd35", "Sd35Mock", "InProcessTwin", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.imagepipeline.io"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a URL, lower case, the default port filled in: the key of a route."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:  # a port that is not a number: not ours
        port = -1
    return scheme, (parts.hostname or "").lower(), port


class InProcessTwin(MockControl):
    """One twin (app and backend) and its control plane, ``MockControl``'s whole API over an in-process
    ``requests.Session`` (so the control plane runs through the same app and guard as over HTTP).
    ``url`` is its first base URL."""

    def __init__(self, base_urls: list[str], config: MockConfig):
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.app = create_app(config)
        self.backend = self.app.extensions["sd35_backend"]
        scheme, host, port = _origin(self.base_urls[0])
        serving_at(self.app, host, port)  # the control plane accepts this Host; no webhook may target it
        session = requests.Session()
        session.trust_env = False
        adapter = _TwinAdapter(self)
        for url in self.base_urls:
            session.mount(url + "/", adapter)
        super().__init__(self.base_urls[0], session=session)

    def origins(self) -> set[tuple[str, str, int]]:
        """Where this twin answers: its base URLs and where its downloads live (``public_url``)."""
        urls = [*self.base_urls, *([self.backend.config.public_url] if self.backend.config.public_url else [])]
        return {_origin(u) for u in urls}

    # -- one request through the WSGI app ---------------------------------------------------------------

    def wsgi_answer(self, method: str, url: str, headers, body: bytes) -> "_Answer":
        """Run the app on one request; ``DropConnection`` if a fault drops the connection before any byte."""
        parts = urlsplit(url)
        scheme, host, port = _origin(url)
        environ = {
            "REQUEST_METHOD": method.upper(), "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(parts.path or "/").decode("latin-1"),
            "QUERY_STRING": parts.query, "SERVER_NAME": host, "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0",
            "wsgi.version": (1, 0), "wsgi.url_scheme": scheme, "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, INPROCESS_KEY: True, "CONTENT_LENGTH": str(len(body)) if body else "",
        }
        for name, value in headers:
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":  # the body's own length is set above
                key = "HTTP_" + key
                environ[key] = f"{environ[key]}, {value}" if key in environ else value  # repeated: joined, as WSGI
        environ.setdefault("HTTP_HOST", parts.netloc)
        started: list = []
        written: list[bytes] = []  # what the app gave the legacy write() callable (PEP 3333): sent first

        def start_response(status, response_headers, exc_info=None):
            started[:] = [status, response_headers]
            return written.append

        chunks = self.app(environ, start_response)
        status, response_headers = started
        code, _, reason = status.partition(" ")
        return _Answer(int(code), reason, response_headers, chunks, method.upper() == "HEAD", written)


class _Answer:
    """A WSGI answer read as a socket would deliver it: at most its Content-Length (what a client reads of an
    answer that declares less than it carries), ``cut_short`` when the body ended before that length, and
    ``ConnectionResetError`` when a fault resets the connection mid-body."""

    def __init__(self, status: int, reason: str, headers: list, chunks, head_only: bool, written: list):
        self.status, self.reason, self.headers = status, reason, headers
        self._chunks = chunks
        self._iterator = itertools.chain(written, chunks)
        declared = next((v for k, v in headers if k.lower() == "content-length"), None)
        self.declared = 0 if head_only else (int(declared) if declared is not None else None)
        self.received = 0
        self.closed = False

    def next_chunk(self) -> bytes:
        """The next bytes of the body; b"" at its end. ``ConnectionResetError`` on a reset."""
        if self.closed or (self.declared is not None and self.received >= self.declared):
            self.close()
            return b""
        try:
            chunk = b""
            while not chunk:
                chunk = next(self._iterator)
        except StopIteration:
            self.close()
            return b""
        except DropConnection:
            self.close()
            raise ConnectionResetError(104, "Connection reset by peer (sd35 twin fault)") from None
        if self.declared is not None:
            chunk = chunk[:self.declared - self.received]
        self.received += len(chunk)
        return chunk

    def read_all(self) -> tuple[bytes, bool]:
        """The whole body as a socket would deliver it, and whether the connection was reset on the way."""
        chunks = []
        try:
            while chunk := self.next_chunk():
                chunks.append(chunk)
        except ConnectionResetError:
            return b"".join(chunks), True
        return b"".join(chunks), False

    @property
    def cut_short(self) -> bool:
        return self.declared is not None and self.received < self.declared

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if hasattr(self._chunks, "close"):
                self._chunks.close()


# --- requests ---------------------------------------------------------------------------------------------

class _AnswerReader(io.RawIOBase):
    """An ``_Answer``'s body as the file object under urllib3's ``HTTPResponse``: urllib3 then raises its own
    errors (IncompleteRead, a reset as ProtocolError) and requests its own (ChunkedEncodingError), as on a
    socket. ``read``: bytes already read from it (``reset``: and then the connection was reset)."""

    def __init__(self, answer: _Answer, read: bytes | None = None, reset: bool = False):
        self.answer = answer
        self._pending = read or b""
        self._replay = read is not None
        self._reset = reset

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            if self._replay:  # the body was read already: its end, or its reset
                if self._reset:
                    self._reset = False
                    raise ConnectionResetError(104, "Connection reset by peer (sd35 twin fault)")
                return 0
            self._pending = self.answer.next_chunk()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self.answer.close()
        super().close()


def _read_timeout(timeout) -> float | None:
    if isinstance(timeout, tuple):
        return timeout[1]
    return getattr(timeout, "read_timeout", timeout) if not isinstance(timeout, (int, float)) else timeout


def _request_body(body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if hasattr(body, "read"):
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else data
    return b"".join(part.encode("utf-8") if isinstance(part, str) else part for part in body)


def answer_requests(twin: InProcessTwin, adapter: BaseAdapter, request: requests.PreparedRequest,
                    timeout=None, stream: bool = False) -> requests.Response:
    """One ``requests`` call answered by ``twin``: a ``requests.Response`` built by ``HTTPAdapter.build_response``
    over a urllib3 ``HTTPResponse``, as on the wire."""
    started = time.monotonic()
    try:
        answer = twin.wsgi_answer(request.method, request.url, request.headers.items(), _request_body(request.body))
    except DropConnection:
        error = ProtocolError("Connection aborted.",
                              RemoteDisconnected("Remote end closed connection without response"))
        raise requests.ConnectionError(error, request=request) from None
    limit = _read_timeout(timeout)
    if limit is not None and time.monotonic() - started > limit:
        answer.close()
        raise requests.ReadTimeout(f"sd35 twin: no answer within the read timeout ({limit} s)", request=request)
    read = reset = None
    if not stream:  # requests reads it all anyway: read it here once, and hand a whole body over as is
        read, reset = answer.read_all()
    # request_url: the path, as requests' own adapter gives urllib3 without a proxy (what ``raw.url`` says)
    raw = HTTPResponse(body=_AnswerReader(answer, read, reset), headers=answer.headers, status=answer.status,
                       reason=answer.reason, preload_content=False, decode_content=False,
                       request_method=request.method, request_url=request.path_url, enforce_content_length=True)
    builder = adapter if isinstance(adapter, HTTPAdapter) else _BUILDER
    response = builder.build_response(request, raw)
    if read is not None and not reset and not answer.cut_short and not _encoded(answer.headers):
        response._content, response._content_consumed = read, True  # nothing left for urllib3 to say
    return response


def _encoded(headers) -> bool:
    """A Content-Encoding to undo: left to urllib3, as on the wire."""
    return any(name.lower() == "content-encoding" for name, _ in headers)


_BUILDER = HTTPAdapter()  # only its build_response: the same Response an HTTP call gets


class _TwinAdapter(BaseAdapter):
    """A requests transport adapter answered by one twin: the control plane's session mounts it."""

    def __init__(self, twin: InProcessTwin):
        super().__init__()
        self.twin = twin

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        return answer_requests(self.twin, self, request, timeout, stream)

    def close(self) -> None:
        pass


# --- httpx ------------------------------------------------------------------------------------------------

if httpx is not None:
    class _HttpxStream(httpx.SyncByteStream, httpx.AsyncByteStream):
        """An ``_Answer``'s body for httpx: a reset is ``ReadError``, a body cut short ``RemoteProtocolError``
        (what httpcore raises on a socket)."""

        def __init__(self, answer: _Answer, request):
            self.answer, self.request = answer, request

        def __iter__(self):
            while True:
                try:
                    chunk = self.answer.next_chunk()
                except ConnectionResetError as exc:
                    raise httpx.ReadError(str(exc), request=self.request) from None
                if not chunk:
                    break
                yield chunk
            if self.answer.cut_short:
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body (received "
                    f"{self.answer.received} bytes, expected {self.answer.declared})", request=self.request)

        async def __aiter__(self):
            for chunk in self:
                yield chunk

        def close(self) -> None:
            self.answer.close()

        async def aclose(self) -> None:
            self.answer.close()


def answer_httpx(twin: InProcessTwin, request, body: bytes):
    """One httpx request answered by ``twin``, with httpx's exceptions for what a socket would do."""
    started = time.monotonic()
    try:
        answer = twin.wsgi_answer(request.method, str(request.url), request.headers.multi_items(), body)
    except DropConnection:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from None
    limit = (request.extensions.get("timeout") or {}).get("read")
    if limit is not None and time.monotonic() - started > limit:
        answer.close()
        raise httpx.ReadTimeout(f"sd35 twin: no answer within the read timeout ({limit} s)", request=request)
    return httpx.Response(answer.status, headers=answer.headers, stream=_HttpxStream(answer, request),
                          request=request, extensions={"http_version": b"HTTP/1.1",
                                                       "reason_phrase": answer.reason.encode("latin-1", "replace")})


# --- the patch: one per process, shared by every open context -------------------------------------------------

class _Interceptor:
    """The patched transport calls and where they route: ``(scheme, host, port)`` to a twin. Installed while
    at least one context is open; the outermost context's twin answers for every context nested in it."""

    def __init__(self):
        self.lock = threading.RLock()
        self.routes: dict[tuple[str, str, int], InProcessTwin] = {}
        self.fast_routes: dict[tuple[str, str], InProcessTwin] = {}  # (scheme, netloc as written): the usual case
        self.contexts: list[Sd35Mock] = []
        self.originals: dict = {}

    def twin_for(self, url: str) -> InProcessTwin | None:
        routes = self.routes
        if not routes:
            return None
        scheme, _, rest = url.partition("://")  # scheme://netloc/..., read without urlsplit: on every call
        netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        found = self.fast_routes.get((scheme.lower(), netloc.lower()))
        return found if found is not None else routes.get(_origin(url))

    def set_routes(self, routes: dict) -> None:
        """Replace the routes whole (readers in other threads never see them half done), with their netlocs as
        URLs write them: ``host`` for the default port, ``host:port`` for the other."""
        fast = {}
        for (scheme, host, port), twin in routes.items():
            fast[(scheme, f"{host}:{port}")] = twin
            if port == _DEFAULT_PORTS.get(scheme):
                fast[(scheme, host)] = twin
        self.fast_routes, self.routes = fast, routes

    def route_open_contexts(self) -> None:
        """Route every open context's origins to its twin (they share the outermost's), in whatever order the
        contexts were opened and closed."""
        self.set_routes({origin: c.twin for c in self.contexts for origin in c.origins})

    def blocked(self) -> bool:
        return any(c.block_network for c in self.contexts) and \
            not threading.current_thread().name.startswith("sd35-webhook")  # the twin's own webhook workers

    def install(self) -> None:
        self.originals["requests"] = HTTPAdapter.send
        HTTPAdapter.send = _patched_requests_send
        if httpx is not None:
            self.originals["httpx"] = httpx.HTTPTransport.handle_request
            self.originals["httpx_async"] = httpx.AsyncHTTPTransport.handle_async_request
            httpx.HTTPTransport.handle_request = _patched_httpx_send
            httpx.AsyncHTTPTransport.handle_async_request = _patched_httpx_async_send

    def uninstall(self) -> None:
        HTTPAdapter.send = self.originals.pop("requests")
        if httpx is not None:
            httpx.HTTPTransport.handle_request = self.originals.pop("httpx")
            httpx.AsyncHTTPTransport.handle_async_request = self.originals.pop("httpx_async")


_INTERCEPTOR = _Interceptor()


def _refusal(method: str, url: str) -> str:
    answered = {u.rstrip("/") for c in _INTERCEPTOR.contexts for u in (*c.base_urls, *c.twin.base_urls)}
    return (f"sd35 in-process twin: block_network=True refuses {method} {url} (the twin answers "
            + ", ".join(sorted(answered)) + ")")


def _patched_requests_send(adapter, request, *args, **kwargs):
    twin = _INTERCEPTOR.twin_for(request.url)
    if twin is not None:
        stream = kwargs.get("stream", args[0] if args else False)
        timeout = kwargs.get("timeout", args[1] if len(args) > 1 else None)
        return answer_requests(twin, adapter, request, timeout, stream)
    if _INTERCEPTOR.blocked():
        raise requests.ConnectionError(_refusal(request.method, request.url), request=request)
    return _INTERCEPTOR.originals["requests"](adapter, request, *args, **kwargs)


def _patched_httpx_send(transport, request):
    twin = _INTERCEPTOR.twin_for(str(request.url))
    if twin is not None:
        return answer_httpx(twin, request, request.read())
    if _INTERCEPTOR.blocked():
        raise httpx.ConnectError(_refusal(request.method, str(request.url)), request=request)
    return _INTERCEPTOR.originals["httpx"](transport, request)


async def _patched_httpx_async_send(transport, request):
    twin = _INTERCEPTOR.twin_for(str(request.url))
    if twin is not None:
        return answer_httpx(twin, request, await request.aread())
    if _INTERCEPTOR.blocked():
        raise httpx.ConnectError(_refusal(request.method, str(request.url)), request=request)
    return await _INTERCEPTOR.originals["httpx_async"](transport, request)


# --- the public face: context manager, decorator -------------------------------------------------------------

class Sd35Mock:
    """``mock_sd35(...)``: a context manager (``as`` gives the ``InProcessTwin``) and a decorator (a new twin
    per call of the function, sync or async). Nested in an open context, it uses that context's twin (the
    outermost owns the state) and adds its own base URLs while open."""

    def __init__(self, base_url: str | list[str] = DEFAULT_BASE_URL, *, block_network: bool = False,
                 config: MockConfig | None = None, twin: InProcessTwin | None = None, **settings):
        self.base_urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not self.base_urls:
            raise ValueError("base_url: give at least one URL")
        for url in self.base_urls:
            # the twin answers an origin at its root: anything more would send the app's calls and the control
            # plane's to paths or a Host the twin does not answer
            if not is_origin(url):
                raise ValueError(f"base_url: {url!r} must be an http:// or https:// URL with a host "
                                 "(and a port from 1 to 65535, if any), and no path, query, fragment or credentials")
        if config is not None and settings:
            raise ValueError("give either config or settings, not both")
        self.block_network = block_network
        self._config = config
        self._settings = {**TEST_SETTINGS, **settings}
        self._given_twin = twin
        self.twin: InProcessTwin | None = None
        self.origins: set[tuple[str, str, int]] = set()  # where it answers while open

    def _new_twin(self) -> InProcessTwin:
        return InProcessTwin(self.base_urls, self._config or MockConfig(**self._settings))

    def start(self) -> InProcessTwin:
        with _INTERCEPTOR.lock:
            outer = _INTERCEPTOR.contexts[0].twin if _INTERCEPTOR.contexts else None
            self.twin = outer or self._given_twin or self._new_twin()
            self.origins = {_origin(u) for u in self.base_urls} | self.twin.origins()
            if not _INTERCEPTOR.contexts:
                _INTERCEPTOR.install()
            _INTERCEPTOR.contexts.append(self)
            _INTERCEPTOR.route_open_contexts()
            return self.twin

    def stop(self) -> None:
        with _INTERCEPTOR.lock:
            if self not in _INTERCEPTOR.contexts:
                return
            _INTERCEPTOR.contexts.remove(self)
            _INTERCEPTOR.route_open_contexts()  # what the others still answer, in any order of closing
            if not _INTERCEPTOR.contexts:
                _INTERCEPTOR.uninstall()
        if self.twin is not None and self.twin is not self._given_twin and self._owns_twin():
            self.twin.backend.close()
            self.twin.close()

    def _owns_twin(self) -> bool:
        return not any(c.twin is self.twin for c in _INTERCEPTOR.contexts)

    def __enter__(self) -> InProcessTwin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __call__(self, func):
        """Decorate a test function (sync or async), or a class: each of its ``test*`` methods, as moto does."""
        if inspect.isclass(func):
            for name, member in list(vars(func).items()):
                if name.startswith("test") and callable(member):
                    setattr(func, name, self(member))
            return func
        options = dict(base_url=self.base_urls, block_network=self.block_network, config=self._config,
                       twin=self._given_twin, **({} if self._config else self._settings))

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def run_async(*args, **kwargs):
                with Sd35Mock(**options):
                    return await func(*args, **kwargs)
            return run_async

        @functools.wraps(func)
        def run(*args, **kwargs):
            with Sd35Mock(**options):
                return func(*args, **kwargs)
        return run


def mock_sd35(func=None, /, **options):
    """``@mock_sd35``, ``@mock_sd35(base_url=..., block_network=True, lifecycle="manual")`` or
    ``with mock_sd35() as twin``: the SD3.5 API answered in this process. ``options``: ``base_url`` (a URL or a
    list), ``block_network``, ``config`` (a ``MockConfig``) or ``MockConfig``'s fields (over
    ``config.TEST_SETTINGS``)."""
    if func is not None:
        if not callable(func):
            raise TypeError("mock_sd35: give options by name, e.g. mock_sd35(base_url=...)")
        return Sd35Mock(**options)(func)
    return Sd35Mock(**options)
