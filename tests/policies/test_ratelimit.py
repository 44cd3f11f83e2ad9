"""Rate limits, over HTTP: exact counts across instances, 429s, headers, keys, overrides."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_rate_limiter import rate_exempt, rate_limit

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.config import ConfigError, load_settings
from tests.conftest import SettingsFactory
from tests.utils.auth import client_with, editor_client
from tests.utils.instances import two_served
from tests.utils.settings import example_resources


def _from(address: str) -> dict[str, Any]:
    """Request options making the test client's peer ``address``."""
    return {"scope_base": {"client": (address, 40000)}}


@pytest.fixture
async def limited(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    """Reads: 5 a minute; writes: 2 a minute."""
    app = create_app(settings_factory(rate_limits={"read": "5/minute", "write": "2/minute"}))
    async with app.test_app():
        yield app


async def _statuses(calls: list[Any]) -> Counter[int]:
    responses = await asyncio.gather(*calls)
    return Counter(response.status_code for response in responses)


async def test_exactly_n_pass_across_two_instances_under_concurrency(
    settings_factory: SettingsFactory,
) -> None:
    # 200 requests at once on one event loop: a busy machine can keep the loop
    # from reading a Redis reply for longer than the default 2 s deadline, and a
    # call past its deadline lets its request through uncounted (documented).
    # The count is what this test checks, so the deadline is out of its way.
    settings = settings_factory(rate_limits={"read": "20/minute"}, redis={"socket_timeout": 30})
    async with two_served(settings) as (first, second):
        clients = [first.test_client(), second.test_client()]
        calls = [clients[n % 2].get("/books", **_from("203.0.113.7")) for n in range(200)]
        assert await _statuses(calls) == {200: 20, 429: 180}


async def test_the_in_process_state_counts_exactly_too(settings_factory: SettingsFactory) -> None:
    app = create_app(settings_factory(redis={"url": None}, rate_limits={"read": "20/minute"}))
    async with app.test_app():
        client = app.test_client()
        assert await _statuses([client.get("/books") for _ in range(60)]) == {200: 20, 429: 40}


async def test_over_the_limit_is_429_with_retry_after_in_the_error_envelope(
    limited: Quart,
) -> None:
    client = limited.test_client()
    for _ in range(5):
        assert (await client.get("/books")).status_code == 200
    response = await client.get("/books")
    assert response.status_code == 429
    body = await response.get_json()
    assert body["_status"] == "ERR"
    assert body["_error"]["code"] == 429
    assert "5 per minute" in body["_error"]["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 12
    assert response.headers["RateLimit-Limit"] == "5"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 48 <= int(response.headers["RateLimit-Reset"]) <= 60


async def test_every_limited_response_carries_ratelimit_headers(limited: Quart) -> None:
    client = limited.test_client()
    remaining = []
    for path in ("/books", "/authors", "/books/0123456789abcdef01234567", "/"):
        response = await client.get(path)
        assert response.headers["RateLimit-Limit"] == "5"
        remaining.append(int(response.headers["RateLimit-Remaining"]))
        assert int(response.headers["RateLimit-Reset"]) > 0
    assert remaining == [4, 3, 2, 1]  # one bucket for every route without its own limits


async def test_reads_and_writes_are_counted_apart(limited: Quart) -> None:
    editor = await editor_client(limited)
    statuses = [(await editor.post("/books", json={"title": "x"})).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    response = await editor.get("/books")
    assert response.status_code == 200
    assert response.headers["RateLimit-Remaining"] == "4"


async def test_users_api_keys_and_addresses_have_their_own_buckets(limited: Quart) -> None:
    anonymous = limited.test_client()
    for _ in range(5):
        await anonymous.get("/books", **_from("198.51.100.1"))
    assert (await anonymous.get("/books", **_from("198.51.100.1"))).status_code == 429
    assert (await anonymous.get("/books", **_from("198.51.100.2"))).status_code == 200
    # A user or an API key is counted as itself, whatever its address.
    user = await editor_client(limited)
    response = await user.get("/books", **_from("198.51.100.1"))
    assert (response.status_code, response.headers["RateLimit-Remaining"]) == (200, "4")
    key, _ = await get_auth(limited).accounts.create_api_key("robot", ["editor"])
    robot = client_with(limited, {"X-API-Key": key})
    response = await robot.get("/books", **_from("198.51.100.1"))
    assert (response.status_code, response.headers["RateLimit-Remaining"]) == (200, "4")
    other = await editor_client(limited)
    assert (await other.get("/books")).headers["RateLimit-Remaining"] == "4"


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(rate_limits={"read": "2/minute"}, trusted_proxies=["127.0.0.0/8"])
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        proxy = _from("127.0.0.1")

        async def via_proxy(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            return int((await client.get("/books", headers=headers, **proxy)).status_code)

        assert [await via_proxy("192.0.2.1") for _ in range(3)] == [200, 200, 429]
        assert await via_proxy("192.0.2.2") == 200
        # An untrusted peer's X-Forwarded-For is ignored: it is counted as itself.
        spoofed = _from("192.0.2.50")
        for forged in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            last = await client.get("/books", headers={"X-Forwarded-For": forged}, **spoofed)
        assert last.status_code == 429


async def test_a_resource_can_have_its_own_limits(settings_factory: SettingsFactory) -> None:
    resources = example_resources()
    resources["books"]["rate_limits"] = {"read": "2/minute"}
    app = create_app(settings_factory(resources=resources, rate_limits={"read": "100/minute"}))
    async with app.test_app():
        client = app.test_client()
        assert [(await client.get("/books")).status_code for _ in range(3)] == [200, 200, 429]
        authors = await client.get("/authors")
        assert authors.status_code == 200
        assert authors.headers["RateLimit-Limit"] == "100"
        assert authors.headers["RateLimit-Remaining"] == "99"
        # The override covers reads only: books' writes share the global write bucket (none).
        editor = await editor_client(app)
        response = await editor.post("/books", json={"title": "x"})
        assert response.status_code == 201
        assert "RateLimit-Limit" not in response.headers


async def test_no_limits_by_default(app: Quart, anonymous: Client) -> None:
    for _ in range(30):
        response = await anonymous.get("/books")
        assert response.status_code == 200
    assert "RateLimit-Limit" not in response.headers


async def test_health_probes_are_never_limited(limited: Quart) -> None:
    client = limited.test_client()
    for _ in range(10):
        for path in ("/healthz", "/readyz"):
            response = await client.get(path)
            assert response.status_code == 200
            assert "RateLimit-Limit" not in response.headers


async def test_the_librarys_decorators_work_on_your_own_routes(
    settings_factory: SettingsFactory,
) -> None:
    app = create_app(settings_factory(rate_limits={"read": "100/minute"}))

    @app.get("/hello")
    @rate_limit(2, timedelta(minutes=1))
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/ping")
    @rate_exempt
    async def ping() -> dict[str, str]:
        return {"ping": "pong"}

    async with app.test_app():
        client = app.test_client()
        statuses = await _statuses([client.get("/hello") for _ in range(10)])
        assert statuses == {200: 2, 429: 8}
        refused = await client.get("/hello")
        assert (await refused.get_json())["_error"]["code"] == 429
        assert "Retry-After" in refused.headers
        assert refused.headers["RateLimit-Limit"] == "2"
        for _ in range(3):
            response = await client.get("/ping")
            assert response.status_code == 200
            assert "RateLimit-Limit" not in response.headers


def test_rates_are_validated_in_the_config() -> None:
    with pytest.raises(ConfigError, match=r"rate_limits\.read: .*COUNT/PERIOD"):
        load_settings({"environment": "development", "rate_limits": {"read": "lots"}}, env={})
    settings = load_settings(
        {"environment": "development", "rate_limits": {"write": "10 per 5 seconds"}}, env={}
    )
    assert settings.rate_limits.write == "10 per 5 seconds"
    assert settings.rate_limits.fail_open is True
