"""KeyWatch on a real Redis: what Redis pushes reaches the watch, and whatever
makes the pushes untrustworthy (a lost connection, a flushed database) resets it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from shoal.config import RedisSettings
from shoal.state.redis import RedisState
from shoal.state.tracking import KeyWatch
from tests.utils.servers import RedisServer


class Seen:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.resets = 0
        self.event = asyncio.Event()

    def change(self, key: str) -> None:
        self.changes.append(key)
        self.event.set()

    def reset(self) -> None:
        self.resets += 1
        self.event.set()

    async def next(self) -> None:
        await asyncio.wait_for(self.event.wait(), 5)
        self.event.clear()


@pytest.fixture
async def watched(own_redis: RedisServer) -> AsyncIterator[tuple[RedisState, KeyWatch, Seen]]:
    state = RedisState(RedisSettings(url=own_redis.url, key_prefix="t:", socket_timeout=1.0))
    seen = Seen()
    watch = state.watch()
    assert watch is not None
    watch.subscribe(["cache:{a}:gen", "cache:{b}:gen"], on_change=seen.change, on_reset=seen.reset)
    await state.open()  # opens the watch too
    await asyncio.wait_for(watch.opened.wait(), 5)
    try:
        yield state, watch, seen
    finally:
        await state.close()


async def test_a_change_anywhere_is_pushed_without_the_prefix(
    watched: tuple[RedisState, KeyWatch, Seen],
) -> None:
    state, watch, seen = watched
    before = watch.version("a")
    await state.incr("cache:{x}:gen")  # not watched
    await state.incr("cache:{a}:gen")
    await seen.next()
    assert seen.changes == ["cache:{a}:gen"]
    assert not watch.unchanged_since("a", before)
    assert watch.unchanged_since("b", watch.version("b"))
    await state.set("cache:{b}:gen", b"7")
    await seen.next()
    assert seen.changes == ["cache:{a}:gen", "cache:{b}:gen"]


async def test_a_flushed_database_resets_the_watch(
    watched: tuple[RedisState, KeyWatch, Seen],
) -> None:
    state, watch, seen = watched
    before = watch.version("a")
    await state.client.flushdb()
    await seen.next()
    assert seen.resets == 1
    assert not watch.unchanged_since("a", before)
    assert watch.live


def _open_watches() -> float:
    return REGISTRY.get_sample_value("shoal_key_watches_open") or 0.0


async def test_a_lost_connection_resets_the_watch_until_it_is_open_again(
    watched: tuple[RedisState, KeyWatch, Seen],
) -> None:
    state, watch, seen = watched
    open_now = _open_watches()
    before = watch.version("a")
    killed = await state.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed == 1
    await seen.next()
    assert seen.resets == 1
    assert not watch.live
    assert _open_watches() == open_now - 1  # the metric operators watch
    assert not watch.unchanged_since("a", before)
    await asyncio.wait_for(watch.opened.wait(), 5)
    assert _open_watches() == open_now
    await state.incr("cache:{a}:gen")
    await seen.next()
    assert seen.changes == ["cache:{a}:gen"]


async def test_subscribers_get_the_changes_under_their_own_prefixes(
    own_redis: RedisServer,
) -> None:
    state = RedisState(RedisSettings(url=own_redis.url, key_prefix="t:", socket_timeout=1.0))
    cache, auth = Seen(), Seen()
    watch = state.watch()
    assert watch is not None
    assert state.watch() is watch  # one watch per worker
    watch.subscribe(["cache:{a}:gen"], on_change=cache.change, on_reset=cache.reset)
    watch.subscribe(["auth:", "auth:{u1}:"], on_change=auth.change, on_reset=auth.reset)
    assert watch.prefixes == ["auth:", "cache:{a}:gen"]  # none inside another
    await state.open()
    try:
        await asyncio.wait_for(watch.opened.wait(), 5)
        with pytest.raises(RuntimeError):
            watch.subscribe(["late:"], on_change=print, on_reset=print)
        user = watch.version("u1")
        await state.set("auth:{u1}:revoked:j1", b"1")
        await auth.next()
        assert auth.changes == ["auth:{u1}:revoked:j1"]
        assert cache.changes == []
        assert not watch.unchanged_since("u1", user)
        await state.client.flushdb()
        await cache.next()
        await auth.next()
        assert (cache.resets, auth.resets) == (1, 1)
    finally:
        await state.close()
    assert (cache.resets, auth.resets) == (2, 2)  # closing loses the watch too


def test_a_cluster_has_no_watch() -> None:
    settings = RedisSettings(url="redis+cluster://127.0.0.1:7000")
    assert RedisState(settings).watch() is None
