"""The plausible alternatives (``profiles/variants.json``): every assumed row has them or says why not, each
is a valid profile, and each really changes what a client sees, over HTTP. Plus the profile keys they need
and the status line's standard reason phrases."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests

from sd35_twin.mockserver.config import MockConfig, load_default_profile, load_profile
from sd35_twin.mockserver.server import serve
from sd35_twin.mockserver.variants import Variant, load_variants, rows_without_variants

REPO = Path(__file__).resolve().parents[1]
LEDGER = json.loads((REPO / "contracts" / "ledger.json").read_text("utf-8"))["rows"]
KEY = {"API-Key": "variants-key"}
BODY = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1.0}
VARIANTS = load_variants()


def assumed_rows() -> set[str]:
    """Rows whose evidence holds A, and L05, whose page contradicts itself."""
    return {r["id"] for r in LEDGER if "A" in (e.strip() for e in r["evidence"].split(","))} | {"L05"}


# -- the data ----------------------------------------------------------------------------------------------

def test_every_assumed_row_has_variants_or_says_why_not():
    with_variants = {v.row for v in VARIANTS}
    without = rows_without_variants()
    assert not with_variants & set(without), "a row has both variants and a 'none' reason"
    assert assumed_rows() - with_variants - set(without) == set()
    assert all(len(reason) > 40 for reason in without.values()), without


def test_every_row_named_is_a_ledger_row_and_ids_are_unique():
    ids = {r["id"] for r in LEDGER}
    assert {v.row for v in VARIANTS} | set(rows_without_variants()) <= ids
    assert len({v.id for v in VARIANTS}) == len(VARIANTS)
    assert all(v.evidence[:2] in ("A:", "D:", "O:", "S:") for v in VARIANTS), [v.evidence for v in VARIANTS]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_each_overlay_over_the_default_is_a_valid_profile_that_changes_it(variant: Variant):
    assert variant.profile
    assert load_profile(overrides=variant.profile) != load_default_profile()


def test_load_variants_filters_by_row_and_refuses_unknown_rows():
    assert {v.row for v in load_variants({"L15", "L23"})} == {"L15", "L23"}
    with pytest.raises(ValueError, match="L99"):
        load_variants({"L99"})


# -- what a client sees: each variant against the default, over HTTP ---------------------------------------

def submit(mock, body: object = None, **fields) -> requests.Response:
    return requests.post(f"{mock.url}/sd3_5/v1", json={**BODY, **fields} if body is None else body,
                         headers=KEY, timeout=10)


def poll(mock, job_id: str) -> requests.Response:
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers=KEY, timeout=10)


def lifecycle(mock, name: str, **settings) -> None:
    mock.backend.update_config({"lifecycle": name, **settings})


def see_limits(mock):
    """L05, L08, L09: which requests near the assumed bounds are accepted."""
    return tuple(submit(mock, **fields).status_code for fields in (
        {"samples": 4}, {"width": 1032}, {"width": 1536, "height": 1536}, {"num_inference_steps": 100}))


def see_submit_outcome(mock):
    """L11: what the submit answers when the lifecycle has the job done at once, and when it does not; and
    the first poll of the second."""
    lifecycle(mock, "immediate")
    done_at_once = submit(mock).json()["status"]
    lifecycle(mock, "polls", pending_polls=1)
    later = submit(mock).json()
    return done_at_once, later["status"], poll(mock, later["id"]).json()["status"]


def see_pending_codes(mock):
    """L15: the HTTP status of a PENDING from the submit, and from a poll."""
    lifecycle(mock, "polls", pending_polls=2)
    submitted = submit(mock)
    polled = poll(mock, submitted.json()["id"])
    assert polled.json()["status"] == "PENDING"
    return submitted.status_code, polled.status_code, poll(mock, submitted.json()["id"]).status_code


def see_queued_download(mock):
    """L16: a queued URL read before the job is done."""
    lifecycle(mock, "manual")
    url = submit(mock, queued_image_urls=True).json()["download_urls"][0]
    return requests.get(url, timeout=10).status_code


def see_opaque_image(mock):
    """L17: what an opaque download URL serves."""
    lifecycle(mock, "immediate")
    answer = requests.get(submit(mock).json()["download_urls"][0], timeout=30)
    return answer.status_code, answer.headers["Content-Type"], answer.content[:4]


def see_batch_id(mock):
    """L18: whether a job's body carries the batch_id sent."""
    lifecycle(mock, "immediate")
    return sorted(submit(mock, batch_id="b-1").json())


