"""Property-based tests of the client against the mock, in-process (``twin_mock_server``: the same app, no
socket): they are about the client and the mock's answers, not HTTP, which tests/client/test_client_mock_faults.py
and the other real-server modules keep covering.

Lifecycle timing is set through the control plane (``lifecycle: polls / manual``) and the client
runs on a virtual clock, so nothing here sleeps to wait for a job.
"""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, example, given, note, settings, strategies as st
from PIL import Image

from sd35_twin.client import GenerationRequest, InvalidRequestError, NotFoundError
from sd35_twin.client.models import FIELD_TYPES, FIELDS

pytestmark = pytest.mark.mock_only


@pytest.fixture(scope="module")
def mock_server(twin_mock_server):
    """This module's mock is the in-process twin (``mock`` follows it)."""
    return twin_mock_server

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: valid sizes under every variant too (multiples of 64 up to 1024; the default allows multiples of 8 to 1536)
SIZES = st.sampled_from([256, 320, 512, 768, 1024]) | st.integers(4, 16).map(lambda n: n * 64)
PROMPTS = st.text(min_size=1, max_size=60).filter(lambda s: s.strip())

valid_requests = st.builds(
    GenerationRequest,
    prompt=PROMPTS,
    negative_prompt=st.text(max_size=40),
    num_inference_steps=st.integers(1, 50),
    samples=st.integers(1, 2),
    guidance_scale=st.floats(0, 20) | st.integers(0, 20),
    width=SIZES,
    height=SIZES,
    direct_link=st.none() | st.booleans(),
    batch_id=st.none() | st.text(max_size=20),
    file_prefix=st.none() | st.from_regex(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]{0,12}\Z"),
    queued_image_urls=st.none() | st.booleans(),
)


def _examples(mock_server, n: int) -> int:
    """Hypothesis's budget: all of it on the baseline, a tenth (at least 4) under each --sd35-variants variant."""
    return n if mock_server.variant is None else max(4, n // 10)


def test_generate_returns_exactly_samples_images_of_the_requested_size(mock_server):
    settings(SETTINGS, max_examples=_examples(mock_server, 20))(
        given(req=valid_requests, polls=st.integers(0, 3))(_generate_returns_exactly_samples_images))(mock_server)


def _generate_returns_exactly_samples_images(mock_server, req, polls):
    ctl = mock_server.control
    mock_server.reset()
    ctl.configure(lifecycle="polls", pending_polls=polls)
    with mock_server.client() as api:
        seen = []
        done = api.generate(req, on_update=seen.append)
        assert done.is_success and done.id
        assert len(done.download_urls) == req.samples
        assert len(set(done.download_urls)) == req.samples
        assert done.batch_id in (req.batch_id, None)   # echoed, or not (a variant: input only)
        # done on the polls-th status read (at once when 0): no extra poll, none missed; a variant's
        # submit may answer SUCCESS at once, or PENDING even when the job is done
        states = [s.status.value for s in seen]
        assert states[-1] == "SUCCESS" and set(states[:-1]) <= {"PENDING"}, states
        finished = mock_server.profile().get("submit", {}).get("finished", "lifecycle")
        assert len(states) == {"always": 1, "never": max(polls, 1) + 1}.get(finished, polls + 1), states
        with tempfile.TemporaryDirectory() as tmp:
            paths = api.download(done, tmp)
            assert len(paths) == req.samples and len(set(paths)) == req.samples
            for path in paths:
                if req.direct_link and req.file_prefix:
                    assert path.name.startswith(req.file_prefix)
                with Image.open(path) as img:   # named by what it is, whatever the format assumed
                    assert img.size == (req.width, req.height)
                    assert path.suffix == {"PNG": ".png", "JPEG": ".jpg"}[img.format]
    jobs = ctl.jobs()
    assert [j["id"] for j in jobs] == [done.id]  # one job, billed once
    assert mock_server.posts() == 1


# --- invalid requests: the client refuses wrong types, the mock judges the rest --------------------

ANY_JSON = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
            | st.lists(st.integers(0, 3), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
#: type-correct values, many of them past the mock's limits (ranges, multiples of 8, lengths, patterns)
WHITESPACE = st.text(alphabet=st.characters(categories=["Zs", "Cc"]), max_size=4)
OF_ITS_TYPE = {
    "string": WHITESPACE | st.text(max_size=12) | st.text(min_size=120, max_size=136)
              | st.sampled_from(["a\n", ".a", "ftp://h/x", "http://", "http://h/ x", "https://h.test/hook"]),
    "integer": st.integers(-3, 2000) | st.sampled_from([2 ** 63, 10 ** 30]),
    "number": st.floats(-5, 30) | st.integers(-5, 30) | st.sampled_from([10 ** 400, -10 ** 400]),
    "boolean": st.booleans(),
}
ANY_VALUE = {name: OF_ITS_TYPE[kind] | ANY_JSON for name, kind in FIELD_TYPES.items()}

changes_strategy = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: ANY_VALUE[n] for n in names})
)

