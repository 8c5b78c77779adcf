"""The in-process seam itself (mockserver.inprocess), unit by unit: what an app using requests or httpx sees of
an answer (status, reason, headers, a body read whole, streamed or in chunks, HEAD, gzip, a read timeout, a
reset, a drop), the WSGI environ the app behind the seam receives, which hosts are answered and which go out,
and the decorator, nesting and block_network. Most tests mount a tiny WSGI app where the twin's app is (the
same seam: ``InProcessTwin.wsgi_answer`` calls ``twin.app``), so each can say exactly what the server did."""

import asyncio
import gzip
import io
import sys

import httpx
import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

from sd35_twin.mockserver import inprocess
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.http.faults import DropConnection
from sd35_twin.mockserver.inprocess import InProcessTwin, mock_sd35

API = "https://api.imagepipeline.io"
KEY = {"API-Key": "any-key"}
REQ = {"prompt": "a fox in the snow", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
       "guidance_scale": 0}
RESET = "Connection reset by peer (sd35 twin fault)"
ORIGINALS = (HTTPAdapter.send, httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request)


@pytest.fixture(autouse=True)
def fresh_interceptor(monkeypatch):
    """Each test routes through an interceptor built in the test (not the one built at import)."""
    monkeypatch.setattr(inprocess, "_INTERCEPTOR", inprocess._Interceptor())


class Body:
    """The app's answer iterable: what the server pulled from it, how often it closed it, and a dropped
    connection after ``drop_after`` chunks (what a ``reset`` fault does)."""

    def __init__(self, chunks, drop_after=None):
        self.chunks, self.drop_after = list(chunks), drop_after
        self.pulled = self.closed = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.pulled == self.drop_after:
            raise DropConnection()
        if self.pulled >= len(self.chunks):
            raise StopIteration
        self.pulled += 1
        return self.chunks[self.pulled - 1]

    def close(self):
        self.closed += 1


class App:
    """A WSGI app mounted where the twin's app is: it records each environ and the body it read, and answers
    ``status``, ``headers`` and ``chunks``; ``before`` runs first (to move a clock, or drop the call)."""

    def __init__(self, status="200 OK", headers=(("Content-Type", "text/plain"),), chunks=(b"abc",),
                 drop_after=None, before=None):
        self.status, self.headers, self.chunks, self.drop_after, self.before = \
            status, list(headers), chunks, drop_after, before
        self.environs, self.bodies, self.answers = [], [], []

    def __call__(self, environ, start_response):
        if self.before:
            self.before()
        self.environs.append(environ)
        self.bodies.append(environ["wsgi.input"].read())
        start_response(self.status, self.headers)
        self.answers.append(Body(self.chunks, self.drop_after))
        return self.answers[-1]


@pytest.fixture
def mounted(monkeypatch):
    """``mounted(app, **options)``: a ``mock_sd35`` whose twin answers with ``app``; gives the twin."""
    contexts = []

    def mount(app, **options):
        context = mock_sd35(**options)
        contexts.append(context)
        twin = context.start()
        monkeypatch.setattr(twin, "app", app)
        return twin
    yield mount
    for context in reversed(contexts):
        context.stop()


