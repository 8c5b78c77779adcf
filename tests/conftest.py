import pytest
from hypothesis import HealthCheck, settings

from sd35_twin.mockserver.backend import MockBackend
from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.jobs import Clock

# A loaded machine (CI on 2 shared cores) can pause any example or its generation: the default 200 ms deadline
# and the too_slow health check would then fail a property that holds. Tests that name their own settings
# inherit these; those that list health checks to suppress add too_slow themselves.
settings.register_profile("sd35-tests", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sd35-tests")

REQ = {"prompt": "a red fox in the snow", "negative_prompt": "blurry", "num_inference_steps": 4, "samples": 2,
       "guidance_scale": 0.0, "width": 256, "height": 256}


@pytest.fixture
def valid_request():
    return dict(REQ)


@pytest.fixture
def backend():
    """A backend whose jobs finish on their first status poll, with its own clock that a test can advance (the
    rules' tests). A test file may define its own ``backend`` in place of this one."""
    made = MockBackend(MockConfig(lifecycle="polls", pending_polls=1, seed=3), clock=Clock())
    yield made
    made.close()