BASE_REQUEST = GenerationRequest("a lighthouse at dusk", negative_prompt="blurry", samples=1, width=256, height=256)


def _rules(errors) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for e in errors:
        found.setdefault(e["field"], set()).add(e["rule"])
    return found


def test_the_client_refuses_only_what_the_mock_refuses_too(mock_server):
    """For any mix of values: what the client refuses (a missing field, a wrong JSON type) never
    reaches the mock, and the mock refuses it too, with the same rule on the same field; anything
    else is sent, and the mock either makes one job or its 400 (or 422) comes back naming changed fields."""
    settings(SETTINGS, max_examples=_examples(mock_server, 150))(
        given(changes=changes_strategy)(_client_refuses_only_what_the_mock_refuses))(mock_server)


def _client_refuses_only_what_the_mock_refuses(mock_server, changes):
    req = BASE_REQUEST.replace(**changes)
    ctl = mock_server.control
    mock_server.reset()
    ctl.configure(lifecycle="manual")
    api = mock_server.client()
    problems = req.problems()
    note(f"changes: {changes!r}")
    note(f"client says: {problems}")
    if problems:
        with pytest.raises(InvalidRequestError) as refused:
            api.submit(req)
        assert refused.value.client_side
        assert set(refused.value.fields) == {p["field"] for p in problems}
        assert mock_server.posts() == 0  # nothing was sent
        with pytest.raises(InvalidRequestError) as server_refused:
            api.submit(req, validate=False)
        mock_rules = _rules(server_refused.value.errors)
        for p in problems:
            assert p["rule"] in mock_rules.get(p["field"], ()), (p, mock_rules)
        assert ctl.jobs() == []
        return
    try:
        api.submit(req)
    except InvalidRequestError as exc:
        note(f"mock says: {exc.errors}")
        assert exc.status_code in (400, 422) and not exc.client_side
        assert exc.fields and set(exc.fields) <= set(changes)  # the base request is valid
        assert ctl.jobs() == []  # an invalid request creates no job
    else:
        assert len(ctl.jobs()) == 1
    assert mock_server.posts() == 1


#: type-correct values the mock refuses, one field at a time (the page: samples max 2, or 4 in its text;
#: guidance max 20)
OUT_OF_LIMITS = [
    ("prompt", ""), ("prompt", " \t"), ("negative_prompt", "x" * 10_001), ("num_inference_steps", 0),
    ("samples", 5), ("guidance_scale", 20.5), ("guidance_scale", -1), ("width", 1001), ("height", 8),
    ("webhook", "ftp://h.test/x"), ("batch_id", "b" * 129), ("file_prefix", ".hidden"),
]


@pytest.mark.parametrize("name, value", OUT_OF_LIMITS, ids=[f"{n}={str(v)[:8]!r}" for n, v in OUT_OF_LIMITS])
def test_a_value_past_a_limit_is_sent_and_the_mocks_400_names_it(mock, name, value):
    with pytest.raises(InvalidRequestError) as refused:
        mock.client().submit(BASE_REQUEST.replace(**{name: value}))
    err = refused.value
    assert err.status_code in (400, 422) and not err.client_side
    assert err.fields == (name,) and err.errors[0]["rule"] not in ("type", "required")
    assert mock.posts() == 1 and mock.control.jobs() == []


