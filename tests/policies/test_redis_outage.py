"""Redis stops during requests and comes back: degraded, never broken, then whole again.

Each test runs its own redis-server (not the session's) and stops it. Redis
comes back from a snapshot taken before the outage, so the cache entries and
generations of before the outage are there again: the hardest case for the
cache, which must not serve them after the writes made during the outage.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.config import Settings
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.http import if_match
from tests.utils.servers import RedisServer
from tests.utils.settings import example_resources

LIMITS = {"read": "1000/minute", "write": "1000/minute"}


@dataclass
class Seen:
    """Every response of a test, so it can say that none was a 500."""

    statuses: list[int] = field(default_factory=list)

    async def __call__(self, request: Awaitable[Any]) -> Any:
        response = await request
        self.statuses.append(response.status_code)
        return response


@dataclass
class Cluster:
    redis: RedisServer
    apps: list[Quart]
    writer: Client  # an API key: checked in MongoDB, so it works without Redis
    readers: list[Client]
    seen: Seen

    async def snapshot_and_stop(self) -> None:
        client = redis.Redis.from_url(self.redis.url)
        try:
            await client.save()
        finally:
            await client.aclose()
        self.redis.stop()


def _settings(factory: SettingsFactory, url: str, **overrides: Any) -> Settings:
    resources = example_resources()
    resources["books"]["cache_ttl"] = 300
    options: dict[str, Any] = {
        "resources": resources,
        "rate_limits": LIMITS,
        "redis": {"url": url, "socket_timeout": 0.5},
    }
    return factory(**{**options, **overrides})


@pytest.fixture
async def cluster(tmp_path: Path, settings_factory: SettingsFactory) -> AsyncIterator[Cluster]:
    """Three instances on one database and a Redis of their own."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = _settings(settings_factory, server.url)
        apps = [create_app(settings) for _ in range(3)]
        async with apps[0].test_app(), apps[1].test_app(), apps[2].test_app():
            key, _ = await get_auth(apps[0]).accounts.create_api_key("writer", ["editor"])
            yield Cluster(
                redis=server,
                apps=apps,
                writer=client_with(apps[0], {"X-API-Key": key}),
                readers=[app.test_client() for app in apps],
                seen=Seen(),
            )
    finally:
        server.stop()


