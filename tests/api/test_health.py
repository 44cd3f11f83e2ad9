"""/healthz and /readyz, including recovery when a dependency comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from tests.conftest import SettingsFactory
from tests.utils.engines import DatabaseServer
from tests.utils.servers import RedisServer


async def test_healthz_answers(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = await response.get_json()
    assert body == {"status": "ready", "checks": {"mongodb": "ok", "redis": "ok"}}


@pytest.fixture
async def fragile_app(
    settings_factory: SettingsFactory, own_database: DatabaseServer, own_redis: RedisServer
) -> AsyncIterator[Quart]:
    settings = settings_factory(
        mongodb={"uri": own_database.uri, "server_selection_timeout_ms": 500},
        redis={"url": own_redis.url, "socket_timeout": 0.5},
    )
    application = create_app(settings)
    async with application.test_app():
        yield application


async def _ready(app: Quart) -> tuple[int, dict[str, object]]:
    response = await app.test_client().get("/readyz")
    return response.status_code, await response.get_json()


async def test_readyz_names_mongodb_while_it_is_down_and_recovers(
    fragile_app: Quart, own_database: DatabaseServer
) -> None:
    assert (await _ready(fragile_app))[0] == 200

    own_database.kill()
    status, body = await _ready(fragile_app)
    assert status == 503
    error = body["_error"]
    assert isinstance(error, dict)
    assert error["code"] == 503
    assert "mongodb" in error["message"]
    assert error["checks"]["redis"] == "ok"
    assert error["checks"]["mongodb"] != "ok"

    own_database.start()
    status, body = await _ready(fragile_app)
    assert status == 200, body


async def test_readyz_names_redis_while_it_is_down_and_recovers(
    fragile_app: Quart, own_redis: RedisServer
) -> None:
    assert (await _ready(fragile_app))[0] == 200

    own_redis.stop()
    status, body = await _ready(fragile_app)
    assert status == 503
    error = body["_error"]
    assert isinstance(error, dict)
    assert "redis" in error["message"]
    assert "mongodb" not in error["message"]

    own_redis.start()
    status, body = await _ready(fragile_app)
    assert status == 200, body


async def test_readyz_without_redis_checks_in_process_state(
    settings_factory: SettingsFactory,
) -> None:
    application = create_app(settings_factory(redis={"url": None}))
    async with application.test_app():
        status, body = await _ready(application)
    assert status == 200
    assert body["checks"] == {"mongodb": "ok", "memory": "ok"}