def see_unknown_field(mock):
    """L20: a request with a field the page does not document."""
    answer = submit(mock, colour="red")
    return answer.status_code, [(e["field"], e["rule"]) for e in answer.json().get("errors", [])]


def see_expiry(mock):
    """L22: a download URL 1 h and 24 h after its job is done."""
    lifecycle(mock, "immediate")
    url = submit(mock).json()["download_urls"][0]
    codes = [requests.get(url, timeout=30).status_code]
    for seconds in (3_601, 86_400):
        mock.backend.advance_clock(seconds)
        codes.append(requests.get(url, timeout=30).status_code)
    return tuple(codes)


def see_rejection(mock):
    """L23: an invalid request's status and where its text is."""
    answer = submit(mock, samples=99)
    body = answer.json()
    text_keys = sorted(k for k in body if isinstance(body[k], str) and "samples" in body[k])
    return answer.status_code, text_keys, body["errors"][0]["field"]


def see_job_failure(mock):
    """L24: the keys of a failed job's body."""
    lifecycle(mock, "immediate", failure_rate=1.0)
    return sorted(submit(mock).json())


def see_no_credits(mock):
    """L29: a submit by a key whose credits are spent."""
    mock.backend.update_config({"credits": {KEY["API-Key"]: 0}})
    answer = submit(mock)
    return answer.status_code, answer.json()["status"]


def see_rate_limited(mock):
    """L30: a submit past a key's limit of one request per minute, and its Retry-After."""
    mock.backend.update_config({"profile": {"rate_limits": {"requests_per_minute": 1}}})
    submit(mock)
    answer = submit(mock)
    return answer.status_code, answer.headers.get("Retry-After"), answer.json()["errors"][0]["rule"]


def see_body_too_large(mock):
    """L26: a body over the 1 MiB cap."""
    return submit(mock, {**BODY, "prompt": "x" * (1_100_000)}).status_code


def see_content_type(mock):
    """L32: a JSON body sent with no Content-Type, as text/plain, as a form type, and as JSON; and the field the
    first answer's errors name."""
    raw = json.dumps(BODY)
    answers = [requests.post(f"{mock.url}/sd3_5/v1", data=raw, headers={**KEY, **extra}, timeout=10)
               for extra in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                             {"Content-Type": "application/json; charset=utf-8"})]
    named = [e["field"] for e in answers[0].json().get("errors", [])]
    return (*(a.status_code for a in answers), named)


SEE = {"L05": see_limits, "L08": see_limits, "L09": see_limits, "L11": see_submit_outcome,
       "L15": see_pending_codes, "L16": see_queued_download, "L17": see_opaque_image, "L18": see_batch_id,
       "L20": see_unknown_field, "L22": see_expiry, "L23": see_rejection, "L24": see_job_failure,
       "L26": see_body_too_large, "L29": see_no_credits,
       "L30": see_rate_limited, "L32": see_content_type}

# What each variant shows where the default showed BASELINE[row].
BASELINE = {"L05": (400, 200, 200, 400), "L11": ("SUCCESS", "PENDING", "SUCCESS"), "L15": (200, 200, 200),
            "L16": 404, "L17": (200, "image/jpeg", b"\xff\xd8\xff\xe0"), "L18": ["batch_id", "download_urls", "id", "status"],
            "L20": (200, []), "L22": (200, 200, 404), "L23": (400, ["error"], "samples"),
            "L24": ["error", "id", "status"], "L26": 413, "L29": (402, "FAILURE"),
            "L30": (429, "60", "rate_limit"), "L32": (200, 200, 200, 200, [])}