def _mock_redirects(job_id: str) -> bool:
    """Known mock bug (reported): an id starting with "/" is answered 308 (an HTML redirect to
    another id) by Werkzeug's merge_slashes, instead of a JSON 404."""
    return job_id.startswith("/")


@SETTINGS
@given(job_id=st.text(min_size=1, max_size=40).filter(lambda s: not _mock_redirects(s)))
@example("a/b")
@example("a//b")
@example("%2F..%2F")
@example("a\nb")
@example("?x#y")
@example("\u00e9\u00e8")
def test_any_unknown_job_id_is_not_found(mock_server, job_id):
    """Ids are sent as one path segment, whatever they contain ("/", "?", "%", unicode, ...)."""
    api = mock_server.client()
    if job_id.strip(".") == "":
        with pytest.raises(InvalidRequestError):
            api.status(job_id)
        return
    with pytest.raises(NotFoundError) as info:
        api.status(job_id)
    assert info.value.status_code == 404 and info.value.job_id == job_id


def test_an_id_starting_with_a_slash_is_not_found(mock):
    """The mock once redirected "/0" to job "0" (Werkzeug's merge_slashes); it must be a JSON 404."""
    with pytest.raises(NotFoundError) as info:
        mock.client().status("/0")
    assert info.value.status_code == 404


# --- a state machine: submit / poll / force-complete / force-fail / faults -----------------------

