import pytest
from hypothesis import HealthCheck, settings

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