class Clock:
    """``inprocess``'s clock, moved by the app: a read timeout is met or not, exactly, with no sleep."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def takes(self, seconds):
        def move():
            self.now += seconds
        return move


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(inprocess, "time", clock)
    return clock


# --- the WSGI environ the app behind the seam receives ----------------------------------------------------

def test_the_app_receives_the_environ_a_wsgi_server_builds(mounted):
    app = App()
    mounted(app)
    httpx.post(f"{API}/a%20b/%C3%A9?x=1&y=%20", content=b"hi",
               headers=[("X-Twice", "one"), ("X-Twice", "two"), ("Content-Type", "text/plain")])
    [environ] = app.environs
    plain = {k: v for k, v in environ.items() if not k.startswith("HTTP_") and k != "wsgi.input"}
    assert plain == {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/a b/\u00c3\u00a9", "QUERY_STRING": "x=1&y=%20",
        "SERVER_NAME": "api.imagepipeline.io", "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0", "wsgi.version": (1, 0), "wsgi.url_scheme": "https",
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "sd35.inprocess": True, "CONTENT_LENGTH": "2", "CONTENT_TYPE": "text/plain"}
    assert environ["HTTP_X_TWICE"] == "one, two"  # a repeated header joined, as a WSGI server does
    assert environ["HTTP_HOST"] == "api.imagepipeline.io"
    assert "HTTP_CONTENT_LENGTH" not in environ and "HTTP_CONTENT_TYPE" not in environ
    assert app.bodies == [b"hi"]


def test_a_call_with_no_path_and_no_body_and_the_host_as_written(mounted):
    twin = mounted(App())
    twin.wsgi_answer("get", "http://API.ImagePipeline.io", [], b"").read_all()
    twin.wsgi_answer("get", "https://API.ImagePipeline.io:8443/x", [("Host", "given.example")], b"").read_all()
    first, second = twin.app.environs
    assert (first["REQUEST_METHOD"], first["PATH_INFO"], first["CONTENT_LENGTH"]) == ("GET", "/", "")
    assert (first["SERVER_NAME"], first["SERVER_PORT"], first["wsgi.url_scheme"]) == \
        ("api.imagepipeline.io", "80", "http")
    assert first["HTTP_HOST"] == "API.ImagePipeline.io"  # no Host header: the URL's, as written
    assert (second["SERVER_NAME"], second["SERVER_PORT"], second["HTTP_HOST"]) == \
        ("api.imagepipeline.io", "8443", "given.example")


@pytest.mark.parametrize("make, expected", [  # made in the test: a file or a generator is read once
    (lambda: "caf\u00e9", "caf\u00e9".encode()), (lambda: b"\x00\xff", b"\x00\xff"), (lambda: bytearray(b"ab"), b"ab"),
    (lambda: io.BytesIO(b"from a file"), b"from a file"),
    (lambda: io.StringIO("caf\u00e9 text"), "caf\u00e9 text".encode()),
    (lambda: (part for part in [b"by", "t\u00e9s"]), "byt\u00e9s".encode())],
    ids=["str", "bytes", "bytearray", "binary file", "text file", "generator"])
def test_every_kind_of_requests_body_reaches_the_app_whole(make, expected, mounted):
    app = App()
    mounted(app)
    requests.post(f"{API}/upload", data=make())
    assert app.bodies == [expected]
    assert app.environs[0]["CONTENT_LENGTH"] == str(len(expected))


class ReadOnly:
    """A body with ``read`` and nothing to iterate: requests hands it to the adapter as it is."""

    def read(self):
        return "r\u00e9ad once"


def test_a_body_that_can_only_be_read(mounted):
    app = App()
    mounted(app)
    requests.post(f"{API}/upload", data=ReadOnly(), headers={"Content-Length": "10"})
    assert app.bodies == ["r\u00e9ad once".encode()]


def test_a_request_without_a_body_has_an_empty_content_length(mounted):
    app = App()
    mounted(app)
    requests.get(f"{API}/x")
    assert app.environs[0]["CONTENT_LENGTH"] == "" and app.bodies == [b""]


# --- what the client sees of an answer ------------------------------------------------------------------

def test_status_reason_headers_and_version_as_over_http(mounted):
    mounted(App(status="299 Fine \u00e9t\u00e9", headers=[("X-Twice", "a"), ("X-Twice", "b"), ("Content-Length", "3")]))
    answer = requests.get(f"{API}/x")
    assert (answer.status_code, answer.reason, answer.content) == (299, "Fine \u00e9t\u00e9", b"abc")
    assert answer.headers["X-Twice"] == "a, b"
    answer = httpx.get(f"{API}/x")
    assert (answer.status_code, answer.reason_phrase, answer.http_version) == (299, "Fine t", "HTTP/1.1")
    assert answer.headers.get_list("X-Twice") == ["a", "b"] and answer.content == b"abc"


def test_an_httpx_transport_called_directly_answers_with_its_request(mounted):
    mounted(App())
    request = httpx.Request("GET", f"{API}/x")
    answer = httpx.HTTPTransport().handle_request(request)
    assert answer.request is request and answer.read() == b"abc"


def test_a_reason_outside_latin_1_is_replaced_not_an_error(mounted):
    mounted(App(status="200 Fin\u0101"))
    assert httpx.get(f"{API}/x").reason_phrase == "Fin?"


@pytest.mark.parametrize("chunks", [[], [b"abc"]], ids=["no body", "a body it should not send"])
def test_head_has_no_body_whatever_the_app_sends(chunks, mounted):
    mounted(App(headers=[("Content-Length", "3")], chunks=chunks))
    for answer in (requests.head(f"{API}/x"), requests.head(f"{API}/x", stream=True), httpx.head(f"{API}/x")):
        assert (answer.status_code, answer.headers["Content-Length"], answer.content) == (200, "3", b"")


def test_a_body_without_content_length_is_read_to_its_end_and_closed_once(mounted):
    app = App(headers=[], chunks=[b"ab", b"", b"cd"])
    mounted(app)
    assert requests.get(f"{API}/x").content == b"abcd"
    assert httpx.get(f"{API}/x").content == b"abcd"
    assert [(a.pulled, a.closed) for a in app.answers] == [(3, 1), (3, 1)]


def test_a_body_longer_than_its_content_length_is_cut_there_and_not_read_further(mounted):
    app = App(headers=[("Content-Length", "5")], chunks=[b"abc", b"def", b"ghi"])
    mounted(app)
    assert requests.get(f"{API}/x").content == b"abcde"
    assert httpx.get(f"{API}/x").content == b"abcde"
    assert b"".join(requests.get(f"{API}/x", stream=True).iter_content(2)) == b"abcde"
    assert [(a.pulled, a.closed) for a in app.answers] == [(2, 1), (2, 1), (2, 1)]


def test_stream_reads_the_body_only_as_the_app_reads_it(mounted):
    app = App(headers=[("Content-Length", "6")], chunks=[b"abcd", b"ef"])
    twin = mounted(app)
    answer = requests.get(f"{API}/x", stream=True)
    assert app.answers[-1].pulled == 0
    assert [answer.raw.read(3) for _ in range(4)] == [b"abc", b"d", b"ef", b""]  # as a socket hands them over
    assert app.answers[-1].closed == 1
    answer = twin.http.get(f"{API}/x", stream=True)  # the twin's own session, through its own adapter
    assert app.answers[-1].pulled == 0 and answer.content == b"abcdef"
    assert requests.get(f"{API}/x").content == b"abcdef" and app.answers[-1].pulled == 2


def test_bytes_given_to_the_legacy_write_callable_come_first(mounted):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "6")])
        write(b"ab")
        write(b"cd")
        return [b"ef"]
    mounted(app)
    assert requests.get(f"{API}/x").content == b"abcdef"
    assert httpx.get(f"{API}/x").content == b"abcdef"


def test_raw_url_is_the_path_as_requests_own_adapter_gives_it(mounted):
    mounted(App())
    assert requests.get(f"{API}/x/y?q=1", stream=True).raw.url == "/x/y?q=1"


def test_an_encoded_body_is_decoded_by_the_library_and_raw_stays_encoded(mounted):
    packed = gzip.compress(b"a fox " * 20)
    mounted(App(headers=[("Content-Encoding", "gzip")], chunks=[packed[:10], packed[10:]]))
    assert requests.get(f"{API}/x").content == b"a fox " * 20
    assert httpx.get(f"{API}/x").content == b"a fox " * 20
    assert requests.get(f"{API}/x", stream=True).raw.read() == packed  # as requests' own adapter leaves it


def test_a_connection_reset_mid_body_is_the_libraries_own_error(mounted):
    mounted(App(headers=[], chunks=[b"ab", b"cd"], drop_after=1))
    with pytest.raises(requests.exceptions.ChunkedEncodingError) as whole:
        requests.get(f"{API}/x")
    with pytest.raises(requests.exceptions.ChunkedEncodingError) as streamed:
        b"".join(requests.get(f"{API}/x", stream=True).iter_content(1))
    for raised in (whole, streamed):
        assert f"ConnectionResetError(104, '{RESET}')" in str(raised.value)
    with pytest.raises(httpx.ReadError) as raised:
        httpx.get(f"{API}/x")
    assert str(raised.value) == f"[Errno 104] {RESET}"


def test_a_dropped_connection_before_any_byte(mounted):
    with mock_sd35() as twin:
        twin.fault(endpoint="submit", type="drop")
        with pytest.raises(requests.ConnectionError) as raised:
            requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY)
        assert str(raised.value) == \
            "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))"
        assert isinstance(raised.value.args[0], urllib3.exceptions.ProtocolError)
        assert raised.value.request.url == f"{API}/sd3_5/v1"
        twin.fault(endpoint="submit", type="drop")
        request = httpx.Request("POST", f"{API}/sd3_5/v1", json=REQ, headers=KEY)
        with pytest.raises(httpx.RemoteProtocolError) as raised:
            httpx.HTTPTransport().handle_request(request)  # a transport called directly: no client to fill in
        assert str(raised.value) == "Server disconnected without sending a response."
        assert raised.value.request is request


# --- the read timeout: met or not, exactly at its bound ----------------------------------------------------

@pytest.mark.parametrize("timeout", [2, (5, 2), urllib3.Timeout(connect=5, read=2)], ids=["number", "tuple", "urllib3"])
def test_requests_read_timeout_at_its_bound(timeout, clock, mounted):
    app = App(before=clock.takes(2))
    twin = mounted(app)
    assert requests.get(f"{API}/x", timeout=timeout).content == b"abc"  # answered in exactly the read timeout
    app.before = clock.takes(2.5)
    for session in (requests, twin.http):
        with pytest.raises(requests.ReadTimeout) as raised:
            session.get(f"{API}/x", timeout=timeout)
        assert str(raised.value) == "sd35 twin: no answer within the read timeout (2 s)"
        assert raised.value.request.url == f"{API}/x"
    assert [a.closed for a in app.answers] == [1, 1, 1]


def test_httpx_read_timeout_at_its_bound(clock, mounted):
    app = App(before=clock.takes(2))
    mounted(app)
    assert httpx.get(f"{API}/x", timeout=httpx.Timeout(5, read=2)).content == b"abc"
    app.before = clock.takes(2.5)
    request = httpx.Request("GET", f"{API}/x", extensions={"timeout": {"read": 2}})
    with pytest.raises(httpx.ReadTimeout) as raised:
        httpx.HTTPTransport().handle_request(request)
    assert str(raised.value) == "sd35 twin: no answer within the read timeout (2 s)"
    assert raised.value.request is request
    assert app.answers[-1].closed == 1


# --- requests' adapters: the one mounted builds the response; a direct call's arguments ---------------------

class MarkingAdapter(HTTPAdapter):
    def build_response(self, req, resp):
        response = super().build_response(req, resp)
        response.marked_by = self
        return response


def test_the_mounted_adapter_builds_the_response_as_over_http(mounted):
    mounted(App())
    with requests.Session() as session:
        adapter = MarkingAdapter()
        session.mount("https://", adapter)
        answer = session.get(f"{API}/x")
    assert answer.marked_by is adapter and answer.connection is adapter and answer.content == b"abc"


def test_an_adapter_called_directly_with_positional_arguments(clock, mounted):
    app = App(headers=[("Content-Length", "3")])
    mounted(app)
    prepared = requests.Request("GET", f"{API}/x").prepare()
    adapter = HTTPAdapter()
    adapter.send(prepared)
    assert app.answers[-1].pulled == 1  # stream=False: read at once
    answer = adapter.send(prepared, True)
    assert app.answers[-1].pulled == 0 and answer.raw.read() == b"abc"
    app.before = clock.takes(3)
    with pytest.raises(requests.ReadTimeout, match=r"\(2 s\)"):
        adapter.send(prepared, False, (5, 2))
    with pytest.raises(requests.ReadTimeout, match=r"\(2 s\)"):
        adapter.send(prepared, stream=False, timeout=2)


def test_other_hosts_get_the_direct_calls_arguments_too(sd35_webhooks, mounted):
    mounted(App())
    with socket_refusing() as port:
        prepared = requests.Request("POST", sd35_webhooks.url, json={}).prepare()
        with pytest.raises(requests.exceptions.ProxyError):  # the proxy given by position is used
            HTTPAdapter().send(prepared, False, 5, True, None, {"http": f"http://127.0.0.1:{port}"})


class socket_refusing:
    """A port on 127.0.0.1 bound and not listening: a connection to it is refused, at once."""

    def __enter__(self):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


# --- which hosts are answered, which go out ---------------------------------------------------------------

def test_which_urls_the_twin_answers(mounted):
    app = App()
    mounted(app, base_url=["https://staging.example:8443/", API], block_network=True)
    assert requests.get("https://user:secret@api.imagepipeline.io/x").content == b"abc"
    assert requests.get("https://API.ImagePipeline.io:443/x").content == b"abc"
    assert httpx.get("https://staging.example:8443/y").content == b"abc"
    assert len(app.environs) == 3
    for url in ("https://staging.example/y",                 # the same host, not the base's port
                "https://other.example/api.imagepipeline.io",  # the twin's host in another host's path
                "http://api.imagepipeline.io/x"):             # the same host, not the base's scheme
        with pytest.raises(requests.ConnectionError, match="block_network=True refuses GET " + url.replace(".", r"\.")):
            requests.get(url)
    assert len(app.environs) == 3


def test_where_a_twin_answers_and_its_url(monkeypatch, tmp_path):
    twin = InProcessTwin(["https://API.EXAMPLE.BOX/", "http://mirror.example:8080"], MockConfig())
    with_images = InProcessTwin([API], MockConfig(public_url="https://images.example.net"))
    try:
        assert twin.url == "https://API.EXAMPLE.BOX"
        assert twin.base_urls == ["https://API.EXAMPLE.BOX", "http://mirror.example:8080"]
        assert twin.origins() == {("https", "api.example.box", 443), ("http", "mirror.example", 8080)}
        assert with_images.origins() == {("https", "api.imagepipeline.io", 443), ("https", "images.example.net", 443)}
    finally:
        for each in (twin, with_images):
            each.backend.close()
            each.close()


def test_the_twins_own_session_ignores_the_environment(mounted, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.imagepipeline.io login someone password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    app = App()
    twin = mounted(app)
    twin.http.get(f"{API}/x")
    assert "HTTP_AUTHORIZATION" not in app.environs[0]


def test_block_network_names_the_url_and_every_base_url(mounted):
    mounted(App(), base_url=["https://staging.example/", API], block_network=True)
    refusal = ("sd35 in-process twin: block_network=True refuses {} https://example.org/ (the twin answers "
               "https://api.imagepipeline.io, https://staging.example)")
    with pytest.raises(requests.ConnectionError) as raised:
        requests.post("https://example.org/")
    assert str(raised.value) == refusal.format("POST") and raised.value.request.url == "https://example.org/"
    request = httpx.Request("GET", "https://example.org/")
    with pytest.raises(httpx.ConnectError) as raised:
        httpx.HTTPTransport().handle_request(request)
    assert str(raised.value) == refusal.format("GET") and raised.value.request is request

    async def call_async():
        with pytest.raises(httpx.ConnectError) as raised:
            await httpx.AsyncHTTPTransport().handle_async_request(request)
        assert str(raised.value) == refusal.format("GET") and raised.value.request is request
    asyncio.run(call_async())


def test_async_httpx_to_another_host_goes_out(sd35_webhooks, mounted):
    mounted(App())

    async def call():
        async with httpx.AsyncClient() as http:
            return (await http.post(sd35_webhooks.url, json={"a": 1})).status_code
    assert asyncio.run(call()) == 200
    assert sd35_webhooks.expect(1)[0].json == {"a": 1}


# --- contexts: nesting, closing, the libraries unpatched --------------------------------------------------

def test_nested_contexts_on_the_same_url_keep_the_outer_answering():
    with mock_sd35(lifecycle="immediate") as outer:
        with mock_sd35() as inner:
            assert inner is outer
        assert requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).json()["status"] == "SUCCESS"
        with mock_sd35(base_url="https://mirror.example"):
            pass
        assert httpx.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).json()["status"] == "SUCCESS"
    assert (HTTPAdapter.send, httpx.HTTPTransport.handle_request,
            httpx.AsyncHTTPTransport.handle_async_request) == ORIGINALS


def test_a_closed_context_leaves_no_route_behind():
    with mock_sd35(base_url="https://old.example"):
        pass
    with mock_sd35(block_network=True):
        with pytest.raises(requests.ConnectionError, match="refuses GET https://old.example/"):
            requests.get("https://old.example/")


def test_a_context_closes_its_own_twin_but_not_one_it_was_given_nor_the_outer(sd35_webhooks):
    with mock_sd35(lifecycle="immediate") as own:
        pass
    job = own.http.post(f"{API}/sd3_5/v1", json={**REQ, "webhook": sd35_webhooks.url}, headers=KEY).json()
    assert [(w["outcome"], w["error"]) for w in own.webhooks(job["id"])] == \
        [("dropped", "webhook dispatcher is closed")]
    given = InProcessTwin([API], MockConfig(lifecycle="immediate"))
    try:
        with mock_sd35(twin=given) as twin:
            assert twin is given
        with mock_sd35(twin=given):
            with mock_sd35():  # nested: the same twin, not the inner's to close
                pass
            requests.post(f"{API}/sd3_5/v1", json={**REQ, "webhook": sd35_webhooks.url}, headers=KEY)
            assert sd35_webhooks.expect(1)[0].json["status"] == "SUCCESS"
    finally:
        given.backend.close()
        given.close()


# --- the decorator and the constructor -------------------------------------------------------------------

def lifecycle_seen() -> str:
    """The lifecycle of the twin open here (a nested context uses it), or of a fresh one if none is."""
    with mock_sd35() as twin:
        return twin.backend.config.lifecycle


def test_a_decorated_class_wraps_its_test_methods_only():
    class TestSomething:
        test_value = 3

        def test_a(self):
            return lifecycle_seen()

        def helper(self):
            return lifecycle_seen()

    assert mock_sd35(lifecycle="manual")(TestSomething) is TestSomething
    assert TestSomething().test_a() == "manual"
    assert TestSomething().helper() == "polls" and TestSomething.test_value == 3


def test_a_decorated_function_gets_every_option(sd35_webhooks):
    given = InProcessTwin([API], MockConfig(**{**inprocess.TEST_SETTINGS, "lifecycle": "manual"}))

    @mock_sd35(block_network=True, base_url="https://mirror.example", config=MockConfig(lifecycle="immediate"))
    def configured():
        with pytest.raises(requests.ConnectionError, match="block_network=True refuses GET"):
            requests.get(sd35_webhooks.url)
        return requests.post("https://mirror.example/sd3_5/v1", json=REQ, headers=KEY).json()["status"]

    @mock_sd35(twin=given)
    async def on_a_given_twin():
        return lifecycle_seen()

    try:
        assert configured() == "SUCCESS"
        assert asyncio.run(on_a_given_twin()) == "manual"
    finally:
        given.backend.close()
        given.close()


@pytest.mark.parametrize("options, message", [
    (dict(base_url=[]), "base_url: give at least one URL"),
    (dict(base_url="https:///x"), "base_url: 'https:///x' must be an http:// or https:// URL with a host "
                                  "(and a port from 1 to 65535, if any), and no path, query, fragment or credentials"),
    (dict(base_url="https://h:port"), "base_url: 'https://h:port' must be"),
    (dict(base_url="https://h:70000"), "base_url: 'https://h:70000' must be"),
    (dict(base_url="https://h/v2"), "base_url: 'https://h/v2' must be"),
    (dict(base_url="https://h/?"), "base_url: 'https://h/?' must be"),
    (dict(base_url="https://h#"), "base_url: 'https://h#' must be"),
    (dict(base_url=["https://h", "https://u:p@h"]), "base_url: 'https://u:p@h' must be"),
    (dict(base_url="https://a b"), "base_url: 'https://a b' must be"),
    (dict(config=MockConfig(), lifecycle="manual"), "give either config or settings, not both"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError) as raised:
        mock_sd35(**options)
    assert str(raised.value).startswith(message)


def test_a_positional_option_is_refused_with_how_to_give_it():
    with pytest.raises(TypeError) as raised:
        mock_sd35("https://mirror.example")
    assert str(raised.value) == "mock_sd35: give options by name, e.g. mock_sd35(base_url=...)"


def test_contexts_closed_out_of_order_keep_the_open_ones_answering():
    first = mock_sd35(lifecycle="immediate")
    second = mock_sd35(base_url=[API, "https://MIRROR.EXAMPLE.BOX/"], block_network=True)
    twin = first.start()
    try:
        assert second.start() is twin
        first.stop()  # the outer one first: the inner, still open, keeps both its URLs
        assert requests.post(f"{API}/sd3_5/v1", json=REQ, headers=KEY).json()["status"] == "SUCCESS"
        assert httpx.post("https://mirror.example.box/sd3_5/v1", json=REQ, headers=KEY).status_code == 200
        with pytest.raises(requests.ConnectionError) as raised:  # the refusal names every URL still answered
            requests.get("https://elsewhere.example/")
        assert str(raised.value).endswith("(the twin answers https://MIRROR.EXAMPLE.BOX, https://api.imagepipeline.io)")
    finally:
        second.stop()
        first.stop()
    assert HTTPAdapter.send is ORIGINALS[0]
    with mock_sd35(base_url="https://other.example", block_network=True):
        with pytest.raises(requests.ConnectionError, match="refuses GET https://mirror.example.box/"):
            requests.get("https://mirror.example.box/")
