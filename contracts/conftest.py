"""Fixtures of the contract suite itself: the shared jobs (created once per run, so a live run pays
for each only once) and a local webhook receiver for the mock-only webhook contracts."""

from __future__ import annotations

import pytest

from sd35_twin.mockserver.testing import WebhookReceiver

from sd35_twin.contracts.support import CHEAPEST, OPTIONS_BODY, JobTranscript, run_job


@pytest.fixture(scope="session")
def basic_job(contract_run) -> JobTranscript:
    """The cheapest valid request, walked to its end (shared by every ``billable(shared='basic')``)."""
    contract_run.budget.require(1, "the shared basic job")
    return run_job(contract_run, dict(CHEAPEST))


@pytest.fixture(scope="session")
def options_job(contract_run) -> JobTranscript:
    """A request with every optional field, walked to its end, its URLs read while still PENDING."""
    contract_run.budget.require(1, "the shared options job")
    return run_job(contract_run, dict(OPTIONS_BODY), early_downloads=True)


@pytest.fixture
def webhook_receiver():
    with WebhookReceiver() as receiver:
        yield receiver
