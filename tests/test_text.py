"""Strings that are not Unicode text (lone surrogates from JSON escapes, bytes that are not UTF-8 in a URL):
a 400 naming the field, on the public API and the control plane, and nothing left behind."""

import json
import socket
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from sd35_twin.mockserver.journal import Journal

KEY = {"API-Key": "text-key"}
JSON = {"Content-Type": "application/json"}
REQ = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 1, "samples": 1, "guidance_scale": 0,
       "width": 256, "height": 256}
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]  # too_slow: a loaded machine (conftest.py)

# Text of any code point, lone surrogates (U+D800..U+DFFF) included and frequent.
surrogate = st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.text(st.one_of(st.characters(), surrogate), max_size=12)


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def as_json(value) -> str:
    """JSON text with every non-ASCII character as a \\uXXXX escape: lone surrogates survive the trip."""
    return json.dumps(value, ensure_ascii=True)


def sent(value: str) -> str:
    """What the mock reads of ``value`` sent as JSON: an escaped surrogate pair is one character again."""
    return json.loads(as_json(value))


def send_json(mock, method, path, value, headers=None):
    return requests.request(method, f"{mock.url}{path}", data=as_json(value), headers={**JSON, **(headers or {})},
                            timeout=10)


def url_part(text: str) -> str:
    """``text`` percent-encoded as its bytes, a lone surrogate as the three bytes UTF-8 would give it;
    dots too, so no dot segment is resolved on the way."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


def assert_unharmed(mock):
    """The mock answers, and its listings (which serialise every stored string) still do."""
    assert mock.health()
    for path in ("/__mock__/jobs", "/__mock__/journal", "/__mock__/webhooks", "/__mock__/config"):
        assert requests.get(mock.url + path, timeout=10).status_code == 200, path


def test_a_surrogate_in_a_submit_is_a_400_naming_it_and_leaves_no_job_and_no_webhook(sd35_mock, sd35_webhooks):
    sd35_mock.configure(lifecycle="immediate")
    answer = send_json(sd35_mock, "POST", "/sd3_5/v1", dict(REQ, batch_id="\udc00", webhook=sd35_webhooks.url), KEY)
    assert answer.status_code == 400
    assert [(e["field"], e["rule"]) for e in answer.json()["errors"]] == [("batch_id", "unicode")]
    assert sd35_mock.jobs() == [] and sd35_mock.webhooks(wait=5) == [] and sd35_webhooks.calls == []
    assert_unharmed(sd35_mock)


def test_surrogates_in_control_bodies_are_400s_naming_the_path_and_change_nothing(sd35_mock):
    sd35_mock.configure(lifecycle="manual")
    job = requests.post(f"{sd35_mock.url}/sd3_5/v1", json=REQ, headers=KEY, timeout=10).json()
    config = sd35_mock.config()
    cases = [
        ("POST", f"/__mock__/jobs/{job['id']}/fail", {"error": "x\udc00"}, "error"),
        ("PATCH", "/__mock__/config", {"profile": {"limits": {"x": "\ud800"}}}, "profile.limits.x"),
        ("PATCH", "/__mock__/config", {"api_keys": ["ok", "\udfff"]}, "api_keys[1]"),
        ("PATCH", "/__mock__/config", {"profile": {"\udc00": 1}}, "profile.\\udc00"),
        ("POST", "/__mock__/faults", {"type": "status", "status": 503, "endpoint": "\udc00"}, "endpoint"),
    ]
    for method, path, body, field in cases:
        answer = send_json(sd35_mock, method, path, body)
        assert answer.status_code == 400, (path, answer.text)
        assert [(e["field"], e["rule"]) for e in answer.json()["errors"]] == [(field, "unicode")]
    assert sd35_mock.config() == config and sd35_mock.faults() == []
    status = requests.get(f"{sd35_mock.url}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "PENDING"
    assert_unharmed(sd35_mock)


def test_bytes_that_are_not_utf8_are_400s_naming_the_url_field_and_read_as_latin1_in_headers(sd35_mock):
    cases = [("/sd3_5/v1/status/%ED%B0%80", "id"), ("/sd3_5/v1/status/ok%FF", "id"), ("/files/%FF", "url"),
             ("/images/%C3", "url"), ("/__mock__/jobs/%ED%B0%80", "id"), ("/__mock__/jobs/%FF/complete", "id"),
             ("/__mock__/jobs?batch_id=%ED%B0%80", "batch_id"), ("/__mock__/webhooks?job_id=%FF", "job_id")]
    for path, field in cases:
        method = "POST" if path.endswith("/complete") else "GET"
        answer = requests.request(method, sd35_mock.url + path, headers=KEY, timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        assert [(e["field"], e["rule"]) for e in answer.json()["errors"]] == [(field, "unicode")], path
    # Header values reach the app as latin-1 (HTTP's own reading): always text, so an odd key is just a key.
    port = int(sd35_mock.url.rsplit(":", 1)[1])
    body = json.dumps(REQ).encode()
    for key in (b"k\xff", b"\xed\xb0\x80", b"\x80" * 300):
        for request in (b"GET /sd3_5/v1/status/x HTTP/1.1\r\n", b"POST /sd3_5/v1 HTTP/1.1\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request + b"Host: 127.0.0.1\r\nAPI-Key: " + key + b"\r\nContent-Type: application/json\r\n"
                             + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                status_line = sock.makefile("rb").readline()
            assert status_line.split()[1] in (b"200", b"404"), (key, status_line)
    assert len(sd35_mock.jobs()) == 3
    assert_unharmed(sd35_mock)


def test_a_limit_in_other_digits_is_a_400_naming_it(sd35_mock):
    for limit in ("\u00b2", "\u0661\u0662", "0" * 5_000 + "1"):  # superscript two; Arabic-Indic 12; 5,001 digits
        answer = requests.get(f"{sd35_mock.url}/__mock__/jobs", params={"limit": limit}, timeout=10)
        assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "limit", limit[:10]


def test_reading_the_journal_never_fails_whatever_was_recorded():
    journal = Journal(size=10, body_chars=100)
    journal.record(at=0, method="GE\udc00T", path="/x/\udc00", query="a=\ud800", headers=[("X-\udfff", "v\udc80")],
                   body=b"\xed\xb0\x80\xff", status=400, duration_ms=1)
    [entry] = journal.entries()
    json.dumps(entry, ensure_ascii=False).encode("utf-8")
    assert entry["path"] == "/x/\\udc00" and entry["headers"] == {"X-\\udfff": "v\\udc80"}


# -- properties -------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(field=st.sampled_from(["prompt", "negative_prompt", "batch_id", "file_prefix", "webhook", "extra"]),
       value=any_text, key_text=st.booleans())
def test_any_text_in_a_submit_is_a_job_or_a_4xx_that_leaves_nothing(sd35_mock, field, value, key_text):
    """A field (or an unknown key's name) of arbitrary text: a job if it is valid, else a 4xx and no job."""
    body = dict(REQ, **({value: "x"} if key_text else {field: value}))
    before = len(sd35_mock.jobs())
    answer = send_json(sd35_mock, "POST", "/sd3_5/v1", body, KEY)
    assert answer.status_code == 200 or 400 <= answer.status_code < 500, answer.text
    assert len(sd35_mock.jobs()) == before + (answer.status_code == 200)
    if not is_text(sent(value)):
        assert answer.status_code == 400 and "unicode" in {e["rule"] for e in answer.json()["errors"]}
    assert_unharmed(sd35_mock)


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(error=any_text, message=any_text, name=any_text)
def test_any_text_in_control_bodies_is_applied_whole_or_refused(sd35_mock, error, message, name):
    """Failing a job with any message, patching the config with any text or any key name: a 2xx that took,
    or a 4xx that changed nothing; every read afterwards answers."""
    sd35_mock.configure(lifecycle="manual")
    job = requests.post(f"{sd35_mock.url}/sd3_5/v1", json=REQ, headers=KEY, timeout=10).json()
    failed = send_json(sd35_mock, "POST", f"/__mock__/jobs/{job['id']}/fail", {"error": error})
    status = requests.get(f"{sd35_mock.url}/sd3_5/v1/status/{job['id']}", headers=KEY, timeout=10)
    assert status.status_code == 200
    if failed.status_code == 200:
        assert status.json() == dict(status.json(), status="FAILURE", error=sent(error))
    else:
        assert 400 <= failed.status_code < 500 and status.json()["status"] == "PENDING"
        assert is_text(sent(error)) or failed.json()["errors"][0]["rule"] == "unicode"
    config = sd35_mock.config()
    patched = send_json(sd35_mock, "PATCH", "/__mock__/config", {"profile": {"failure_message": message}})
    if is_text(sent(message)):
        assert patched.status_code == 200 and patched.json()["profile"]["failure_message"] == sent(message)
    else:
        assert patched.status_code == 400 and sd35_mock.config() == config
    unknown = send_json(sd35_mock, "PATCH", "/__mock__/config", {f"x-{name}": 1})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["rule"] == ("unknown" if is_text(sent(name)) else "unicode")
    assert_unharmed(sd35_mock)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(job_id=st.text(st.one_of(st.characters(), surrogate), min_size=1, max_size=12))
def test_any_id_in_a_path_or_query_is_a_404_or_a_400_naming_it(sd35_mock, job_id):
    """No job has such an id: 404 naming ``id`` for text, 400 naming it for anything else; never a change."""
    part, expected = url_part(job_id), (404 if is_text(job_id) else 400)
    answers = [requests.get(f"{sd35_mock.url}/sd3_5/v1/status/{part}", headers=KEY, timeout=10),
               requests.get(f"{sd35_mock.url}/__mock__/jobs/{part}", timeout=10),
               requests.post(f"{sd35_mock.url}/__mock__/jobs/{part}/complete", timeout=10)]
    for answer in answers:
        assert answer.status_code == expected and answer.json()["errors"][0]["field"] == "id", answer.text
    listed = requests.get(f"{sd35_mock.url}/__mock__/jobs?batch_id={part}", timeout=10)
    assert (listed.status_code, listed.json().get("jobs")) == ((200, []) if is_text(job_id) else (400, None))
    assert_unharmed(sd35_mock)
