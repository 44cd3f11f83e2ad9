"""``auth.revocation_cache: true``, over HTTP on real Redis: a token found not
revoked is accepted from the worker's memory without asking Redis, a logout
through another instance ends it there once Redis's push arrives (at once on
the instance that logged out), and nothing is taken from memory while the
watch is lost. Without the setting, every request asks Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.auth import get_auth
from shoal.state import get_state
from shoal.state.redis import RedisState
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer
from tests.utils.instances import two_served

PASSWORD = "correct horse battery staple"


def _mgets() -> float:
    """Redis MGETs so far in this process (the revocation check is one)."""
    value = REGISTRY.get_sample_value(
        "shoal_redis_command_duration_seconds_count", {"command": "mget"}
    )
    return value or 0.0


async def _signed_in(app: Quart) -> dict[str, str]:
    await get_auth(app).accounts.create_user("reader1", PASSWORD, ["editor"])
    client = app.test_client()
    response = await client.post("/auth/login", json={"username": "reader1", "password": PASSWORD})
    assert response.status_code == 200
    tokens: dict[str, Any] = await response.get_json()
    return bearer(tokens["access_token"])


async def _me(client: Client, headers: dict[str, str]) -> int:
    return (await client.get("/auth/me", headers=headers)).status_code


async def _until(check: Callable[[], Any]) -> None:
    deadline = time.monotonic() + 5
    while not await check():
        assert time.monotonic() < deadline, "not within 5 s"
        await asyncio.sleep(0.005)


@pytest.fixture
async def two_caching(settings_factory: SettingsFactory) -> AsyncIterator[tuple[Quart, Quart]]:
    async with two_served(settings_factory(auth={"revocation_cache": True})) as apps:
        for app in apps:
            watch = get_state(app).watch()
            assert watch is not None
            await asyncio.wait_for(watch.opened.wait(), 5)
        yield apps


async def test_a_kept_verdict_asks_redis_nothing(two_caching: tuple[Quart, Quart]) -> None:
    app = two_caching[0]
    headers = await _signed_in(app)
    client = app.test_client()
    before = _mgets()
    assert await _me(client, headers) == 200  # asks Redis, keeps the verdict
    assert _mgets() == before + 1
    for _ in range(3):
        assert await _me(client, headers) == 200
    assert _mgets() == before + 1


async def test_without_the_setting_every_request_asks_redis(
    settings_factory: SettingsFactory,
) -> None:
    async with two_served(settings_factory()) as (app, _):
        headers = await _signed_in(app)
        client = app.test_client()
        before = _mgets()
        for _ in range(3):
            assert await _me(client, headers) == 200
        assert _mgets() == before + 3


async def test_a_logout_on_another_instance_ends_the_kept_verdict(
    two_caching: tuple[Quart, Quart],
) -> None:
    first, second = two_caching
    headers = await _signed_in(first)
    a, b = first.test_client(), second.test_client()
    assert (await _me(a, headers), await _me(b, headers)) == (200, 200)  # kept by both
    assert (await a.post("/auth/logout", headers=headers)).status_code == 204
    assert await _me(a, headers) == 401  # the instance that logged out: at once

    async def refused_on_b() -> bool:
        return await _me(b, headers) == 401

    await _until(refused_on_b)  # the other: once Redis's push has arrived


async def test_nothing_is_taken_from_memory_while_the_watch_is_lost(
    two_caching: tuple[Quart, Quart],
) -> None:
    app = two_caching[0]
    headers = await _signed_in(app)
    client = app.test_client()
    assert await _me(client, headers) == 200
    state = get_state(app)
    assert isinstance(state, RedisState)
    watch = state.watch()
    assert watch is not None
    listing = (await state.client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")).decode()
    ids = [line.split()[0].removeprefix("id=") for line in listing.splitlines()]
    for client_id in ids:  # both instances' watches: this process holds them
        await state.client.execute_command("CLIENT", "KILL", "ID", client_id)

    async def lost() -> bool:
        return not watch.live

    await _until(lost)
    before = _mgets()
    assert await _me(client, headers) == 200
    assert _mgets() == before + 1  # asked Redis, the verdicts were forgotten
    await asyncio.wait_for(watch.opened.wait(), 5)
    assert await _me(client, headers) == 200
    assert await _me(client, headers) == 200
    assert _mgets() == before + 2  # kept again once the watch is back
