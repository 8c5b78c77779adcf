"""Issue 12's acceptance: two tests that share one mock, run in parallel by pytest-xdist, each get their own
outcome through a rule, with no reset between them."""

from __future__ import annotations

import textwrap

import pytest

from sd35_twin.mockserver.testing import MockControl, launch

pytest_plugins = ["pytester"]

# The user's suite: each test scopes its outcome to its own API key, waits until the other test's rule is
# there too (so both really share the mock at once), runs the client, and removes only its own rule.
USER_TESTS = textwrap.dedent('''
    import os
    import time

    import pytest

    from sd35_twin.client import ImagePipelineClient, JobFailedError
    from sd35_twin.mockserver.testing import MockControl

    URL = os.environ["SHARED_MOCK_URL"]
    REQ = dict(prompt="a red fox", negative_prompt="", num_inference_steps=4, samples=1, guidance_scale=0.0,
               width=256, height=256)


    def with_rule(key, other, **effect):
        """Add this test's rule, then wait (a barrier between the two workers, not a wait for a lifecycle) until
        the other test's rule is there too, or the other test already has its job: it only submits once it
        has seen both rules, so either way the two rules were in force at once."""
        control = MockControl(URL)
        rule = control.add_rule({"api_key": key}, **effect)
        deadline = time.monotonic() + 60
        while len(control.rules()) < 2 and not any((j["batch_id"] or "").endswith(other) for j in control.jobs()):
            assert time.monotonic() < deadline, "the other test never added its rule"
            time.sleep(0.02)
        return control, rule


    def client(key):
        return ImagePipelineClient(key, URL, sleep=lambda s: None)


    def test_a_gets_failure():
        control, rule = with_rule("key-of-test-a", "-b", outcome="FAILURE", error="refused for test a")
        try:
            with pytest.raises(JobFailedError) as info:
                client("key-of-test-a").generate(**REQ, batch_id=os.environ["PYTEST_XDIST_WORKER"] + "-a")
            assert "refused for test a" in str(info.value)
        finally:
            control.remove_rule(rule["id"])
        control.assert_submits(1, key="key-of-test-a", rule=rule["id"])


    def test_b_gets_success_after_three_polls():
        control, rule = with_rule("key-of-test-b", "-a", outcome="SUCCESS", pending_polls=3)
        try:
            done = client("key-of-test-b").generate(**REQ, batch_id=os.environ["PYTEST_XDIST_WORKER"] + "-b")
            assert done.status == "SUCCESS" and done.download_urls
        finally:
            control.remove_rule(rule["id"])
        [submit] = control.assert_submits(1, key="key-of-test-b", rule=rule["id"])
        assert len(control.requests(kind="status", job_id=submit["job_id"])) == 3
''')


@pytest.mark.slow
def test_two_parallel_tests_sharing_one_mock_each_get_their_own_outcome(pytester, monkeypatch):
    pytest.importorskip("xdist")
    with launch("--pending-polls", "1", "--quiet") as mock:
        control = MockControl(mock.url)
        monkeypatch.setenv("SHARED_MOCK_URL", mock.url)
        pytester.makepyfile(test_shared=USER_TESTS)
        result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "no:cacheprovider", "-q")
        result.assert_outcomes(passed=2)
        # no reset between them: both jobs are still there, each from its own worker, each shaped by its rule
        jobs = {job["batch_id"]: job for job in control.jobs()}
        assert sorted(b[-1] for b in jobs) == ["a", "b"]
        assert {b.split("-")[0] for b in jobs} == {"gw0", "gw1"}
        assert sorted(job["status"] for job in jobs.values()) == ["FAILURE", "SUCCESS"]
        assert control.rules() == []  # each removed its own
        control.close()
