"""Credits (ledger row 29): a key's balance, spent one credit per image of an accepted submit; a submit past
it is refused (402 by default) and creates nothing. Backend, HTTP, control plane, command line, threads."""

import os
import subprocess
import sys
import threading

import pytest
import requests

from sd35_twin.mockserver.backend import MockBackend
from sd35_twin.mockserver.cli import build_parser, config_from_args
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.errors import InvalidRequest, NoCredits
from tests.helpers import race

BASE = "http://mock.test/"
ONE = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0.0,
       "width": 256, "height": 256}
TWO = dict(ONE, samples=2)
KEY, OTHER = "key-with-credits", "key-without-limit"


@pytest.fixture
def make_backend():
    made = []

    def make(**config):
        backend = MockBackend(MockConfig(lifecycle="immediate", **config))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def account(backend_or_mock) -> list[dict]:
    return backend_or_mock.credits()


# -- the backend ------------------------------------------------------------------------------------------

def test_each_image_spends_one_credit_and_a_submit_past_the_balance_creates_nothing(make_backend):
    backend = make_backend(credits={KEY: 3})
    backend.submit(KEY, TWO, BASE)
    assert account(backend) == [{"key": "ke…(16 chars)", "spent": 2, "balance": 1}]
    with pytest.raises(NoCredits) as refused:
        backend.submit(KEY, TWO, BASE)  # costs 2, 1 left: refused whole
    assert [(e.field, e.rule) for e in refused.value.errors] == [("API-Key", "credits")]
    assert "balance is 1" in refused.value.message
    assert len(backend.list_jobs()) == 1 and account(backend)[0] == {"key": "ke…(16 chars)", "spent": 2, "balance": 1}
    backend.submit(KEY, ONE, BASE)  # one image still fits
    assert account(backend)[0]["balance"] == 0
    with pytest.raises(NoCredits):
        backend.submit(KEY, ONE, BASE)


def test_a_key_without_a_balance_has_no_limit_and_is_not_reported(make_backend):
    backend = make_backend(credits={KEY: 0})
    for _ in range(5):
        backend.submit(OTHER, TWO, BASE)
    with pytest.raises(NoCredits):
        backend.submit(KEY, ONE, BASE)
    assert [a["spent"] for a in account(backend)] == [0]


def test_an_invalid_or_unauthorised_submit_spends_nothing(make_backend):
    backend = make_backend(credits={KEY: 1}, api_keys=(KEY,))
    with pytest.raises(InvalidRequest):
        backend.submit(KEY, dict(ONE, samples=0), BASE)
    assert account(backend)[0]["spent"] == 0
    backend.submit(KEY, ONE, BASE)
    assert account(backend)[0] == {"key": "ke…(16 chars)", "spent": 1, "balance": 0}


def test_a_patch_sets_balances_anew_and_keeps_the_spend(make_backend):
    backend = make_backend(credits={KEY: 2})
    backend.submit(KEY, ONE, BASE)
    backend.update_config({"credits": {KEY: 5, OTHER: 1}})
    assert {a["key"]: (a["spent"], a["balance"]) for a in account(backend)} == {
        "ke…(16 chars)": (1, 5), "ke…(17 chars)": (0, 1)}
    backend.update_config({"lifecycle": "polls"})  # a patch not naming credits leaves the balances be
    assert {a["balance"] for a in account(backend)} == {5, 1}
    backend.update_config({"credits": {KEY: None}})  # null: no limit; the map is replaced whole
    assert account(backend) == []
    backend.update_config({"credits": {KEY: 1}})
    backend.update_config({"credits": None})
    assert account(backend) == []


@pytest.mark.parametrize("bad", [{KEY: -1}, {KEY: True}, {KEY: 1.5}, {KEY: "3"}, {"": 1}, [KEY], "k=1", {KEY: 10**13}])
def test_bad_credits_are_refused_naming_credits_and_change_nothing(make_backend, bad):
    backend = make_backend(credits={KEY: 2})
    with pytest.raises(InvalidRequest) as refused:
        backend.update_config({"credits": bad})
    assert [e.field for e in refused.value.errors] == ["credits"]
    assert account(backend)[0]["balance"] == 2 and backend.config.credits == {KEY: 2}


def test_reset_restores_the_start_up_balances_and_zeroes_the_spend(make_backend):
    backend = make_backend(credits={KEY: 2})
    backend.submit(KEY, TWO, BASE)
    backend.update_config({"credits": {OTHER: 7}})
    backend.reset()
    assert account(backend) == [{"key": "ke…(16 chars)", "spent": 0, "balance": 2}]
    assert backend.config.credits == {KEY: 2}


