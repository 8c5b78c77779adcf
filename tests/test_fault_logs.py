"""Logs say what a fault did, once: waitress's warnings caused by an injected fault (a short or long
Content-Length, a connection closed under a request) give way to one line of the mock's naming the fault, and
real server warnings stay (issues 20 and 21)."""

import logging
import threading

import pytest
import requests

from sd35_twin.mockserver.faults import FAULT_ECHOES, FaultEchoFilter, fault_served, task_done
from sd35_twin.mockserver.testing import MockControl, launch

KEY = {"API-Key": "k"}
BODY = {"prompt": "a fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0}
DOWNLOAD_FAULTS = [{"type": "truncate"}, {"type": "wrong_length"}, {"type": "wrong_length", "length": "long"},
                   {"type": "reset"}]
SUBMIT_FAULTS = [{"type": "drop"}, {"type": "drop", "phase": "after"}, {"type": "malformed", "phase": "after"}]


def test_each_fault_is_logged_once_as_that_fault_and_waitress_echoes_nothing():
    mock = launch("--pending-seconds", "0")  # INFO: waitress's "Client disconnected" lines would show too
    try:
        control = MockControl(mock.url)
        for fault in DOWNLOAD_FAULTS:
            url = requests.post(f"{mock.url}/sd3_5/v1", json=BODY, headers=KEY, timeout=10).json()["download_urls"][0]
            control.call("POST", "/faults", json=dict(fault, endpoint="download"))
            try:
                requests.get(url, timeout=10)
            except requests.RequestException:
                pass
        for fault in SUBMIT_FAULTS:
            control.call("POST", "/faults", json=dict(fault, endpoint="submit"))
            try:
                requests.post(f"{mock.url}/sd3_5/v1", json=BODY, headers=KEY, timeout=10)
            except requests.RequestException:
                pass
        faulted = [e for e in control.requests() if "fault" in e]
        assert len(faulted) == len(DOWNLOAD_FAULTS) + len(SUBMIT_FAULTS)
    finally:
        mock.stop()  # every line is in once it has exited
    lines = mock.output
    echoes = [line for line in lines if any(echo in line for echo in FAULT_ECHOES)]
    assert echoes == [], "\n".join(lines)
    assert not [line for line in lines if " WARNING " in line or " ERROR " in line], "\n".join(lines)
    logged = [line.split(": ", 2)[-1] for line in lines if "injected fault: " in line]
    assert logged == [e["fault"] for e in faulted], "\n".join(lines)  # one line each, naming what the journal says


@pytest.fixture
def records():
    """What the waitress logger passes on, through the filter the mock installs."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    logger = logging.getLogger("waitress.test-fault-echoes")  # a child: filters of "waitress" do not apply,
    logger.addFilter(FaultEchoFilter())                       # so it gets the same filter itself
    handler = Keep()
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, seen
    logger.removeHandler(handler)
    task_done()


def test_real_server_warnings_stay(records):
    logger, seen = records
    echo = "application returned too few bytes (10) for specified Content-Length (20) via app_iter"
    logger.warning(echo)  # no fault on this thread: a real problem of the app, kept
    fault_served("truncate at 10 of 20 bytes")
    logger.warning(echo)  # the fault's own echo: dropped
    logger.warning("Socket error")  # anything else, even while a fault is served: kept
    task_done()
    logger.warning(echo)  # the faulted task is over: kept again
    other = threading.Thread(target=logger.warning, args=(echo,))
    fault_served("drop")
    other.start()  # another thread, serving another request: kept
    other.join()
    assert [r.getMessage() for r in seen] == [echo, "Socket error", echo, echo]


def test_the_server_installs_the_filter_on_waitress_once():
    from sd35_twin.mockserver.http import create_app
    from sd35_twin.mockserver.server import make_server

    for _ in range(2):
        make_server(create_app(), port=0).close()
    assert sum(isinstance(f, FaultEchoFilter) for f in logging.getLogger("waitress").filters) == 1