BASELINE["L08"] = BASELINE["L09"] = BASELINE["L05"]
EXPECTED = {
    "L05:samples<=4": (200, 200, 200, 400),
    "L08:size%64": (400, 400, 200, 400),
    "L08:size<=1024": (400, 400, 400, 400),
    "L09:steps<=100": (400, 200, 200, 200),
    "L11:submit=SUCCESS": ("SUCCESS", "SUCCESS", "SUCCESS"),
    "L11:submit=PENDING": ("PENDING", "PENDING", "SUCCESS"),
    "L15:submit=202": (202, 200, 200),
    "L15:poll=202": (200, 202, 200),
    "L16:not-ready=403": 403,
    "L17:opaque=png": (200, "image/png", b"\x89PNG"),
    "L18:no-batch_id-echo": ["download_urls", "id", "status"],
    "L20:reject-unknown-fields": (400, [("colour", "unknown")]),
    "L22:expired=403": (200, 200, 403),
    "L22:expired=410": (200, 200, 410),
    "L22:ttl=1h": (200, 404, 404),
    "L23:invalid=422": (422, ["error"], "samples"),
    "L23:text=message": (400, ["message"], "samples"),
    "L23:text=detail": (400, ["detail"], "samples"),
    "L23:fastapi": (422, ["detail"], "samples"),
    "L24:failure-without-id": ["error", "status"],
    "L26:too-large=400": 400,
    "L30:rate_limited=503": (503, "60", "rate_limit"),
    "L32:content-type=415": (415, 415, 415, 200, ["Content-Type"]),
    "L32:content-type=400": (400, 400, 400, 200, ["Content-Type"]),
    "L32:content-type=422": (422, 422, 422, 200, ["Content-Type"]),
}


def running(profile_overrides: dict | None = None):
    return serve(MockConfig(profile=load_profile(overrides=profile_overrides), lifecycle="polls", pending_polls=1,
                            failure_rate=0.0, seed=7))


@pytest.fixture(scope="module")
def baseline():
    """What the default profile shows, per row: one server, reset before each row."""
    seen = {}
    with running() as mock:
        for row, see in SEE.items():
            mock.backend.reset()
            seen[row] = see(mock)
    return seen


def test_the_baseline_is_what_the_default_profile_promises(baseline):
    assert baseline == BASELINE