from hypothesis.stateful import (  # noqa: E402
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sd35_twin.client import (  # noqa: E402
    ConnectionLostError,
    ImagePipelineError,
    JobFailedError,
    ServerError,
    UnexpectedResponseError,
    WaitTimeoutError,
)

#: faults on the submit POST and what the client must do: None = recover (and create one job),
#: else the error it must raise without repeating the POST
SUBMIT_FAULTS = [
    ({"type": "status", "status": 429, "retry_after": 1}, None),
    ({"type": "status", "status": 503}, None),
    ({"type": "latency", "ms": 15}, None),
    ({"type": "status", "status": 500}, ServerError),
    ({"type": "status", "status": 502}, ServerError),
    ({"type": "drop"}, ConnectionLostError),
    ({"type": "malformed"}, UnexpectedResponseError),
]
#: a status GET recovers from every one of them
STATUS_FAULTS = [
    {"type": "status", "status": 429, "retry_after": 1},
    {"type": "status", "status": 500},
    {"type": "status", "status": 503},
    {"type": "drop"},
    {"type": "malformed"},
    {"type": "latency", "ms": 15},
]


class ClientAgainstMock(RuleBasedStateMachine):
    """The model: every job the client learned of, with the state it must have on the mock.

    Lifecycle ``manual``: only the control plane finishes a job, so the model is exact.
    """

    server = None  # set by the test below (a RuleBasedStateMachine cannot take fixtures)
    new_clock = None
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.ctl = self.server.control
        self.server.reset()
        self.ctl.configure(lifecycle="manual")
        self.clock = type(self).new_clock()
        self.api = self.server.client(self.clock)
        self.model: dict[str, tuple] = {}  # id -> ("PENDING",) | ("SUCCESS", urls) | ("FAILURE", error)
        self.faults: dict[str, tuple[dict, type | None]] = {}  # endpoint -> injected, not yet consumed
        self.ambiguous = 0  # submits that failed after the request may have arrived

    def teardown(self) -> None:
        self.api.close()

    def _check(self, job: str, got) -> None:
        expected = self.model[job]
        assert got.id == job and got.status.value == expected[0], (got, expected)
        if expected[0] == "SUCCESS":
            assert got.download_urls == expected[1]  # terminal: the same URLs every time
        if expected[0] == "FAILURE":
            assert got.error == expected[1]

    def _consume_status_fault(self) -> dict | None:
        injected = self.faults.pop("status", None)
        return injected[0] if injected else None

    @rule(target=jobs, samples=st.integers(1, 2), batch=st.sampled_from([None, "a", "b"]))
    def submit(self, samples, batch):
        fault, expected = self.faults.pop("submit", (None, None))
        before = len(self.clock.sleeps)
        try:
            got = self.api.submit(prompt="state machine", samples=samples, width=256, height=256, batch_id=batch)
        except ImagePipelineError as exc:
            assert expected is not None and isinstance(exc, expected), (fault, exc)
            self.ambiguous += 1
            return multiple()
        assert expected is None, (fault, got)
        if fault and fault.get("retry_after"):
            assert self.clock.sleeps[before:] == [float(fault["retry_after"])]
        assert got.id not in self.model and got.batch_id in (batch, None)
        if got.is_success:     # a variant: the submit answers a finished job
            self.model[got.id] = ("SUCCESS", got.download_urls)
        else:
            assert got.is_pending
            self.model[got.id] = ("PENDING",)
        return got.id

    @rule(job=jobs)
    def poll(self, job):
        fault = self._consume_status_fault()
        before = len(self.clock.sleeps)
        self._check(job, self.api.status(job))
        if fault and fault.get("retry_after"):
            assert self.clock.sleeps[before:] == [float(fault["retry_after"])]

    @rule(job=jobs)
    def wait_a_little(self, job):
        self._consume_status_fault()
        expected = self.model[job]
        if expected[0] == "PENDING":
            with pytest.raises(WaitTimeoutError) as info:
                self.api.wait(job, timeout=4)
            self._check(job, info.value.last_status)
        elif expected[0] == "SUCCESS":
            self._check(job, self.api.wait(job, timeout=4))
        else:
            with pytest.raises(JobFailedError) as failed:
                self.api.wait(job, timeout=4)
            assert failed.value.job_id == job and failed.value.error == expected[1]

    @rule(job=jobs)
    def force_complete(self, job):
        resp = self.ctl.request("POST", f"/jobs/{job}/complete")
        if self.model[job][0] != "PENDING":
            assert resp.status_code == 409  # terminal states never change
            return
        assert resp.status_code == 200, resp.text
        self.model[job] = ("SUCCESS", tuple(resp.json()["body"]["download_urls"]))

    @rule(job=jobs, error=st.text(min_size=1, max_size=30))
    def force_fail(self, job, error):
        resp = self.ctl.request("POST", f"/jobs/{job}/fail", json={"error": error})
        if self.model[job][0] != "PENDING":
            assert resp.status_code == 409
            return
        assert resp.status_code == 200, resp.text
        self.model[job] = ("FAILURE", error)

    @precondition(lambda self: len(self.faults) < 2)
    @rule(data=st.data())
    def inject_fault(self, data):
        endpoint = data.draw(st.sampled_from([e for e in ("submit", "status") if e not in self.faults]))
        if endpoint == "submit":
            fault, expected = data.draw(st.sampled_from(SUBMIT_FAULTS))
        else:
            fault, expected = data.draw(st.sampled_from(STATUS_FAULTS)), None
        self.ctl.fault(endpoint=endpoint, times=1, **fault)
        self.faults[endpoint] = (fault, expected)

    @rule(job_id=st.text(min_size=1, max_size=12).filter(lambda s: s.strip(".") and not _mock_redirects(s)))
    def poll_an_unknown_id(self, job_id):
        if job_id in self.model:
            return
        self._consume_status_fault()
        with pytest.raises(NotFoundError):
            self.api.status(job_id)

    @invariant()
    def nothing_is_lost_and_nothing_billed_twice(self):
        on_mock = {j["id"]: j["status"] for j in self.ctl.jobs()}
        assert set(self.model) <= set(on_mock)
        assert 0 <= len(on_mock) - len(self.model) <= self.ambiguous
        for job, expected in self.model.items():
            assert on_mock[job] == expected[0]


def test_state_machine_against_the_mock(mock_server, clock_factory):
    ClientAgainstMock.server = mock_server
    ClientAgainstMock.new_clock = clock_factory
    run_state_machine_as_test(ClientAgainstMock, settings=settings(
        max_examples=_examples(mock_server, 25), stateful_step_count=25 if mock_server.variant is None else 15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
