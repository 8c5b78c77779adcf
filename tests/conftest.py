import pytest

from tests.helpers import SERVING, Receiver, running_mock

REQ = {"prompt": "a red fox in the snow", "negative_prompt": "blurry", "num_inference_steps": 4, "samples": 2,
       "guidance_scale": 0.0, "width": 256, "height": 256}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def valid_request():
    return dict(REQ)


@pytest.fixture(scope="session", params=SERVING)
def sd35_mock_server(request):
    """Overrides the plugin's fixture: every HTTP test runs against the one-process server and against
    two worker processes over the shared state (``python -m mockserver --workers 2``), which must behave
    the same."""
    from mockserver.config import MockConfig
    from mockserver.pytest_plugin import SESSION_CONFIG, MockHandle

    with running_mock(MockConfig(**SESSION_CONFIG), request.param) as running:
        yield MockHandle(running)
