"""The client's own session reads the environment (proxies, CA bundle) once per scheme and host, as httpx
reads it once per client, instead of on every call as requests does: what each call is sent with."""

from __future__ import annotations

import io

import pytest
import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import HTTPResponse

from sd35_twin.client.api import EnvironmentOnceSession

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class Spy(BaseAdapter):
    """Answers every call PENDING and keeps what requests passed to the transport with each one."""

    def __init__(self):
        super().__init__()
        self.sent: list[dict] = []

    def send(self, request, **kwargs):
        self.sent.append(dict(kwargs, url=request.url))
        body = b'{"status":"PENDING","id":"j"}'
        raw = HTTPResponse(body=io.BytesIO(body), status=200, preload_content=False,
                           headers={"Content-Type": "application/json", "Content-Length": str(len(body))})
        return HTTPAdapter().build_response(request, raw)

    def close(self):
        pass


@pytest.fixture
def environ(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture
def spied(make_client):
    def factory(**kwargs):
        client = make_client(**kwargs)
        spy = Spy()
        for prefix in ("https://", "http://"):
            client.session.mount(prefix, spy)
        return client, spy
    return factory


def test_the_clients_own_session_reads_the_environment_once_per_host(environ, spied):
    environ.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    environ.setenv("REQUESTS_CA_BUNDLE", "/etc/ca.pem")
    client, spy = spied()
    assert type(client.session) is EnvironmentOnceSession
    client.status("j")
    environ.setenv("HTTPS_PROXY", "http://later.test:1")  # set after the first call to this host
    environ.setenv("REQUESTS_CA_BUNDLE", "/etc/later.pem")
    client.status("j")
    other = requests.Request("GET", "https://files.test/x")  # another host reads the environment now
    client.session.send(client.session.prepare_request(other),
                        **client.session.merge_environment_settings(other.url, {}, None, None, None))
    assert [(s["url"], s["proxies"], s["verify"]) for s in spy.sent] == [
        ("https://api.test/sd3_5/v1/status/j", {"https": "http://proxy.test:3128"}, "/etc/ca.pem"),
        ("https://api.test/sd3_5/v1/status/j", {"https": "http://proxy.test:3128"}, "/etc/ca.pem"),
        ("https://files.test/x", {"https": "http://later.test:1"}, "/etc/later.pem"),
    ]


def test_no_proxy_and_the_scheme_are_per_host(environ, spied):
    environ.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    environ.setenv("HTTP_PROXY", "http://plain.test:8080")
    environ.setenv("NO_PROXY", "api.test")
    client, spy = spied()
    client.status("j")
    plain, plain_spy = spied(base_url="http://mock.test:8000")
    plain.status("j")
    assert [s["proxies"] for s in spy.sent] == [{}]  # NO_PROXY names the API's host
    # another host, over http: requests hands over every proxy variable, the adapter picks by scheme
    assert [s["proxies"] for s in plain_spy.sent] == [
        {"http": "http://plain.test:8080", "https": "http://proxy.test:3128", "no": "api.test"}]


def test_the_sessions_own_settings_are_seen_when_they_change(environ, spied):
    client, spy = spied()
    client.status("j")
    client.session.verify = False
    client.status("j")
    client.session.cert = "/c.pem"
    client.status("j")
    client.session.proxies = {"https": "http://set.test:1"}
    client.status("j")
    client.session.trust_env = False
    environ.setenv("HTTPS_PROXY", "http://env.test:1")
    client.status("j")
    assert [(s["proxies"], s["verify"], s["cert"]) for s in spy.sent] == [
        ({}, True, None), ({}, False, None), ({}, False, "/c.pem"), ({"https": "http://set.test:1"}, False, "/c.pem"),
        ({"https": "http://set.test:1"}, False, "/c.pem")]


def test_arguments_of_a_call_are_merged_as_requests_does(environ):
    environ.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    session = EnvironmentOnceSession()
    url = "https://api.test/x"
    assert session.merge_environment_settings(url, {}, None, None, None) == \
        {"proxies": {"https": "http://proxy.test:3128"}, "stream": False, "verify": True, "cert": None}
    asked = session.merge_environment_settings(url, {"https": "http://mine.test:1"}, True, "/ca.pem", "/c.pem")
    assert asked == {"proxies": {"https": "http://mine.test:1"}, "stream": True, "verify": "/ca.pem",
                     "cert": "/c.pem"}
    assert session.merge_environment_settings(url, {}, None, False, None) == \
        {"proxies": {"https": "http://proxy.test:3128"}, "stream": False, "verify": False, "cert": None}
    assert session.merge_environment_settings(url, {}, True, None, None)["stream"] is True
    assert session.merge_environment_settings(url, {}, None, None, "/c.pem")["cert"] == "/c.pem"


def test_an_answer_is_a_copy_that_a_caller_may_change(environ):
    environ.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    session = EnvironmentOnceSession()
    first = session.merge_environment_settings("https://api.test/x", {}, None, None, None)
    first["proxies"]["https"] = "http://changed.test:1"
    first["verify"] = False
    assert session.merge_environment_settings("https://api.test/y", {}, None, None, None) == \
        {"proxies": {"https": "http://proxy.test:3128"}, "stream": False, "verify": True, "cert": None}


def test_past_its_bound_of_hosts_it_reads_the_environment_each_call(environ):
    session = EnvironmentOnceSession()
    for n in range(EnvironmentOnceSession.MAX_HOSTS):
        session.merge_environment_settings(f"https://h{n}.test/", {}, None, None, None)
    environ.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    assert session.merge_environment_settings("https://h0.test/", {}, None, None, None)["proxies"] == {}  # kept
    assert session.merge_environment_settings("https://new.test/", {}, None, None, None)["proxies"] == \
        {"https": "http://proxy.test:3128"}
    environ.setenv("HTTPS_PROXY", "http://later.test:1")
    assert session.merge_environment_settings("https://new.test/", {}, None, None, None)["proxies"] == \
        {"https": "http://later.test:1"}  # not kept: read again


def test_a_session_the_user_gives_is_used_as_it_is(make_client):
    mine = requests.Session()
    assert make_client(session=mine).session is mine
