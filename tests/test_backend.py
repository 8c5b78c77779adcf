"""The mock's core without HTTP: lifecycle modes, terminal states, key isolation, bounds, controls."""

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from sd35_twin.mockserver.backend import MockBackend
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.errors import Conflict, ImageExpired, ImageNotReady, InvalidRequest, NotFound, Unauthorized
from tests.strategies import valid_requests

BASE = "http://mock.test/"
REQ = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 2, "guidance_scale": 0.0,
       "width": 256, "height": 256}


@pytest.fixture
def make_backend():
    made = []

    def make(**config):
        config.setdefault("webhook_backoff", 0.0)
        backend = MockBackend(MockConfig(**config))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_immediate_answers_success_at_submit(make_backend):
    body = make_backend(lifecycle="immediate").submit("k", REQ, BASE)
    assert body.status == "SUCCESS" and len(body.download_urls) == 2
    assert all(url.startswith("http://mock.test/files/") for url in body.download_urls)


def test_seconds_lifecycle_follows_the_clock(make_backend):
    backend = make_backend(lifecycle="seconds", pending_seconds=30)
    job = backend.submit("k", REQ, BASE)
    assert job.body(backend.profile) == {"status": "PENDING", "id": job.id}
    backend.advance_clock(29.9)
    assert backend.status("k", job.id).status == "PENDING"
    backend.advance_clock(0.2)
    assert backend.status("k", job.id).status == "SUCCESS"


def test_seconds_lifecycle_finishes_unpolled_jobs_for_webhooks(make_backend):
    backend = make_backend(lifecycle="seconds", pending_seconds=5)
    job = backend.submit("k", dict(REQ, webhook="http://127.0.0.1:9/none"), BASE)
    backend.advance_clock(6)  # no status poll: the tick finishes it
    assert backend.job(job.id).status == "SUCCESS"
    backend.webhooks.wait_idle()
    assert backend.webhooks.records(job.id)[0]["url"] == "http://127.0.0.1:9/none"


@pytest.mark.parametrize("polls", [0, 1, 3])
def test_polls_lifecycle_finishes_on_the_nth_poll(make_backend, polls):
    backend = make_backend(lifecycle="polls", pending_polls=polls)
    body = backend.submit("k", REQ, BASE)
    seen = [body.status] + [backend.status("k", body.id).status for _ in range(4)]
    assert seen == ["PENDING"] * polls + ["SUCCESS"] * (5 - polls) if polls else seen == ["SUCCESS"] * 5


def test_manual_lifecycle_waits_for_the_control_plane(make_backend):
    backend = make_backend(lifecycle="manual")
    job = backend.submit("k", REQ, BASE)
    backend.advance_clock(10**6)
    assert [backend.status("k", job.id).status for _ in range(3)] == ["PENDING"] * 3
    backend.force(job.id, "FAILURE", "GPU on fire")
    assert backend.status("k", job.id).body(backend.profile) == {"status": "FAILURE", "id": job.id, "error": "GPU on fire"}


def test_terminal_states_never_change(make_backend):
    backend = make_backend(lifecycle="manual")
    ok, bad = backend.submit("k", REQ, BASE), backend.submit("k", REQ, BASE)
    backend.force(ok.id, "SUCCESS")
    backend.force(bad.id, "FAILURE", "nope")
    for job_id in (ok.id, bad.id):
        before = backend.status("k", job_id).body(backend.profile)
        for status in ("SUCCESS", "FAILURE"):
            with pytest.raises(Conflict):
                backend.force(job_id, status, "again")
        backend.update_config({"lifecycle": "immediate", "failure_rate": 1.0})
        assert backend.status("k", job_id).body(backend.profile) == before


def test_failure_rate_is_seeded_and_reproducible(make_backend):
    def outcomes():
        backend = make_backend(lifecycle="immediate", failure_rate=0.5, seed=42)
        return [backend.submit("k", REQ, BASE).status for _ in range(40)]

    first = outcomes()
    assert first == outcomes() and {"SUCCESS", "FAILURE"} == set(first)


def test_seeded_ids_are_reproducible(make_backend):
    ids = [[make_backend(lifecycle="immediate", seed=3).submit("k", REQ, BASE).id] for _ in range(2)]
    assert ids[0] == ids[1]


def test_jobs_are_visible_only_to_their_key(make_backend):
    backend = make_backend(lifecycle="immediate")
    job = backend.submit("alice", REQ, BASE)
    with pytest.raises(NotFound) as other:
        backend.status("bob", job.id)
    with pytest.raises(NotFound) as unknown:
        backend.status("bob", "no-such-id")
    assert other.value.errors[0].rule == unknown.value.errors[0].rule == "exists"