def test_every_variant_has_a_probe_and_an_expectation():
    assert {v.row for v in VARIANTS} <= set(SEE)
    assert set(EXPECTED) <= {v.id for v in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_each_variant_changes_what_a_client_sees(variant: Variant, baseline):
    with running(variant.profile) as mock:
        seen = SEE[variant.row](mock)
    assert seen != baseline[variant.row]
    assert seen == EXPECTED.get(variant.id, seen)


# -- the new keys, one by one --------------------------------------------------------------------------------

def test_the_old_pending_key_sets_both_pending_codes_unless_they_are_named():
    codes = load_profile(overrides={"http_status": {"pending": 202}})["http_status"]
    assert (codes["submit_pending"], codes["poll_pending"]) == (202, 202) and "pending" not in codes
    codes = load_profile(overrides={"http_status": {"pending": 202, "poll_pending": 200}})["http_status"]
    assert (codes["submit_pending"], codes["poll_pending"]) == (202, 200)


def test_the_old_pending_key_over_http_and_in_the_openapi_document():
    with running({"http_status": {"pending": 202}}) as mock:
        lifecycle(mock, "polls", pending_polls=2)
        submitted = submit(mock)
        assert (submitted.status_code, poll(mock, submitted.json()["id"]).status_code) == (202, 202)
    with running({"http_status": {"submit_pending": 202, "poll_pending": 203}}) as mock:
        paths = requests.get(f"{mock.url}/openapi.json", timeout=10).json()["paths"]
        assert "202" in paths["/sd3_5/v1"]["post"]["responses"] and "203" not in paths["/sd3_5/v1"]["post"]["responses"]
        assert "203" in paths["/sd3_5/v1/status/{id}"]["get"]["responses"]


@pytest.mark.parametrize("overrides, field", [
    ({"submit": {"finished": "sometimes"}}, "profile.submit.finished"),
    ({"submit": {"finish": "always"}}, "profile.submit.finish"),
    ({"rejection_text_key": "msg"}, "profile.rejection_text_key"),
    ({"reject_unknown_fields": "yes"}, "profile.reject_unknown_fields"),
    ({"http_status": {"submit_pending": 204}}, "profile.http_status.submit_pending"),
])
def test_a_bad_value_of_a_new_key_is_refused_by_name(overrides, field):
    from sd35_twin.mockserver.errors import InvalidRequest
    with pytest.raises(InvalidRequest) as caught:
        load_profile(overrides=overrides)
    assert field in {e.field for e in caught.value.errors}


def test_submit_finished_always_answers_a_planned_failure_at_once():
    with running({"submit": {"finished": "always"}}) as mock:
        lifecycle(mock, "manual", failure_rate=1.0)
        answer = submit(mock)
        assert (answer.status_code, answer.json()["status"]) == (200, "FAILURE")
        assert poll(mock, answer.json()["id"]).json()["status"] == "FAILURE"


def test_the_rejection_text_key_moves_every_refusal_of_the_api_but_not_the_control_planes():
    with running({"rejection_text_key": "detail"}) as mock:
        unknown = poll(mock, "no-such-job")
        no_key = requests.post(f"{mock.url}/sd3_5/v1", json=BODY, timeout=10)
        no_route = requests.get(f"{mock.url}/sd3_5/v2", timeout=10)
        for answer in (unknown, no_key, no_route):
            assert "detail" in answer.json() and "error" not in answer.json() and answer.json()["errors"]
        control = requests.patch(f"{mock.url}/__mock__/config", json={"lifecycle": "x"}, timeout=10)
        assert control.status_code == 400 and "error" in control.json()
        failure = requests.get(f"{mock.url}/openapi.json", timeout=10).json()["components"]["schemas"]["Failure"]
        assert failure["required"] == ["status", "detail"]


def test_reject_unknown_fields_names_each_and_closes_the_published_schema():
    with running({"reject_unknown_fields": True}) as mock:
        answer = submit(mock, colour="red", size="big", samples=99)
        assert answer.status_code == 400
        assert [(e["field"], e["rule"]) for e in answer.json()["errors"]] == [
            ("samples", "maximum"), ("colour", "unknown"), ("size", "unknown")]
        schema = requests.get(f"{mock.url}/openapi.json", timeout=10).json()["components"]["schemas"]
        assert schema["GenerationRequest"]["additionalProperties"] is False
        assert submit(mock).status_code == 200  # the page's own fields are all still known
        assert submit(mock, webhook="http://127.0.0.1:9/x", direct_link=True, batch_id="b", file_prefix="p",
                      queued_image_urls=True, width=512, height=512).status_code == 200


# -- reason phrases: what the status line says, byte for byte ------------------------------------------------

def status_line(mock, request: bytes) -> bytes:
    host, port = mock.url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def raw_post(body: bytes, key: bytes = b"API-Key: variants-key\r\n") -> bytes:
    return (b"POST /sd3_5/v1 HTTP/1.1\r\nHost: x\r\n" + key + b"Content-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def test_every_answer_has_the_standard_reason_phrase():
    profile = {"http_status": {"submit_pending": 202, "invalid": 422, "image_not_ready": 299}}
    with running(profile) as mock:
        lifecycle(mock, "manual")
        job = submit(mock, queued_image_urls=True).json()
        get = lambda path: f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        assert status_line(mock, raw_post(json.dumps(BODY).encode())) == b"HTTP/1.1 202 Accepted"
        assert status_line(mock, raw_post(b'{"samples": 99}')) == b"HTTP/1.1 422 Unprocessable Entity"
        assert status_line(mock, raw_post(b"{}", key=b"")) == b"HTTP/1.1 401 Unauthorized"
        assert status_line(mock, get("/nowhere")) == b"HTTP/1.1 404 Not Found"
        assert status_line(mock, get("/openapi.json")) == b"HTTP/1.1 200 OK"
        assert status_line(mock, get("/__mock__/health")) == b"HTTP/1.1 403 Forbidden"  # Host x: the guard
        path = job["download_urls"][0].split(mock.url, 1)[1]
        assert status_line(mock, get(path)) == b"HTTP/1.1 299 Success"  # no registered phrase: its class's
        assert status_line(mock, get("/sd3_5/v1")) == b"HTTP/1.1 405 Method Not Allowed"
        # an answer a fault puts in place of the handled one, after the app's hooks ran
        mock.backend.faults.add({"type": "status", "status": 503, "phase": "after", "endpoint": "submit"})
        assert status_line(mock, raw_post(json.dumps(BODY).encode())) == b"HTTP/1.1 503 Service Unavailable"
