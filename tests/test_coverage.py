"""Assumption coverage (mockserver/coverage.py): every guessed ledger row has a mark in the mock's code, and for
each row a request that meets it marks it (in its journal entry's ``rows`` and in ``GET /__mock__/coverage``)
while a close request that does not leaves it unmarked. Over real HTTP, one server reset per case."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import requests

from sd35_twin import contracts
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.coverage import Coverage, collect, meet, stop_collecting
from sd35_twin.mockserver.server import serve
from sd35_twin.mockserver.testing import MockControl, WebhookReceiver
from sd35_twin.mockserver.variants import row_notes

# The repository, found through the installed contracts package rather than this file's place: a mutation run
# (docs/mutation.md) runs a copy of the tests from elsewhere, and must still read the real ledger and sources.
REPO = Path(contracts.__file__).resolve().parents[1]
LEDGER = json.loads((REPO / "contracts" / "ledger.json").read_text("utf-8"))["rows"]
KEY, OTHER = {"API-Key": "coverage-key"}, {"API-Key": "other-key"}
BODY = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 1.0}


def marked_rows() -> dict[str, list[str]]:
    """Every ``meet("Lxx")`` and ``_met("Lxx")`` call in the mock's code: row -> the files that mark it."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "mockserver").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in ("meet", "_met") and isinstance(node.args[0].value, str):
                    found.setdefault(node.args[0].value, []).append(str(path.relative_to(REPO)))
    return found


def test_every_assumed_row_has_a_mark_in_the_mocks_code():
    assumed = {r["id"] for r in LEDGER if "A" in (e.strip() for e in r["evidence"].split(","))}
    marks = marked_rows()
    assert assumed - set(marks) == set(), "assumed rows the mock never marks"
    assert set(row_notes()) - set(marks) == set(), "guessed rows (variants.json) the mock never marks"
    assert set(marks) <= {r["id"] for r in LEDGER}, "a mark names no ledger row"


def test_every_guessed_row_says_what_would_meet_it_and_the_risk():
    notes = row_notes()
    assumed = {r["id"] for r in LEDGER if "A" in (e.strip() for e in r["evidence"].split(","))}
    assert assumed <= set(notes)
    for row, note in notes.items():
        assert len(note["meet"]) > 20 and note["risk"].startswith("your suite never"), (row, note)


# -- the core, without HTTP ----------------------------------------------------------------------------------

def test_a_mark_outside_a_collecting_request_is_a_no_op_and_a_row_is_collected_once():
    meet("L05")                          # the control plane's requests collect nothing: no error either
    rows: list = []
    token = collect(rows)
    try:
        meet("L05")
        meet("L23")
        meet("L05")
    finally:
        stop_collecting(token)
    meet("L09")                          # after stop_collecting: not collected
    assert rows == ["L05", "L23"]


def test_coverage_counts_with_the_first_and_last_seq_and_a_mark_off_any_request_keeps_them():
    coverage = Coverage()
    assert coverage.report()["resets"] == 0 and coverage.report()["met"] == []
    coverage.met_off_request("L19")      # a webhook thread's mark first: no seq yet
    coverage.add(["L19", "L23"], seq=5)
    coverage.add(["L19"], seq=7)
    coverage.met_off_request("L19")
    coverage.add(["L19"], seq=9)
    met = {m["row"]: m for m in coverage.report()["met"]}
    assert met["L19"] == {"row": "L19", "count": 5, "first_seq": 5, "last_seq": 9}
    assert met["L23"] == {"row": "L23", "count": 1, "first_seq": 5, "last_seq": 5}


def test_a_row_never_met_says_what_would_meet_it_and_the_risk():
    never = {n["row"]: n for n in Coverage().report()["never_met"]}
    notes = row_notes()
    assert list(never) == list(notes)
    assert never["L22"] == {"row": "L22", "would_meet": notes["L22"]["meet"], "risk": notes["L22"]["risk"]}


# -- one server; each case resets it ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    config = MockConfig(lifecycle="immediate", seed=3, webhook_backoff=0.0, webhook_max_attempts=3)
    with serve(config) as running:
        yield running


