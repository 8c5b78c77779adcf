"""One set of rules for every control-plane list, a journal that names the job a request made whatever happened
to its answer (one JSON type per field), and health checks that are not traffic (issue 21)."""

import json

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sd35_twin.mockserver.http.control import QUERY_PARAMETERS
from sd35_twin.mockserver.journal import FILTERS

KEY_A, KEY_B = {"API-Key": "key-of-test-a"}, {"API-Key": "key-of-test-b"}


def ctl(mock, method, path, body=None, **params):
    return requests.request(method, f"{mock.url}/__mock__{path}", json=body, params=params or None, timeout=10)


def submit(mock, request, headers=KEY_A):
    return requests.post(f"{mock.url}/sd3_5/v1", json=request, headers=headers, timeout=10)


# Every GET of the control plane that answers JSON, with the parameters it takes (the rest take none).
LISTS = ["/jobs", "/journal", "/journal/counts", "/webhooks", "/faults", "/rules", "/config", "/credits",
         "/rate-limits", "/stats", "/health"]


def taken_by(path: str) -> tuple[str, ...]:
    """The parameters the control endpoint at ``path`` takes (its Flask endpoint's entry)."""
    endpoint = {"/jobs": "list_jobs", "/journal/counts": "journal_counts", "/rate-limits": "rate_limits"}
    return QUERY_PARAMETERS.get("control." + endpoint.get(path, path.strip("/")), ())


@pytest.mark.parametrize("path", LISTS)
def test_an_unknown_query_parameter_is_a_400_naming_it_on_every_list(sd35_mock, path):
    answer = ctl(sd35_mock, "GET", path, bogus="1")
    assert answer.status_code == 400, (path, answer.text)
    [error] = answer.json()["errors"]
    assert (error["field"], error["rule"]) == ("bogus", "unknown")
    taken = taken_by(path)
    assert error["message"].endswith(("one of " + ", ".join(taken)) if taken else "it takes none"), error
    for name in taken:  # each one it takes, given twice, is refused too
        twice = requests.get(f"{sd35_mock.url}/__mock__{path}?{name}=1&{name}=2", timeout=10)
        assert twice.status_code == 400 and twice.json()["errors"][0] == {
            "field": name, "rule": "single", "message": "must be given once"}, twice.text


def test_changes_refuse_a_query_parameter_too_and_nothing_changes(sd35_mock, valid_request):
    submit(sd35_mock, valid_request)
    answer = requests.post(f"{sd35_mock.url}/__mock__/reset?keep=jobs", timeout=10)
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "keep"
    assert len(ctl(sd35_mock, "GET", "/jobs").json()["jobs"]) == 1
    assert requests.get(f"{sd35_mock.url}/__mock__/nowhere?x=1", timeout=10).status_code == 404  # not a 400


def test_the_journal_takes_every_filter_it_documents(sd35_mock):
    assert set(QUERY_PARAMETERS["control.journal"]) == {"limit", *FILTERS}
    assert ctl(sd35_mock, "GET", "/journal", key="zzz").json() == {"requests": []}


def test_jobs_filter_by_key_compared_in_the_mock_and_shown_redacted(sd35_mock, valid_request):
    a = submit(sd35_mock, valid_request, KEY_A).json()["id"]
    b = submit(sd35_mock, dict(valid_request, batch_id="b1"), KEY_B).json()["id"]
    assert [j["id"] for j in ctl(sd35_mock, "GET", "/jobs").json()["jobs"]] == [b, a]
    mine = ctl(sd35_mock, "GET", "/jobs", key=KEY_A["API-Key"]).json()["jobs"]
    assert [j["id"] for j in mine] == [a] and mine[0]["owner_key"] == "***"
    assert KEY_A["API-Key"] not in json.dumps(mine)
    assert ctl(sd35_mock, "GET", "/jobs", key="zzz").json()["jobs"] == []  # was: every job
    assert [j["id"] for j in ctl(sd35_mock, "GET", "/jobs", key=KEY_B["API-Key"], batch_id="b1").json()["jobs"]] == [b]
    assert ctl(sd35_mock, "GET", "/jobs", key=KEY_A["API-Key"], batch_id="b1").json()["jobs"] == []
    for name in ("key", "batch_id"):
        empty = ctl(sd35_mock, "GET", "/jobs", **{name: ""})
        assert empty.status_code == 400 and empty.json()["errors"][0]["field"] == name
    assert ctl(sd35_mock, "GET", "/webhooks", job_id="").status_code == 400
    assert sd35_mock.jobs(key=KEY_B["API-Key"])[0]["id"] == b  # the Python control client passes it through


