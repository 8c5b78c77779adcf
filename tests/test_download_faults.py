"""The download body faults (trickle, truncate, wrong_length, reset) as they arrive on the wire: a raw
socket shows the bytes and how the connection ends, ``requests`` shows what a client library raises."""

import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

KEY = {"API-Key": "secret-key-123"}


def ctl(mock, method, path, body=None):
    return requests.request(method, f"{mock.url}/__mock__{path}", json=body, timeout=10)


def image_url(mock, valid_request):
    ctl(mock, "PATCH", "/config", {"lifecycle": "immediate"})
    body = requests.post(f"{mock.url}/sd3_5/v1", json=valid_request, headers=KEY, timeout=10).json()
    assert body["status"] == "SUCCESS"
    return body["download_urls"][0]


def fault(mock, **rule):
    response = ctl(mock, "POST", "/faults", dict(rule, endpoint="download"))
    assert response.status_code == 201, response.text


def raw_get(url, timeout=10.0):
    """(declared Content-Length, body bytes, how it ended: "close", "reset" or "open", arrival times)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        data, ended, arrivals = b"", "open", []
        sock.settimeout(1.0)
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                ended = "reset"
                break
            except socket.timeout:  # kept alive: the answer is over when its declared length is in
                head, _, body = data.partition(b"\r\n\r\n")
                if len(body) >= _declared(head):
                    break
                continue
            if not chunk:
                ended = "close"
                break
            data += chunk
            arrivals.append(time.monotonic())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    return _declared(head), body, ended, arrivals


def _declared(head: bytes) -> int:
    [value] = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return int(value)


def whole(mock, url) -> bytes:
    ctl(mock, "DELETE", "/faults")
    return requests.get(url, timeout=10).content


def test_truncate_sends_the_full_length_then_closes(sd35_mock, valid_request):
    url = image_url(sd35_mock, valid_request)
    image = whole(sd35_mock, url)
    fault(sd35_mock, type="truncate", bytes=100)
    declared, body, ended, _ = raw_get(url)
    assert (declared, body, ended) == (len(image), image[:100], "close")
    fault(sd35_mock, type="truncate")  # default: half the body
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        requests.get(url, timeout=10)
    assert sd35_mock.journal()[-1]["fault"] == f"truncate at {len(image) // 2} of {len(image)} bytes"
    assert requests.get(url, timeout=10).content == image  # times 1: the next one is whole


def test_reset_sends_n_bytes_then_resets(sd35_mock, valid_request):
    url = image_url(sd35_mock, valid_request)
    image = whole(sd35_mock, url)
    fault(sd35_mock, type="reset", bytes=200)
    declared, body, ended, _ = raw_get(url)
    assert (declared, ended) == (len(image), "reset") and image[:200].startswith(body)
    fault(sd35_mock, type="reset", bytes=200)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError),
                       match="ConnectionResetError|IncompleteRead"):
        requests.get(url, timeout=10)


def test_wrong_length_short_looks_complete_and_keeps_the_connection(sd35_mock, valid_request):
    url = image_url(sd35_mock, valid_request)
    image = whole(sd35_mock, url)
    fault(sd35_mock, type="wrong_length", bytes=300)
    declared, body, ended, _ = raw_get(url, timeout=3)
    assert (declared, body, ended) == (300, image[:300], "open")  # well framed: only the image knows
    fault(sd35_mock, type="wrong_length")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == image[:len(image) // 2]


def test_wrong_length_long_declares_more_then_closes(sd35_mock, valid_request):
    url = image_url(sd35_mock, valid_request)
    image = whole(sd35_mock, url)
    fault(sd35_mock, type="wrong_length", length="long", bytes=10)
    declared, body, ended, _ = raw_get(url)
    assert (declared, body, ended) == (len(image) + 10, image, "close")
    fault(sd35_mock, type="wrong_length", length="long")
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="1024 more expected"):
        requests.get(url, timeout=10)


def test_trickle_spreads_the_body_over_time(sd35_mock, valid_request):
    url = image_url(sd35_mock, valid_request)
    image = whole(sd35_mock, url)
    rate = max(1024, len(image) // 2)  # about two seconds
    fault(sd35_mock, type="trickle", bytes_per_second=rate)
    started = time.monotonic()
    declared, body, _, arrivals = raw_get(url)
    assert (declared, body) == (len(image), image)
    assert arrivals[-1] - started >= 0.8 * len(image) / rate and len(arrivals) >= 5
    assert arrivals[-1] - started < 10


@pytest.mark.parametrize("rule,field", [
    ({"type": "trickle", "bytes_per_second": 5000}, "endpoint"),  # endpoint "any"
    ({"type": "truncate", "endpoint": "status"}, "endpoint"),
    ({"type": "reset", "endpoint": "submit"}, "endpoint"),
    ({"type": "wrong_length", "endpoint": "any"}, "endpoint"),
    ({"type": "trickle", "endpoint": "download"}, "bytes_per_second"),
    ({"type": "trickle", "endpoint": "download", "bytes_per_second": 10}, "bytes_per_second"),
    ({"type": "truncate", "endpoint": "download", "bytes": -1}, "bytes"),
    ({"type": "wrong_length", "endpoint": "download", "length": "medium"}, "length"),
    ({"type": "drop", "bytes": 10}, "bytes"),
    ({"type": "status", "status": 500, "bytes_per_second": 5000}, "bytes_per_second"),
])
def test_body_faults_are_refused_where_they_make_no_sense(sd35_mock, rule, field):
    response = ctl(sd35_mock, "POST", "/faults", rule)
    assert response.status_code == 400 and field in [e["field"] for e in response.json()["errors"]]


def test_body_faults_are_listed_with_their_settings(sd35_mock):
    fault(sd35_mock, type="wrong_length", times=2)
    fault(sd35_mock, type="trickle", bytes_per_second=2048, rate=0.5)
    listed = ctl(sd35_mock, "GET", "/faults").json()["faults"]
    assert listed[0]["length"] == "short" and listed[0]["times"] == 2
    assert listed[1]["bytes_per_second"] == 2048 and listed[1]["rate"] == 0.5