@pytest.fixture
def mock(server):
    server.backend.reset()
    control = MockControl(server.url)
    control.server = server
    yield control
    control.close()


def submit(mock, body: dict | None = None, headers: dict | None = None, **fields) -> requests.Response:
    return requests.post(f"{mock.url}/sd3_5/v1", json={**BODY, **fields} if body is None else body,
                         headers=headers or KEY, timeout=10)


def status(mock, job_id: str, headers: dict | None = None) -> requests.Response:
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers=headers or KEY, timeout=10)


def download(url: str) -> requests.Response:
    return requests.get(url, timeout=30)


def webhook_case(fail_next: int):
    def run(mock):
        with WebhookReceiver() as hooks:
            hooks.fail_next = fail_next
            submit(mock, webhook=hooks.url)
            hooks.expect(1 + fail_next)
            mock.webhooks(wait=10)
    return run


def expired_download(mock, seconds: float):
    url = submit(mock).json()["download_urls"][0]
    mock.advance(seconds)
    return download(url)


def queued_download(mock, lifecycle: str):
    mock.configure(lifecycle=lifecycle)
    return download(submit(mock, queued_image_urls=True).json()["download_urls"][0])


def second_poll(mock, polls: int):
    mock.configure(lifecycle="polls", pending_polls=1)
    job_id = submit(mock).json()["id"]
    for _ in range(polls):
        status(mock, job_id)


def over_rate_limit(mock, submits: int):
    mock.configure(profile={"rate_limits": {"requests_per_minute": 1}})
    for _ in range(submits):
        submit(mock)


def spent_key(mock, balance: int):
    mock.configure(credits={KEY["API-Key"]: balance})
    submit(mock)


def posted(content_type: str | None):
    def run(mock):
        headers = dict(KEY, **({"Content-Type": content_type} if content_type else {}))
        requests.post(f"{mock.url}/sd3_5/v1", data=json.dumps(BODY), headers=headers, timeout=10)
    return run


# row -> (a case that meets it, a close case that does not)
CASES = {
    "L05": (lambda m: submit(m, samples=2), lambda m: submit(m, samples=1)),
    "L08": (lambda m: submit(m, width=512), lambda m: submit(m)),
    "L09": (lambda m: submit(m, num_inference_steps=51), lambda m: submit(m, num_inference_steps=49)),
    "L11": (lambda m: submit(m), lambda m: submit(m, samples=0)),
    "L15": (lambda m: (m.configure(lifecycle="manual"), submit(m)), lambda m: submit(m)),
    "L16": (lambda m: queued_download(m, "manual"), lambda m: queued_download(m, "immediate")),
    "L17": (lambda m: download(submit(m).json()["download_urls"][0]),
            lambda m: download(submit(m, direct_link=True).json()["download_urls"][0])),
    "L18": (lambda m: submit(m, batch_id="b-1"), lambda m: submit(m)),
    "L19": (webhook_case(fail_next=1), webhook_case(fail_next=0)),
    "L20": (lambda m: submit(m, seed=42), lambda m: submit(m, batch_id="documented")),
    "L21": (lambda m: status(m, submit(m).json()["id"], headers=OTHER), lambda m: status(m, submit(m).json()["id"])),
    "L22": (lambda m: expired_download(m, 3_601), lambda m: expired_download(m, 3_599)),
    "L23": (lambda m: submit(m, samples=99), lambda m: submit(m)),
    "L24": (lambda m: (m.configure(failure_rate=1.0), submit(m)), lambda m: submit(m)),
    "L25": (lambda m: submit(m, samples="1"), lambda m: submit(m, samples=1)),
    "L26": (lambda m: submit(m, prompt="x" * 1_100_000), lambda m: submit(m, prompt="x" * 1_000_000)),
    "L27": (lambda m: download(submit(m).json()["download_urls"][0]), lambda m: status(m, submit(m).json()["id"])),
    "L28": (lambda m: second_poll(m, 2), lambda m: second_poll(m, 1)),
    "L29": (lambda m: spent_key(m, 0), lambda m: spent_key(m, 5)),
    "L30": (lambda m: over_rate_limit(m, 2), lambda m: over_rate_limit(m, 1)),
    "L31": (webhook_case(fail_next=0), lambda m: submit(m)),
    "L32": (posted(None), posted("application/json")),
}
OFF_REQUEST = {"L19", "L31"}  # marked by the webhook dispatcher's thread: counted, in no journal entry