def test_n_threads_against_a_balance_of_k_get_exactly_k_jobs(make_backend):
    backend = make_backend(credits={KEY: 7})
    accepted, refused = race(lambda: backend.submit(KEY, ONE, BASE).id, 24, NoCredits)
    assert (len(accepted), refused) == (7, 17)
    assert len(backend.list_jobs()) == 7 and account(backend)[0] == {"key": "ke…(16 chars)", "spent": 7, "balance": 0}


def test_the_config_never_shows_a_key_whole():
    config = MockConfig(credits={KEY: 1, "ke-other-key-0000": 2, "ab": 3})
    shown = config.as_dict()["credits"]
    assert shown == {"…": 3, "ke…(16 chars)": 1, "ke…(17 chars)": 2}
    assert KEY not in str(shown)
    twins = MockConfig(credits={"kk-aaaa": 1, "kk-bbbb": 2}).as_dict()["credits"]
    assert twins == {"kk…(7 chars)": 1, "kk…(7 chars) #2": 2}  # keys that redact alike stay apart


# -- over HTTP ------------------------------------------------------------------------------------------

def post(mock, key, body):
    return requests.post(f"{mock.url}/sd3_5/v1", json=body, headers={"API-Key": key}, timeout=10)


def test_over_http_a_submit_past_the_balance_is_a_402_failure_naming_the_key(sd35_mock):
    config = sd35_mock.configure(credits={KEY: 1})
    assert config["credits"] == {"ke…(16 chars)": 1} and KEY not in str(config)
    assert post(sd35_mock, KEY, ONE).status_code == 200
    refused = post(sd35_mock, KEY, ONE)
    body = refused.json()
    assert refused.status_code == 402 and body["status"] == "FAILURE"
    assert body["errors"][0]["field"] == "API-Key" and body["errors"][0]["rule"] == "credits"
    assert body["error"].startswith("API-Key: has no credits left")
    assert len(sd35_mock.jobs()) == 1
    assert sd35_mock.credits() == [{"key": "ke…(16 chars)", "spent": 1, "balance": 0}]
    assert post(sd35_mock, OTHER, ONE).status_code == 200  # another key is not limited


def test_the_profile_names_the_status_of_a_refusal(sd35_mock):
    sd35_mock.configure(credits={KEY: 0}, profile={"http_status": {"no_credits": 429}})
    assert post(sd35_mock, KEY, ONE).status_code == 429


def test_an_invalid_body_is_a_400_and_spends_nothing(sd35_mock):
    sd35_mock.configure(credits={KEY: 1})
    assert post(sd35_mock, KEY, dict(ONE, samples=99)).status_code == 400
    assert sd35_mock.credits()[0]["spent"] == 0


def test_credits_are_behaviour_reset_restores_the_start_up_ones(sd35_mock):
    sd35_mock.configure(credits={KEY: 1})
    post(sd35_mock, KEY, ONE)
    sd35_mock.reset()
    assert sd35_mock.credits() == [] and sd35_mock.config()["credits"] == {}
    answer = sd35_mock.request("PATCH", "/config", json={"credits": {KEY: -1}})
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "credits"
    assert sd35_mock.configure(credits={})["credits"] == {}  # what GET answers for "none" round-trips


def test_openapi_documents_the_refusal(sd35_mock):
    doc = requests.get(f"{sd35_mock.url}/openapi.json", timeout=10).json()
    assert "402" in doc["paths"]["/sd3_5/v1"]["post"]["responses"]


def test_concurrent_http_submits_against_a_balance(sd35_mock):
    sd35_mock.configure(credits={KEY: 5})
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(post(sd35_mock, KEY, ONE).status_code))
               for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 5 + [402] * 7
    assert len(sd35_mock.jobs()) == 5


# -- the command line -----------------------------------------------------------------------------------

def config_of(args):
    return config_from_args(build_parser().parse_args(args))


def test_options_set_balances_and_override_the_environment(monkeypatch):
    monkeypatch.setenv("SD35_MOCK_CREDITS", "k1=5, k2=0,a=b=3")
    assert config_of([]).credits == {"k1": 5, "k2": 0, "a=b": 3}
    assert config_of(["--credits", "k9=1", "--credits", "k8=0"]).credits == {"k9": 1, "k8": 0}
    monkeypatch.delenv("SD35_MOCK_CREDITS")
    assert config_of([]).credits == {}


def refused_at_start(args, env=None):
    done = subprocess.run([sys.executable, "-m", "sd35_twin.mockserver", *args], capture_output=True, text=True, timeout=20,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize("value", ["k1", "=3", "k=-1", "k=x", "k=1.5", "k=", "k=99999999999999"])
def test_a_bad_credits_option_exits_2_naming_it(value):
    assert "argument --credits: " in refused_at_start(["--credits", value])


def test_a_bad_credits_environment_value_exits_2_naming_the_option():
    line = refused_at_start([], env={"SD35_MOCK_CREDITS": "k1=5,k2"})
    assert "error: SD35_MOCK_CREDITS: " in line and "--credits" not in line
