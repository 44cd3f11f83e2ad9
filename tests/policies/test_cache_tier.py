"""The worker-memory tier of the cache (``cache_tier: worker``), over HTTP, on real
Redis: answers from a worker's memory, a write through another instance seen
once Redis's push arrives, the writer's own writes at once, and nothing kept
from memory once the watch on Redis is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import ConfigError
from shoal.policies.cache import get_cache
from shoal.state import generation_key, get_state
from shoal.state.redis import RedisState
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client
from tests.utils.cache import OWNED_NOTES, worker_tier_ready
from tests.utils.http import create, if_match
from tests.utils.instances import two_served
from tests.utils.settings import example_resources


def tiered_resources() -> dict[str, Any]:
    resources = example_resources()
    resources["books"] = {**resources["books"], "cache_ttl": 60, "cache_tier": "worker"}
    return resources


@pytest.fixture
async def two_tiered(settings_factory: SettingsFactory) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two instances, books cached in each worker's memory in front of Redis."""
    async with two_served(settings_factory(resources=tiered_resources())) as apps:
        for app in apps:
            watch = get_cache(app).tier.watch
            assert watch is not None
            await asyncio.wait_for(watch.opened.wait(), 5)
        yield apps


async def _drop_redis_entries(app: Quart) -> int:
    """Delete the books' cached answers from Redis (not their generation): what
    is still answered as a hit after this comes from a worker's memory."""
    state = get_state(app)
    assert isinstance(state, RedisState)
    keys = [key async for key in state.client.scan_iter(match=state.key("cache:{books}:item:*"))]
    keys += [key async for key in state.client.scan_iter(match=state.key("cache:{books}:list:*"))]
    return int(await state.client.delete(*keys)) if keys else 0


async def _year(client: Client, path: str) -> tuple[int, str]:
    response = await client.get(path)
    assert response.status_code == 200
    return (await response.get_json())["year"], response.headers["X-Cache"]


async def test_a_kept_answer_is_served_from_the_workers_memory(
    two_tiered: tuple[Quart, Quart],
) -> None:
    app = two_tiered[0]
    editor = await editor_client(app)
    ack = await create(editor, "books", {"title": "Dune", "year": 1965})
    anonymous = app.test_client()
    path = f"/books/{ack['_id']}"
    assert await _year(anonymous, path) == (1965, "MISS")
    assert await _drop_redis_entries(app) == 1
    # Redis holds no answer any more, yet this worker answers from its memory,
    # on the fast path (anonymous) and on the app's (signed in) alike.
    assert await _year(anonymous, path) == (1965, "HIT")
    # Books are public: a signed-in reader's answer has the same key.
    assert await _year(editor, path) == (1965, "HIT")
    not_modified = await anonymous.get(path, headers={"If-None-Match": f'"{ack["_etag"]}"'})
    assert not_modified.status_code == 304


async def test_a_write_on_another_instance_is_seen_once_its_push_arrives(
    two_tiered: tuple[Quart, Quart],
) -> None:
    first, second = [await editor_client(app) for app in two_tiered]
    ack = await create(first, "books", {"title": "Dune", "year": 0})
    path, etag = f"/books/{ack['_id']}", ack["_etag"]
    for round_ in range(1, 6):
        await second.get(path)
        await _drop_redis_entries(two_tiered[1])
        assert await _year(second, path) == (round_ - 1, "HIT")  # from memory
        patched = await first.patch(path, json={"year": round_}, headers=if_match(etag))
        assert patched.status_code == 200
        etag = (await patched.get_json())["_etag"]
        # The writer's own worker forgets at once...
        assert (await _year(first, path))[0] == round_
        # ...the other instance once Redis's push has reached it (a bounded wait).
        deadline = time.monotonic() + 5
        while (await _year(second, path))[0] != round_:
            assert time.monotonic() < deadline, "the invalidation never arrived"
            await asyncio.sleep(0.005)