def test_every_guessed_row_has_a_case():
    assert set(CASES) == set(row_notes())


@pytest.mark.parametrize("row", sorted(CASES))
def test_a_request_that_meets_the_row_marks_it(mock, row):
    CASES[row][0](mock)
    met = {m["row"]: m for m in mock.coverage()["met"]}
    assert row in met, f"{row} not marked; met: {sorted(met)}"
    entries = [e for e in mock.journal() if row in e["rows"]]
    if row in OFF_REQUEST:
        assert met[row]["first_seq"] is None and not entries
    else:
        assert entries, f"no journal entry lists {row}"
        assert (met[row]["count"], met[row]["first_seq"], met[row]["last_seq"]) == (
            len(entries), entries[0]["seq"], entries[-1]["seq"])


@pytest.mark.parametrize("row", sorted(CASES))
def test_a_close_request_that_does_not_meet_the_row_leaves_it_unmarked(mock, row):
    CASES[row][1](mock)
    coverage = mock.coverage()
    assert row not in {m["row"] for m in coverage["met"]}
    never = {n["row"]: n for n in coverage["never_met"]}
    assert never[row]["would_meet"] == row_notes()[row]["meet"]
    assert all(row not in e["rows"] for e in mock.journal())


def test_coverage_counts_since_reset_and_the_control_plane_meets_nothing(mock):
    submit(mock, samples=99)
    submit(mock, samples=99)
    requests.patch(f"{mock.url}/__mock__/config", json={"lifecycle": "nope"}, timeout=10)  # a control refusal
    coverage = mock.coverage()
    l23 = next(m for m in coverage["met"] if m["row"] == "L23")
    assert l23["count"] == 2 and l23["first_seq"] < l23["last_seq"]
    resets = coverage["resets"]
    mock.reset()
    after = mock.coverage()
    assert after["met"] == [] and after["resets"] == resets + 1
    assert {n["row"] for n in after["never_met"]} == set(row_notes())
    assert mock.rows_met() == set()


def test_every_journal_entry_lists_its_rows(mock):
    submit(mock, batch_id="b")
    requests.get(f"{mock.url}/openapi.json", timeout=10)
    entries = mock.journal()
    assert [e["rows"] for e in entries] == [["L11", "L18"], []]


def test_a_download_past_the_default_lifetime_meets_l22_and_is_refused(mock):
    """L22 is met from the shortest lifetime a variant gives (1 h), and a download past the profile's own (24 h) is
    refused as well: a run that never meets L22 is one no L22 variant could change."""
    assert expired_download(mock, 86_401).status_code == 404
    assert expired_download(mock, 3_601).status_code == 200
    assert [m["count"] for m in mock.coverage()["met"] if m["row"] == "L22"] == [2]


@pytest.mark.parametrize("fails", [False, True], ids=["answered", "an unexpected error (500)"])
def test_a_request_stops_collecting_marks_when_it_ends_whatever_its_answer(fails, monkeypatch):
    """The request's list of marks is closed when its answer is journaled (the app's one after_request hook, which
    Flask runs for an error handler's answer too), so a later mark in the same thread goes nowhere."""
    from sd35_twin.mockserver.coverage import _ROWS
    from sd35_twin.mockserver.http import create_app, get_backend

    app = create_app(MockConfig(lifecycle="manual"))
    backend = get_backend(app)
    if fails:
        def broken(*_args, **_kwargs):
            meet("L15")
            raise RuntimeError("a bug")
        monkeypatch.setattr(backend, "status", broken)
    answer = app.test_client().get("/sd3_5/v1/status/x", headers=KEY)
    assert answer.status_code == (500 if fails else 404)
    assert _ROWS.get() is None
    [entry] = backend.journal.entries()
    assert entry["rows"] == (["L15"] if fails else ["L23"])  # the mark the route made; a refusal's status
