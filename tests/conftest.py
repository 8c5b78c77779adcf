import pytest

REQ = {"prompt": "a red fox in the snow", "negative_prompt": "blurry", "num_inference_steps": 4, "samples": 2,
       "guidance_scale": 0.0, "width": 256, "height": 256}


@pytest.fixture
def valid_request():
    return dict(REQ)