def test_keys(make_backend):
    open_backend = make_backend()
    for key in (None, ""):
        with pytest.raises(Unauthorized):
            open_backend.submit(key, REQ, BASE)
    closed = make_backend(api_keys=("right",))
    with pytest.raises(Unauthorized):
        closed.submit("wrong", REQ, BASE)
    assert closed.submit("right", REQ, BASE).status == "PENDING"


def test_queued_urls_serve_only_once_done(make_backend):
    backend = make_backend(lifecycle="manual")
    job = backend.submit("k", dict(REQ, queued_image_urls=True), BASE)
    token = job.download_urls[0].rsplit("/", 1)[1]
    with pytest.raises(ImageNotReady):
        backend.image(token, friendly=False)
    backend.force(job.id, "SUCCESS")
    image = backend.image(token, friendly=False)
    assert image.content_type == "image/jpeg" and image.data[:2] == b"\xff\xd8" and image.file_name.endswith(".jpg")


def test_direct_link_names_carry_the_prefix_and_expire(make_backend):
    backend = make_backend(lifecycle="immediate")
    job = backend.submit("k", dict(REQ, direct_link=True, file_prefix="fox_", batch_id="b-1"), BASE)
    assert job.batch_id == "b-1"
    names = [url.rsplit("/", 1)[1] for url in job.download_urls]
    assert names == [f"fox_{job.id}-1.png", f"fox_{job.id}-2.png"]
    image = backend.image(names[1], friendly=True)
    assert image.content_type == "image/png" and image.data.startswith(b"\x89PNG")
    with pytest.raises(NotFound):  # a friendly name is not an opaque token, and vice versa
        backend.image(names[1], friendly=False)
    backend.advance_clock(86_401)
    with pytest.raises(ImageExpired):
        backend.image(names[0], friendly=True)


def test_store_is_bounded_oldest_first(make_backend):
    backend = make_backend(lifecycle="immediate", max_jobs=5)
    ids = [backend.submit("k", REQ, BASE).id for _ in range(8)]
    assert len(backend.store) == 5
    with pytest.raises(NotFound):
        backend.status("k", ids[0])
    assert backend.status("k", ids[-1]).status == "SUCCESS"


def test_jobs_expire_after_their_ttl(make_backend):
    backend = make_backend(lifecycle="immediate", job_ttl_seconds=60)
    old = backend.submit("k", REQ, BASE).id
    backend.advance_clock(61)
    backend.submit("k", REQ, BASE)
    with pytest.raises(NotFound):
        backend.status("k", old)


def test_config_updates_are_validated(make_backend):
    backend = make_backend()
    with pytest.raises(InvalidRequest) as caught:
        backend.update_config({"lifecycle": "sometimes", "failure_rate": 2, "nonsense": 1})
    assert {e.field for e in caught.value.errors} == {"nonsense"}
    with pytest.raises(InvalidRequest) as caught:
        backend.update_config({"lifecycle": "sometimes", "failure_rate": 2})
    assert {e.field for e in caught.value.errors} == {"lifecycle", "failure_rate"}
    assert backend.config.lifecycle == "seconds"  # a refused change changes nothing


@pytest.mark.parametrize("url", ["ftp://images.example", "images.example", "https://images.example/?",
                                 "https://images.example/#", "https://images.example/base?x=1"])
def test_a_public_url_that_cannot_be_a_base_of_download_urls_is_refused(url):
    """A "?" or "#", even with nothing after it, would end every download URL's path where the base ends."""
    with pytest.raises(InvalidRequest) as caught:
        MockConfig(public_url=url)
    assert [(e.field, e.rule) for e in caught.value.errors] == [("public_url", "pattern")]
    assert "no query or fragment" in caught.value.errors[0].message


def test_reset_forgets_everything(make_backend):
    backend = make_backend(lifecycle="immediate")
    job = backend.submit("k", REQ, BASE)
    backend.update_config({"lifecycle": "manual"})
    backend.faults.add({"type": "drop"})
    backend.reset()
    assert backend.config.lifecycle == "immediate" and backend.faults.rules() == []
    with pytest.raises(NotFound):
        backend.status("k", job.id)