@pytest.mark.parametrize("fault", [
    {"type": "drop", "phase": "after"},
    {"type": "malformed", "phase": "after"},
    {"type": "status", "status": 503, "phase": "after"},
    {"type": "latency", "ms": 1, "phase": "after"},
])
def test_the_journal_names_the_job_a_submit_made_whatever_happened_to_its_answer(sd35_mock, valid_request, fault):
    assert ctl(sd35_mock, "POST", "/faults", dict(fault, endpoint="submit")).status_code == 201
    try:
        submit(sd35_mock, valid_request)
    except requests.ConnectionError:
        assert fault["type"] == "drop"
    [job] = ctl(sd35_mock, "GET", "/jobs").json()["jobs"]
    [entry] = sd35_mock.requests(kind="submit")
    assert entry["job_id"] == job["id"] and entry["fault"].startswith(fault["type"])
    assert sd35_mock.requests(job_id=job["id"]) == [entry]  # found without a batch_id


def test_a_submit_that_made_no_job_has_no_job_id(sd35_mock, valid_request):
    ctl(sd35_mock, "POST", "/faults", {"type": "drop", "endpoint": "submit"})  # before: nothing is created
    with pytest.raises(requests.ConnectionError):
        submit(sd35_mock, valid_request)
    submit(sd35_mock, dict(valid_request, samples=9))
    assert [("job_id" in e, e["status"]) for e in sd35_mock.requests(kind="submit")] == [(False, 200), (False, 400)]
    assert ctl(sd35_mock, "GET", "/jobs").json()["jobs"] == []


def test_a_download_names_its_job_served_or_not(sd35_mock, valid_request):
    ctl(sd35_mock, "PATCH", "/config", {"lifecycle": "manual"})
    job = submit(sd35_mock, dict(valid_request, queued_image_urls=True)).json()
    assert requests.get(job["download_urls"][0], timeout=10).status_code == 404  # not ready: the job is PENDING
    ctl(sd35_mock, "POST", f"/jobs/{job['id']}/complete")
    assert requests.get(job["download_urls"][0], timeout=10).status_code == 200
    sd35_mock.advance(2 * 86_400)
    assert requests.get(job["download_urls"][0], timeout=10).status_code == 404  # expired
    assert requests.get(job["download_urls"][0] + "x", timeout=10).status_code == 404  # no such image: no job
    downloads = sd35_mock.requests(kind="download")
    assert [e.get("job_id") for e in downloads] == [job["id"]] * 3 + [None]


def test_retry_after_is_a_number_of_seconds_as_rules_and_faults_take_it(sd35_mock, valid_request):
    ctl(sd35_mock, "POST", "/faults", {"type": "status", "status": 429, "retry_after": 1, "endpoint": "submit"})
    assert submit(sd35_mock, valid_request).headers["Retry-After"] == "1"
    [entry] = sd35_mock.requests(kind="submit")
    assert entry["retry_after"] == 1 and type(entry["retry_after"]) is int
    submit(sd35_mock, valid_request)
    assert "retry_after" not in sd35_mock.requests(kind="submit")[-1]


def test_health_checks_are_answered_but_not_journaled_or_counted(sd35_mock):
    for _ in range(3):
        answer = requests.get(f"{sd35_mock.url}/healthz", timeout=10)
        assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert requests.head(f"{sd35_mock.url}/healthz", timeout=10).status_code == 200
    requests.get(f"{sd35_mock.url}/openapi.json", timeout=10)  # an app's own request: journaled as before
    assert [e["path"] for e in sd35_mock.requests()] == ["/openapi.json"]
    assert sd35_mock.counts()["total"] == 1


def test_health_checks_answer_without_a_control_plane_and_with_a_token():
    from sd35_twin.mockserver.config import MockConfig
    from sd35_twin.mockserver.server import serve

    for config in (MockConfig(control_plane=False), MockConfig(control_token="t0ken")):
        with serve(config) as mock:
            assert requests.get(f"{mock.url}/healthz", timeout=10).json() == {"ok": True}
            assert len(mock.backend.journal) == 0 and mock.backend.journal.counts()["total"] == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(LISTS),
       name=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20))
def test_any_parameter_an_endpoint_does_not_take_is_refused_by_name(sd35_mock_server, path, name):
    assume(name not in taken_by(path))
    answer = requests.get(f"{sd35_mock_server.url}/__mock__{path}", params={name: "x"}, timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == name
