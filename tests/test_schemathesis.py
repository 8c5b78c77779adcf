"""Schemathesis against our own /openapi.json, in-process (WSGI) and over real HTTP: no 5xx, responses
conform to the document, invalid data is rejected, a bad key is refused."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from mockserver import MockConfig, create_app
from mockserver.server import serve

KEY = "schema-key"
CONFIG = MockConfig(lifecycle="immediate", seed=1, api_keys=(KEY,))  # a closed key list, so bad keys are 401

wsgi_schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(CONFIG))


@wsgi_schema.parametrize()
@settings(max_examples=80, deadline=None)
def test_wsgi_conforms(case):
    case.call_and_validate(headers={"API-Key": KEY})


@pytest.fixture(scope="module")
def http_schema():
    with serve(CONFIG) as mock:
        yield schemathesis.openapi.from_url(f"{mock.url}/openapi.json")


http = schemathesis.pytest.from_fixture("http_schema")


@http.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_http_conforms(case):
    case.call_and_validate(headers={"API-Key": KEY})
