"""CORS, over HTTP: preflights and exposed headers for the configured origins only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import ConfigError, load_settings
from tests.conftest import SettingsFactory

APP_ORIGIN = "https://app.example"


@pytest.fixture
async def cors_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    app = create_app(settings_factory(cors={"allow_origins": [APP_ORIGIN], "max_age": 300}))
    async with app.test_app():
        yield app


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key",
    }


async def test_a_preflight_from_an_allowed_origin_is_allowed(cors_app: Quart) -> None:
    response = await cors_app.test_client().options("/books", headers=_preflight(APP_ORIGIN))
    assert response.status_code == 200
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {name.strip().lower() for name in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key"}
    assert headers["Access-Control-Max-Age"] == "300"
    assert "Origin" in headers["Vary"]


@pytest.mark.parametrize(
    ("method", "requested"),
    [
        ("GET", "Prefer"),  # count=exact on a list
        ("GET", "Last-Event-ID"),  # an event stream resuming
        ("POST", "apiKey, Content-Type"),  # a Data API client
        ("GET", "traceparent, tracestate"),  # a traced page continuing its trace
    ],
)
async def test_the_headers_of_shoals_features_pass_a_preflight(
    cors_app: Quart, method: str, requested: str
) -> None:
    headers = {**_preflight(APP_ORIGIN, method), "Access-Control-Request-Headers": requested}
    response = await cors_app.test_client().options("/books", headers=headers)
    allowed = {
        name.strip().lower() for name in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert allowed == {name.strip().lower() for name in requested.split(",")}


async def test_a_preflight_from_another_origin_gets_no_permission(cors_app: Quart) -> None:
    client = cors_app.test_client()
    response = await client.options("/books", headers=_preflight("https://evil.example"))
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers
    simple = await client.get("/books", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in simple.headers


async def test_an_allowed_origin_may_read_the_headers_that_matter(cors_app: Quart) -> None:
    response = await cors_app.test_client().get("/books", headers={"Origin": APP_ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed_header = response.headers["Access-Control-Expose-Headers"]
    exposed = {name.strip() for name in exposed_header.split(",")}
    assert {"ETag", "Location", "Retry-After", "RateLimit-Remaining", "X-Total-Count"} <= exposed
    assert "traceresponse" in exposed  # a traced page finds the trace of an answer
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_credentials_are_allowed_only_when_configured(
    settings_factory: SettingsFactory,
) -> None:
    cors = {"allow_origins": [APP_ORIGIN], "allow_credentials": True}
    app = create_app(settings_factory(cors=cors))
    async with app.test_app():
        response = await app.test_client().get("/books", headers={"Origin": APP_ORIGIN})
        assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_no_cors_without_an_allowlist(anonymous: Client) -> None:
    response = await anonymous.options("/books", headers=_preflight(APP_ORIGIN))
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("cors", "message"),
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, "allow_credentials"),
        ({"allow_origins": ["https://app.example/path"]}, "not an origin"),
    ],
)
def test_unsafe_or_malformed_cors_settings_are_refused(cors: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"environment": "development", "cors": cors}, env={})