async def test_nothing_is_served_from_memory_once_the_watch_is_lost(
    two_tiered: tuple[Quart, Quart],
) -> None:
    app = two_tiered[0]
    anonymous = app.test_client()
    editor = await editor_client(app)
    ack = await create(editor, "books", {"title": "Dune", "year": 1965})
    path = f"/books/{ack['_id']}"
    await anonymous.get(path)
    await _drop_redis_entries(app)
    assert await _year(anonymous, path) == (1965, "HIT")
    watch = get_cache(app).tier.watch
    assert watch is not None
    state = get_state(app)
    assert isinstance(state, RedisState)
    # Kill the watch's connection: from then on, until it is open again, every
    # read asks Redis, which holds no answer.
    client_id = await _watch_client_id(state)
    await state.client.execute_command("CLIENT", "KILL", "ID", client_id)
    await _until(lambda: not watch.live)
    assert await _year(anonymous, path) == (1965, "MISS")
    await asyncio.wait_for(watch.opened.wait(), 5)
    await _drop_redis_entries(app)
    assert await _year(anonymous, path) == (1965, "MISS")
    assert await _year(anonymous, path) == (1965, "HIT")


async def _watch_client_id(state: RedisState) -> int:
    """The id of the watch's connection: the one that tracks with broadcasts."""
    listing: str = (await state.client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")).decode()
    ids = [
        int(dict(part.split("=", 1) for part in line.split() if "=" in part)["id"])
        for line in listing.splitlines()
        if "flags=" in line and "t" in line.split("flags=")[1].split()[0]
    ]
    assert ids, listing
    return ids[0]


async def _until(check: Any) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def test_a_worker_tier_needs_a_cache_ttl(settings_factory: SettingsFactory) -> None:
    resources = example_resources()
    resources["books"] = {**resources["books"], "cache_tier": "worker"}
    with pytest.raises(ConfigError, match="cache_tier: worker keeps cached answers"):
        settings_factory(resources=resources)


async def test_a_generation_read_while_its_push_arrived_is_not_trusted(
    two_tiered: tuple[Quart, Quart],
) -> None:
    app = two_tiered[0]
    tier = get_cache(app).tier
    watch = tier.watch
    assert watch is not None
    version = tier.version("books")  # a read of books' generation begins...
    await get_state(app).incr(generation_key("books"))  # ...another instance writes...
    await _until(lambda: not watch.unchanged_since("books", version))  # ...its push arrives
    tier.learn("books", 0, version)  # ...and the read's answer comes back: not trusted
    tier.keep("books", "key", 0, {}, b"old")
    assert tier.lookup("books", "key") is None
    version = tier.version("books")
    tier.learn("books", 1, version)
    tier.keep("books", "key", 1, {"ETag": '"e"'}, b"new")
    assert tier.lookup("books", "key") == ({"ETag": '"e"'}, b"new")


async def test_owners_answers_never_cross_in_a_workers_memory(
    settings_factory: SettingsFactory,
) -> None:
    resources = tiered_resources()
    resources["notes"] = {**OWNED_NOTES, "cache_tier": "worker"}  # auth_field: owner
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        local_hits = await worker_tier_ready(app, "notes")
        owner_a = await editor_client(app, name="owner_a")
        owner_b = await editor_client(app, name="owner_b")
        mine = await create(owner_a, "notes", {"text": "owner_a's"})
        await create(owner_b, "notes", {"text": "owner_b's"})
        before = local_hits()
        for _ in range(3):  # from the second round on, from the worker's memory
            for client, text in ((owner_a, "owner_a's"), (owner_b, "owner_b's")):
                page = await (await client.get("/notes")).get_json()
                assert [note["text"] for note in page["_items"]] == [text]
        assert local_hits() - before == 4
        assert (await owner_a.get(f"/notes/{mine['_id']}")).status_code == 200
        assert (await owner_a.get(f"/notes/{mine['_id']}")).headers["X-Cache"] == "HIT"
        assert (await owner_b.get(f"/notes/{mine['_id']}")).status_code == 404
        assert (await app.test_client().get("/notes")).status_code == 401
