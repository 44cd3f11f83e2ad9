"""Shoal on Redis Sentinel (``redis+sentinel://``): one master, one replica,
three sentinels, all real processes.

Under load, the master is killed; the sentinels promote the replica and Shoal
follows it, asking the sentinels for the master on every new connection.
Public reads never fail (the cache is bypassed during the switch), writes that
need no Redis all succeed, writes that need it (an ``Idempotency-Key``) get a
clear 503 for a few seconds, and every acknowledged write is in MongoDB once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.config import Settings
from shoal.policies.cache import get_cache
from shoal.storage import get_storage
from tests.conftest import SettingsFactory
from tests.utils.auth import client_with
from tests.utils.sentinel import RedisSentinel
from tests.utils.settings import example_resources

#: Bounds of the load: rounds, and seconds after the master is killed.
MAX_ROUNDS = 2000
FAILOVER_BUDGET = 40.0


@pytest.fixture(scope="module")
def sentinel(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """One Sentinel setup for the module and engine (its last test kills the
    master, so each engine's run gets a setup of its own)."""
    setup = RedisSentinel(tmp_path_factory.mktemp(f"sentinel-{engine}")).start()
    try:
        yield setup
    finally:
        setup.stop()


def _settings(factory: SettingsFactory, url: str) -> Settings:
    resources = example_resources()
    resources["books"].update(cache_ttl=300, cache_tier="worker")
    return factory(
        resources=resources,
        rate_limits={"read": "100000/minute", "write": "100000/minute"},
        redis={"url": url, "socket_timeout": 0.5},
    )


class Pair:
    """Two instances; writers use an API key (checked in MongoDB)."""

    def __init__(self, apps: list[Quart], key: str) -> None:
        self.apps = apps
        self.readers: list[Client] = [app.test_client() for app in apps]
        self.writers: list[Client] = [client_with(app, {"X-API-Key": key}) for app in apps]


@pytest.fixture
async def pair(settings_factory: SettingsFactory, sentinel: RedisSentinel) -> AsyncIterator[Pair]:
    settings = _settings(settings_factory, sentinel.url)
    apps = [create_app(settings), create_app(settings)]
    async with apps[0].test_app(), apps[1].test_app():
        key, _ = await get_auth(apps[0]).accounts.create_api_key("writer", ["editor"])
        yield Pair(apps, key)


async def _watching(apps: list[Quart]) -> None:
    """Until each instance's cache watch is open on the current master."""
    for app in apps:
        watch = get_cache(app).tier.watch
        assert watch is not None
        await asyncio.wait_for(watch.opened.wait(), 5)


async def test_the_cache_and_idempotency_keys_work_through_sentinel(pair: Pair) -> None:
    (a, b), (first, second) = pair.readers, pair.writers
    await _watching(pair.apps)  # the worker tier's watch, through Sentinel
    key = {"Idempotency-Key": str(uuid.uuid4())}
    created = await first.post("/books", json={"title": "Dune"}, headers=key)
    replayed = await second.post("/books", json={"title": "Dune"}, headers=key)
    assert (created.status_code, replayed.status_code) == (201, 201)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    item = f"/books/{(await created.get_json())['_id']}"
    assert (await a.get(item)).headers["X-Cache"] == "MISS"
    assert (await b.get(item)).headers["X-Cache"] == "HIT"
    # A write through one instance reaches the other's memory through Sentinel's master.
    etag = (await (await b.get(item)).get_json())["_etag"]
    assert (await b.get(item)).headers["X-Cache"] == "HIT"
    patched = await first.patch(item, json={"year": 1965}, headers={"If-Match": etag})
    assert patched.status_code == 200
    deadline = time.monotonic() + 5
    while (await (await b.get(item)).get_json()).get("year") != 1965:
        assert time.monotonic() < deadline, "the invalidation never reached the other instance"
        await asyncio.sleep(0.005)


async def test_a_failover_under_load_loses_no_acknowledged_write(
    pair: Pair, sentinel: RedisSentinel
) -> None:
    (a, b), (writer, other_writer) = pair.readers, pair.writers
    ack = await (await writer.post("/books", json={"title": "Before"})).get_json()
    item = f"/books/{ack['_id']}"
    seen: dict[str, Counter[int]] = {"read": Counter(), "plain": Counter(), "keyed": Counter()}
    acknowledged: list[str] = []
    keyed_in_a_row = 0

    async def one_round(n: int) -> None:
        nonlocal keyed_in_a_row
        reader = (a, b)[n % 2]
        read_item, read_list, plain, keyed = await asyncio.gather(
            reader.get(item),
            reader.get("/books?max_results=5"),
            writer.post("/books", json={"title": f"plain {n}"}),
            (writer, other_writer)[n % 2].post(
                "/books", json={"title": f"keyed {n}"}, headers={"Idempotency-Key": f"k-{n}"}
            ),
        )
        for response in (read_item, read_list):
            seen["read"][response.status_code] += 1
        seen["plain"][plain.status_code] += 1
        seen["keyed"][keyed.status_code] += 1
        keyed_in_a_row = keyed_in_a_row + 1 if keyed.status_code == 201 else 0
        for response in (plain, keyed):
            if response.status_code == 201:
                acknowledged.append((await response.get_json())["_id"])

    n = 0
    for n in range(10):  # healthy
        await one_round(n)
    old_master = sentinel.kill_master()
    killed_at = time.monotonic()
    keyed_in_a_row = 0
    followed_at: float | None = None
    while n < MAX_ROUNDS and time.monotonic() - killed_at < FAILOVER_BUDGET:
        n += 1
        await one_round(n)
        if followed_at is None and keyed_in_a_row >= 10:
            followed_at = time.monotonic()
            break
        await asyncio.sleep(0.02)

    print(
        f"\nfailover: rounds {n + 1}, reads {dict(seen['read'])}, writes without a key "
        f"{dict(seen['plain'])}, writes with a key {dict(seen['keyed'])}, "
        f"Shoal followed after {(followed_at or time.monotonic()) - killed_at:.1f} s"
    )
    assert followed_at is not None, "Shoal did not follow the new master"
    assert sentinel.current_master() == sentinel.replica_port != old_master
    assert set(seen["read"]) == {200}  # public reads: no 5xx, ever
    assert set(seen["plain"]) == {201}  # writes that need no Redis: every one done
    assert set(seen["keyed"]) <= {201, 503}  # writes that need Redis: done, or a clear 503
    # No acknowledged write lost, none twice.
    stored = await get_storage(pair.apps[0]).find_page(
        "books", {}, sort=None, projection={"_id": 1}, skip=0, limit=100_000
    )
    ids = [str(document["_id"]) for document in stored]
    assert len(ids) == len(set(ids))
    assert set(acknowledged) <= set(ids)
    assert len(ids) == len(acknowledged) + 1  # and nothing unacknowledged either
    # The new master serves everything again: cache hits (once each instance's
    # pause after a failure is over), replays across instances.
    deadline = time.monotonic() + 5
    while (await a.get(item)).headers["X-Cache"] != "HIT" or (
        (await b.get(item)).headers["X-Cache"] != "HIT"
    ):
        assert time.monotonic() < deadline, "the cache did not come back"
        await asyncio.sleep(0.2)
    await _watching(pair.apps)  # the watches followed the new master too
    key: dict[str, Any] = {"Idempotency-Key": str(uuid.uuid4())}
    first = await writer.post("/books", json={"title": "After"}, headers=key)
    again = await other_writer.post("/books", json={"title": "After"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