async def _titles(seen: Seen, client: Client) -> tuple[set[str], Any]:
    response = await seen(client.get("/books?max_results=50"))
    assert response.status_code == 200, await response.get_data()
    return {item["title"] for item in (await response.get_json())["_items"]}, response


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> float:
    """Seconds until ``check`` holds (polling); fails after ``timeout``."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, "did not recover in time"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_an_outage_degrades_and_then_heals_without_a_restart(cluster: Cluster) -> None:
    seen, writer = cluster.seen, cluster.writer
    a, b, c = cluster.readers
    created = await seen(writer.post("/books", json={"title": "Before", "year": 1}))
    ack = await created.get_json()
    item = f"/books/{ack['_id']}"
    token = await token_for(cluster.apps[1], "editor")  # issued while Redis is up
    for client in (a, b, c):  # every instance caches the list and the item
        await _titles(seen, client)
        assert (await _titles(seen, client))[1].headers["X-Cache"] == "HIT"
        await seen(client.get(item))
        assert (await seen(client.get(item))).headers["X-Cache"] == "HIT"

    await cluster.snapshot_and_stop()

    # Writes still succeed (through A); reads bypass the cache and see them (A and B).
    during = await seen(writer.post("/books", json={"title": "During"}))
    assert during.status_code == 201
    patched = await seen(writer.patch(item, json={"year": 2}, headers=if_match(ack["_etag"])))
    assert patched.status_code == 200
    for client in (a, b):
        titles, response = await _titles(seen, client)
        assert titles == {"Before", "During"}
        assert response.headers["X-Cache"] == "BYPASS"
        assert "RateLimit-Limit" not in response.headers  # limits fail open
        assert (await (await seen(client.get(item))).get_json())["year"] == 2
    # What needs Redis to be correct answers 503 with a clear error.
    keyed = await seen(
        writer.post("/books", json={"title": "Keyed"}, headers={"Idempotency-Key": "k-1"})
    )
    assert keyed.status_code == 503
    assert "Idempotency-Key" in (await keyed.get_json())["_error"]["message"]
    assert "Retry-After" in keyed.headers
    with_token = await seen(b.get("/books", headers=bearer(token)))
    assert with_token.status_code == 503
    assert (await with_token.get_json())["_status"] == "ERR"
    assert (await seen(a.get("/readyz"))).status_code == 503

    cluster.redis.start()  # back, with the entries and generations of before the outage

    # Instances that saw the outage never serve what they cached before it.
    for client in (a, b):
        titles, _ = await _titles(seen, client)
        assert titles == {"Before", "During"}
        assert (await (await seen(client.get(item))).get_json())["year"] == 2

    # C saw nothing of it; the writer's owed invalidation reaches it once Redis is back.
    async def c_is_fresh() -> bool:
        titles, _ = await _titles(seen, c)
        return titles == {"Before", "During"}

    await _eventually(c_is_fresh)

    # Everything works again: cache, limits, idempotency, tokens, readiness.
    async def a_hits() -> bool:
        _, response = await _titles(seen, a)
        return bool(response.headers.get("X-Cache") == "HIT")

    await _eventually(a_hits)
    _, response = await _titles(seen, a)
    assert response.headers["RateLimit-Limit"] == "1000"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await seen(writer.post("/books", json={"title": "After"}, headers=key))
    again = await seen(writer.post("/books", json={"title": "After"}, headers=key))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await seen(b.get("/books", headers=bearer(token)))).status_code == 200
    assert (await seen(a.get("/readyz"))).status_code == 200
    titles, _ = await _titles(seen, c)
    assert titles == {"Before", "During", "After"}

    assert 500 not in seen.statuses


async def test_a_stop_in_the_middle_of_a_burst_never_gives_500(cluster: Cluster) -> None:
    seen, writer = cluster.seen, cluster.writer
    a, b, _ = cluster.readers

    async def traffic(rounds: int) -> None:
        for n in range(rounds):
            await asyncio.gather(
                seen(a.get("/books")),
                seen(b.get("/books")),
                seen(writer.post("/books", json={"title": f"t{n}"})),
            )
            await asyncio.sleep(0.01)

    load = asyncio.create_task(traffic(60))
    await asyncio.sleep(0.2)
    cluster.redis.stop()
    await asyncio.sleep(0.3)
    cluster.redis.start()
    await load
    assert seen.statuses
    assert 500 not in seen.statuses
    assert set(seen.statuses) <= {200, 201}
    listed = await (await seen(b.get("/books"))).get_json()
    assert listed["_meta"]["total"] == 60  # every write went through


async def test_limits_can_fail_closed(tmp_path: Path, settings_factory: SettingsFactory) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        limits = {**LIMITS, "fail_open": False}
        app = create_app(_settings(settings_factory, server.url, rate_limits=limits))
        async with app.test_app():
            client = app.test_client()
            assert (await client.get("/books")).status_code == 200
            server.stop()
            refused = await client.get("/books")
            assert refused.status_code == 503
            body = await refused.get_json()
            assert "rate limits" in body["_error"]["message"]
            assert "Retry-After" in refused.headers
            assert (await client.get("/healthz")).status_code == 200  # probes are not limited
            server.start()

            async def served() -> bool:
                return int((await client.get("/books")).status_code) == 200

            await _eventually(served)
    finally:
        server.stop()


async def test_a_writer_that_dies_owing_is_covered_by_readers_that_saw_the_outage(
    tmp_path: Path, settings_factory: SettingsFactory
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = _settings(settings_factory, server.url)
        writer_app, reader_app = create_app(settings), create_app(settings)
        async with reader_app.test_app():
            reader = reader_app.test_client()
            async with writer_app.test_app():
                key, _ = await get_auth(writer_app).accounts.create_api_key("w", ["editor"])
                writer = client_with(writer_app, {"X-API-Key": key})
                assert (await writer.post("/books", json={"title": "Before"})).status_code == 201
                await _titles(Seen(), reader)
                assert (await _titles(Seen(), reader))[1].headers["X-Cache"] == "HIT"
                cluster = Cluster(server, [], writer, [], Seen())
                await cluster.snapshot_and_stop()
                assert (await writer.post("/books", json={"title": "During"})).status_code == 201
                assert (await _titles(Seen(), reader))[1].headers["X-Cache"] == "BYPASS"
            # The writer is gone, its invalidation unpaid; Redis returns with the old entry.
            server.start()
            await asyncio.sleep(1.2)  # past the reader's pause after a failure
            titles, response = await _titles(Seen(), reader)
            assert titles == {"Before", "During"}
            assert response.headers["X-Cache"] == "MISS"
    finally:
        server.stop()