class LifecycleMachine(RuleBasedStateMachine):
    """Any mix of submits, polls, forced outcomes, clock moves and config changes: no job is lost,
    no id repeats, every answer is well-formed, and a terminal answer never changes."""

    jobs = Bundle("jobs")

    def __init__(self):
        super().__init__()
        self.backend = MockBackend(MockConfig(lifecycle="polls", pending_polls=2, seed=9, webhook_backoff=0.0))
        self.owner: dict[str, str] = {}
        self.terminal: dict[str, dict] = {}

    def observe(self, job_id: str, view) -> None:
        body = view.body(self.backend.profile)
        assert body["id"] == job_id and body["status"] in ("PENDING", "SUCCESS", "FAILURE")
        if body["status"] == "SUCCESS":
            assert len(body["download_urls"]) == self.samples[job_id]
        if body["status"] == "FAILURE":
            assert body["error"]
        if job_id in self.terminal:
            assert body == self.terminal[job_id]
        elif body["status"] != "PENDING":
            self.terminal[job_id] = body

    samples: dict[str, int] = {}

    @rule(target=jobs, request=valid_requests(256), key=st.sampled_from(["k1", "k2"]))
    def submit(self, request, key):
        request = {k: v for k, v in request.items() if k != "webhook"}
        body = self.backend.submit(key, request, BASE)
        assert body.id not in self.owner
        self.owner[body.id] = key
        self.samples[body.id] = request["samples"]
        self.observe(body.id, body)
        return body.id

    @rule(job_id=jobs)
    def poll(self, job_id):
        self.observe(job_id, self.backend.status(self.owner[job_id], job_id))

    @rule(job_id=jobs)
    def poll_with_other_key(self, job_id):
        other = "k2" if self.owner[job_id] == "k1" else "k1"
        with pytest.raises(NotFound):
            self.backend.status(other, job_id)

    @rule(job_id=jobs, status=st.sampled_from(["SUCCESS", "FAILURE"]))
    def force(self, job_id, status):
        try:
            self.backend.force(job_id, status, "forced")
        except Conflict:
            assert job_id in self.terminal or self.backend.job(job_id).status != "PENDING"

    @rule(seconds=st.floats(0, 100))
    def advance(self, seconds):
        self.backend.advance_clock(seconds)

    @rule(change=st.sampled_from([{"lifecycle": "immediate"}, {"lifecycle": "manual"}, {"failure_rate": 0.5},
                                  {"lifecycle": "seconds", "pending_seconds": 10}, {"failure_rate": 0.0},
                                  {"lifecycle": "polls", "pending_polls": 1}]))
    def reconfigure(self, change):
        self.backend.update_config(change)

    @invariant()
    def every_job_answers(self):
        for job_id, key in self.owner.items():
            self.observe(job_id, self.backend.status(key, job_id))

    def teardown(self):
        self.backend.close()


LifecycleMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_lifecycle_machine = LifecycleMachine.TestCase


def test_eviction_spares_jobs_still_in_use(make_backend):
    backend = make_backend(lifecycle="immediate", max_jobs=3)
    polled = backend.submit("k", REQ, BASE).id
    for _ in range(5):
        backend.submit("k", REQ, BASE)
        assert backend.status("k", polled).status == "SUCCESS"  # each poll keeps it the newest
    assert len(backend.store) == 3


def test_reads_by_another_key_do_not_keep_a_job_alive(make_backend):
    backend = make_backend(lifecycle="immediate", max_jobs=2)
    probed = backend.submit("alice", REQ, BASE).id
    backend.submit("alice", REQ, BASE)
    with pytest.raises(NotFound):
        backend.status("mallory", probed)
    backend.submit("alice", REQ, BASE)  # full: the least recently used by its owner goes
    with pytest.raises(NotFound):
        backend.status("alice", probed)


def test_config_changes_keep_the_store_and_its_lock(make_backend):
    backend = make_backend()
    store, lock = backend.store, backend.store.lock
    backend.update_config({"lifecycle": "manual", "pending_polls": 7})
    assert backend.store is store and backend.store.lock is lock


@pytest.mark.parametrize("setting", ["max_jobs", "journal_size", "max_body_bytes", "image_cache_bytes",
                                     "webhook_records", "public_url", "job_ttl_seconds", "port", "threads"])
def test_startup_settings_are_refused_while_serving(make_backend, setting):
    backend = make_backend()
    before = backend.config
    with pytest.raises(InvalidRequest) as refused:
        backend.update_config({setting: 7, "lifecycle": "manual"})
    assert [(e.field, e.rule) for e in refused.value.errors] == [(setting, "startup")]
    assert backend.config is before  # nothing changed, the valid key beside it included


def test_jobs_are_listed_newest_first_by_creation_whatever_was_used_last(make_backend):
    """The store keeps jobs by last use (for eviction); a listing must not reorder when an old job is polled."""
    backend = make_backend(lifecycle="manual")
    first, second = (backend.submit("k", REQ, BASE).id for _ in range(2))
    backend.clock.advance(1)
    backend.status("k", first)
    assert [v.id for v in backend.list_jobs()] == [second, first]
    assert [v.owner_key for v in backend.list_jobs(limit=1)] == ["k"]
    assert backend.stats()["by_status"] == {"PENDING": 2, "SUCCESS": 0, "FAILURE": 0}
