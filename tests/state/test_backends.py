"""The SharedState contract, held by both MemoryState and RedisState (real Redis)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from shoal.config import RedisSettings
from shoal.errors import ApiError
from shoal.state import MemoryState, Rate, SharedState, StateUnavailable, create_state
from shoal.state.redis import RedisState, connect_redis
from shoal.system import free_port


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[SharedState]:
    prefix = f"test-state:{uuid.uuid4().hex[:12]}:"
    shared: SharedState
    if request.param == "memory":
        shared = MemoryState(prefix)
    else:
        shared = RedisState(RedisSettings(url=redis_url, key_prefix=prefix))
    await shared.open()
    try:
        yield shared
    finally:
        await shared.close()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_get_of_a_missing_key_is_none(state: SharedState) -> None:
    assert await state.get("missing") is None


async def test_set_then_get(state: SharedState) -> None:
    assert await state.set("k", b"v1") is True
    assert await state.get("k") == b"v1"
    assert await state.set("k", b"v2") is True
    assert await state.get("k") == b"v2"


async def test_values_are_bytes_exactly(state: SharedState) -> None:
    value = bytes(range(256))
    await state.set("binary", value)
    assert await state.get("binary") == value


async def test_ttl_expires(state: SharedState) -> None:
    # A TTL far longer than any pause between two calls: still there right after.
    await state.set("short", b"soon gone", ttl=1.0)
    await state.set("long", b"stays", ttl=30)
    assert await state.get("short") == b"soon gone"

    await asyncio.sleep(1.1)

    assert await state.get("short") is None
    assert await state.get("long") == b"stays"


async def test_only_if_absent(state: SharedState) -> None:
    assert await state.set("once", b"first", only_if_absent=True) is True
    assert await state.set("once", b"second", only_if_absent=True) is False
    assert await state.get("once") == b"first"


async def test_only_if_absent_after_expiry(state: SharedState) -> None:
    assert await state.set("lease", b"a", ttl=0.1, only_if_absent=True) is True
    await asyncio.sleep(0.3)
    assert await state.set("lease", b"b", only_if_absent=True) is True
    assert await state.get("lease") == b"b"


async def test_delete(state: SharedState) -> None:
    await state.set("a", b"1")
    await state.set("b", b"2")

    assert await state.delete("a", "b", "never-set") == 2
    assert await state.get("a") is None
    assert await state.get("b") is None
    assert await state.delete("a") == 0
    assert await state.delete() == 0


async def test_incr_from_nothing(state: SharedState) -> None:
    assert await state.incr("counter") == 1
    assert await state.incr("counter") == 2
    assert await state.get("counter") == b"2"


async def test_incr_is_atomic_under_concurrency(state: SharedState) -> None:
    results = await asyncio.gather(*(state.incr("hits") for _ in range(100)))

    assert sorted(results) == list(range(1, 101))
    assert await state.get("hits") == b"100"


async def test_incr_each_adds_one_to_every_key(state: SharedState) -> None:
    await state.set("b", b"41")
    assert await state.incr_each("a", "b", "{other}c") == [1, 42, 1]
    assert await state.get_many("a", "b", "{other}c") == [b"1", b"42", b"1"]
    assert await state.incr_each("a") == [2]
    assert await state.incr_each() == []


async def test_incr_keeps_the_ttl(state: SharedState) -> None:
    await state.set("window", b"5", ttl=1.0)
    assert await state.incr("window") == 6
    await asyncio.sleep(1.1)
    assert await state.get("window") is None


async def test_incr_with_ttl_expires_a_key_it_creates(state: SharedState) -> None:
    assert await state.incr("fresh", ttl=1.0) == 1
    assert await state.incr("fresh", ttl=1.0) == 2
    await asyncio.sleep(1.1)
    assert await state.get("fresh") is None
    assert await state.incr("fresh", ttl=30) == 1


async def test_incr_with_ttl_does_not_extend_an_existing_key(state: SharedState) -> None:
    """A fixed window: later increments do not push the expiry back (one that
    did would keep the key for a minute)."""
    assert await state.incr("window", ttl=1.0) == 1
    assert await state.incr("window", ttl=60) == 2
    await asyncio.sleep(1.1)
    assert await state.get("window") is None


async def test_incr_with_ttl_is_atomic_under_concurrency(state: SharedState) -> None:
    results = await asyncio.gather(*(state.incr("burst", ttl=30) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))


async def test_get_many(state: SharedState) -> None:
    await state.set("x", b"1")
    await state.set("z", b"3")
    await state.set("gone", b"soon", ttl=0.1)
    await asyncio.sleep(0.3)

    assert await state.get_many("x", "y", "z", "gone") == [b"1", None, b"3", None]
    assert await state.get_many() == []


async def test_set_or_get_stores_once_and_returns_what_is_there(state: SharedState) -> None:
    assert await state.set_or_get("claim", b"first", ttl=30) is None
    assert await state.set_or_get("claim", b"second", ttl=30) == b"first"
    assert await state.get("claim") == b"first"


async def test_set_or_get_has_one_winner_under_concurrency(state: SharedState) -> None:
    results = await asyncio.gather(
        *(state.set_or_get("race", str(n).encode(), ttl=30) for n in range(50))
    )
    winners = [n for n, result in enumerate(results) if result is None]
    assert len(winners) == 1
    assert {result for result in results if result is not None} == {str(winners[0]).encode()}


async def test_set_or_get_expires(state: SharedState) -> None:
    assert await state.set_or_get("lease", b"a", ttl=0.1) is None
    await asyncio.sleep(0.3)
    assert await state.set_or_get("lease", b"b", ttl=30) is None
    assert await state.get("lease") == b"b"


async def test_rate_limit_allows_exactly_the_burst_under_concurrency(state: SharedState) -> None:
    rate = Rate(20, 60.0)
    started = time.monotonic()
    results = await asyncio.gather(*(state.rate_limit([("caller", rate)]) for _ in range(100)))
    took = time.monotonic() - started + 0.01  # the clock's own grain
    allowed = [verdicts[0] for verdicts in results if verdicts[0].allowed]
    refused = [verdicts[0] for verdicts in results if not verdicts[0].allowed]
    assert len(allowed) == 20
    assert sorted(verdict.remaining for verdict in allowed) == list(range(20))
    assert all(verdict.remaining == 0 for verdict in refused)
    # One request comes back every period / count seconds, counted from the
    # burst's first request (the burst itself took ``took``).
    assert all(3.0 - took < verdict.retry_after <= 3.0 for verdict in refused)
    assert all(60 - took < verdict.reset <= 60 for verdict in refused)


async def test_rate_limit_refills_at_the_steady_rate(state: SharedState) -> None:
    rate = Rate(2, 2.0)  # one request a second, bursts of 2: three calls take less
    verdicts = [(await state.rate_limit([("steady", rate)]))[0] for _ in range(3)]
    assert [verdict.allowed for verdict in verdicts] == [True, True, False]
    await asyncio.sleep(verdicts[2].retry_after + 0.02)
    assert (await state.rate_limit([("steady", rate)]))[0].allowed


async def test_rate_limit_counts_only_when_every_limit_admits(state: SharedState) -> None:
    wide, narrow = ("wide", Rate(100, 60.0)), ("narrow", Rate(1, 60.0))
    first = await state.rate_limit([wide, narrow])
    assert [verdict.allowed for verdict in first] == [True, True]
    assert first[0].remaining == 99
    second = await state.rate_limit([wide, narrow])
    assert [verdict.allowed for verdict in second] == [True, False]
    assert second[0].remaining == 99  # refused, so not counted against "wide" either
    assert second[1].retry_after > 59


async def test_rate_limit_keys_expire_once_the_bucket_is_full(state: SharedState) -> None:
    await state.rate_limit([("brief", Rate(5, 5.0))])  # full again in a second
    assert await state.get("brief") is not None
    await asyncio.sleep(1.2)
    assert await state.get("brief") is None


async def test_states_with_different_prefixes_do_not_see_each_other(
    state: SharedState, redis_url: str
) -> None:
    other: SharedState
    prefix = f"other:{uuid.uuid4().hex[:12]}:"
    if isinstance(state, RedisState):
        other = RedisState(RedisSettings(url=redis_url, key_prefix=prefix))
    else:
        other = MemoryState(prefix)
    await other.open()
    try:
        await state.set("shared-name", b"mine")
        assert await other.get("shared-name") is None
    finally:
        await other.close()


def test_keys_carry_the_prefix(state: SharedState) -> None:
    assert state.key("abc") == state.key_prefix + "abc"


async def test_redis_keys_carry_the_prefix(redis_url: str, raw_redis: Any) -> None:
    prefix = f"test-prefix:{uuid.uuid4().hex[:12]}:"
    state = RedisState(RedisSettings(url=redis_url, key_prefix=prefix))
    await state.open()
    try:
        await state.set("session", b"abc", ttl=30)
        await state.incr("generation")

        assert await raw_redis.get(prefix + "session") == b"abc"
        assert await raw_redis.get(prefix + "generation") == b"1"
        assert await raw_redis.get("session") is None
        keys = sorted([key async for key in raw_redis.scan_iter(match=prefix + "*")])
        assert keys == [(prefix + "generation").encode(), (prefix + "session").encode()]
        ttl_ms = await raw_redis.pttl(prefix + "session")
        assert 0 < ttl_ms <= 30_000
    finally:
        await state.close()


async def test_redis_down_is_state_unavailable() -> None:
    settings = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    state = RedisState(settings)
    await state.open()
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            state.ping,
            lambda: state.get("k"),
            lambda: state.set("k", b"v"),
            lambda: state.incr("k"),
            lambda: state.delete("k"),
            lambda: state.incr("k", ttl=5),
            lambda: state.get_many("a", "b"),
            lambda: state.set_or_get("k", b"v", ttl=5),
            lambda: state.rate_limit([("k", Rate(1, 1.0))]),
        ]
        for call in calls:
            with pytest.raises(StateUnavailable) as caught:
                await asyncio.wait_for(call(), 10)
            error = caught.value
            assert isinstance(error, ApiError)
            assert error.status == 503
            assert "Retry-After" in error.headers
    finally:
        await state.close()


async def test_redis_state_used_before_open_is_a_clear_error(redis_url: str) -> None:
    state = RedisState(RedisSettings(url=redis_url))
    with pytest.raises(RuntimeError, match="not open"):
        await state.get("k")


def test_create_state_picks_redis_only_with_a_url(redis_url: str) -> None:
    assert isinstance(create_state(RedisSettings(url=redis_url)), RedisState)
    memory = create_state(RedisSettings(url=None, key_prefix="p:"))
    assert isinstance(memory, MemoryState)
    assert memory.key_prefix == "p:"


# --- connect_redis (no connection is made) ----------------------------------------------


async def test_connect_redis_parses_a_sentinel_url() -> None:
    client = connect_redis("redis+sentinel://h1:26379,h2:26380/mymaster/2", socket_timeout=1.5)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "mymaster"
        assert pool.connection_kwargs["db"] == 2
        assert pool.connection_kwargs["socket_timeout"] == 1.5
        sentinels = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in pool.sentinel_manager.sentinels
        ]
        assert sentinels == [("h1", 26379), ("h2", 26380)]
    finally:
        await client.aclose()


async def test_a_sentinel_url_password_is_percent_decoded_as_in_a_redis_url() -> None:
    client = connect_redis("redis+sentinel://:p%40ss%2Fw@h1/cache", socket_timeout=1.0)
    try:
        assert client.connection_pool.connection_kwargs["password"] == "p@ss/w"
    finally:
        await client.aclose()


async def test_connect_redis_sentinel_defaults() -> None:
    client = connect_redis("redis+sentinel://:s3cret@h1/cache", socket_timeout=1.0)
    try:
        pool = client.connection_pool
        assert pool.service_name == "cache"
        assert pool.connection_kwargs["db"] == 0
        assert pool.connection_kwargs["password"] == "s3cret"
        hosts = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in pool.sentinel_manager.sentinels
        ]
        assert hosts == [("h1", 26379)]
    finally:
        await client.aclose()


def test_connect_redis_sentinel_needs_a_service() -> None:
    with pytest.raises(ValueError, match="service"):
        connect_redis("redis+sentinel://h1:26379", socket_timeout=1.0)


async def test_connect_redis_parses_a_cluster_url() -> None:
    client = connect_redis("redis+cluster://node1:7000", socket_timeout=1.5)
    try:
        assert isinstance(client, RedisCluster)
        nodes = client.nodes_manager.startup_nodes
        assert [(node.host, node.port) for node in nodes.values()] == [("node1", 7000)]
    finally:
        await client.aclose()


async def test_connect_redis_plain_url_speaks_resp2() -> None:
    client = connect_redis("redis://cache.example:6380/3", socket_timeout=1.5)
    try:
        assert isinstance(client, redis.Redis)
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example", 6380, 3)
        assert kwargs["protocol"] == 2
    finally:
        await client.aclose()


# -- on a Redis Cluster ------------------------------------------------------------


@pytest.fixture
async def cluster_state(redis_cluster_url: str) -> AsyncIterator[RedisState]:
    prefix = f"test-state:{uuid.uuid4().hex[:12]}:"
    state = RedisState(RedisSettings(url=redis_cluster_url, key_prefix=prefix))
    await state.open()
    try:
        yield state
    finally:
        await state.close()


async def test_on_a_cluster_keys_with_one_hash_tag_are_read_together(
    cluster_state: RedisState,
) -> None:
    await cluster_state.set("auth:{u1}:a", b"1")
    await cluster_state.set("auth:{u1}:b", b"2")
    assert await cluster_state.get_many("auth:{u1}:a", "auth:{u1}:b", "auth:{u1}:c") == [
        b"1",
        b"2",
        None,
    ]
    assert await cluster_state.stamp("auth:{u1}:epoch", ttl=30) > 0
    assert await cluster_state.incr("counter", ttl=30) == 1
    assert await cluster_state.incr("counter", amount=-1) == 0
    assert await cluster_state.incr("absent", amount=-1) == 0
    assert await cluster_state.get("absent") is None


async def test_a_cluster_error_is_state_unavailable_not_a_crash(
    cluster_state: RedisState,
) -> None:
    """Keys in different slots cannot be read in one MGET: redis-py raises a
    RedisClusterException (not a RedisError), which must leave as StateUnavailable
    (a 503), never escape as a 500."""
    with pytest.raises(StateUnavailable):
        await cluster_state.get_many("{a}:one", "{b}:two")


async def test_stamps_only_go_up(state: SharedState) -> None:
    first = await state.stamp("mark", ttl=30)
    second = await state.stamp("mark", ttl=30)
    assert second > first
    # A stamp far in the future (a clock that ran ahead) is still passed.
    await state.set("mark", b"99999999999999", ttl=30)
    assert await state.stamp("mark", ttl=30) == 100_000_000_000_000


async def test_a_negative_incr_never_creates_a_key(state: SharedState) -> None:
    assert await state.incr("undo", amount=-1) == 0
    assert await state.get("undo") is None
    assert await state.incr("undo", ttl=30) == 1
    assert await state.incr("undo", amount=-1) == 0
    assert await state.get("undo") == b"0"
