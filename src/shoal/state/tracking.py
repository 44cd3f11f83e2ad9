"""Redis tells a worker when keys change: server-assisted client-side caching.

A ``KeyWatch`` holds one connection of its own on which Redis tracks keys in
broadcast mode (``CLIENT TRACKING ON BCAST PREFIX …``): whenever any client
changes a key under one of the subscribed prefixes, Redis pushes the key's name
to the watch. The connection redirects the pushes to itself and subscribes to
``__redis__:invalidate``, so they arrive as ordinary Pub/Sub messages on a
RESP2 connection that redis-py reads with its public API. One watch serves a
worker: each part of Shoal that keeps something in memory ``subscribe``s its
prefixes before the watch starts.

What a worker keeps because of a watch is only as good as the watch, so:

- it is trusted while ``live``: from the moment tracking is on until the
  connection fails, and every loss calls every subscriber's ``on_reset``;
- a silent connection is pinged every ``HEARTBEAT`` seconds and given up when
  the pong does not come within the socket timeout. A ping and the pushes come
  back on one connection in order, so a pong also says that every change made
  before it was seen;
- ``version`` counts the changes seen per hash tag (every key of Shoal's has
  one: ``cache:{books}:gen``, ``auth:{<user id>}:epoch``), so a caller can tell
  whether a change of that tag's keys arrived while it was reading them from
  Redis (``unchanged_since``) and not trust what it read if one did. The counts
  sit in a fixed number of buckets: two tags that share one only make a read
  less often trusted, never more.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from ..metrics import KEY_WATCHES_OPEN
from .keys import hash_tag

logger = logging.getLogger("shoal.state")

#: Seconds of silence after which the watch pings Redis.
HEARTBEAT = 1.0
#: Seconds between two attempts to open a lost watch.
REOPEN_AFTER = 1.0
#: Buckets of change counts (see ``version``).
BUCKETS = 4096
_CHANNEL = b"__redis__:invalidate"


@dataclass(frozen=True)
class _Subscription:
    prefixes: tuple[str, ...]
    on_change: Callable[[str], None]
    on_reset: Callable[[], None]


class KeyWatch:
    """Changes of keys, as Redis reports them, for the subscribers of their prefixes.

    Key names here are without the configured ``key_prefix``. ``open_client``
    makes a redis-py client of the watch's own, speaking RESP2, when the watch
    starts; the watch takes connections from its pool one at a time and closes
    it on stop.
    """

    def __init__(self, open_client: Callable[[], Any], *, key_prefix: str, timeout: float) -> None:
        self._open_client = open_client
        self._key_prefix = key_prefix
        self._timeout = timeout
        self._client: Any = None
        self._subscriptions: list[_Subscription] = []
        self._live = False
        self._session = 0
        self._changes = [0] * BUCKETS
        self._task: asyncio.Task[None] | None = None
        self.opened = asyncio.Event()

    def subscribe(
        self,
        prefixes: Iterable[str],
        *,
        on_change: Callable[[str], None],
        on_reset: Callable[[], None],
    ) -> None:
        """Call ``on_change(key)`` for each changed key under ``prefixes``, and
        ``on_reset()`` whenever what was seen can no longer be trusted (the
        watch lost Redis, or the database was flushed). Before ``start``."""
        if self._task is not None:
            raise RuntimeError("subscribe before the watch starts")
        self._subscriptions.append(_Subscription(tuple(prefixes), on_change, on_reset))

    @property
    def prefixes(self) -> list[str]:
        """Every subscribed prefix, none inside another (Redis refuses overlaps)."""
        found = sorted({p for s in self._subscriptions for p in s.prefixes})
        return [p for i, p in enumerate(found) if not any(p.startswith(q) for q in found[:i])]

    @property
    def live(self) -> bool:
        """Whether every change since the watch opened has been seen."""
        return self._live

    def version(self, tag: str) -> tuple[int, int]:
        """A mark to compare after reading keys of ``tag`` from Redis (see ``unchanged_since``)."""
        return self._session, self._changes[_bucket(tag)]

    def unchanged_since(self, tag: str, version: tuple[int, int]) -> bool:
        """Whether the watch was live and saw no change of ``tag``'s keys since ``version``."""
        return self._live and self.version(tag) == version

    def changed(self, tag: str) -> None:
        """Count a change of ``tag``'s keys made here (a write's own), as if pushed."""
        self._changes[_bucket(tag)] += 1

    def start(self) -> None:
        if self._task is None and self._subscriptions:
            self._client = self._open_client()
            self._task = asyncio.create_task(self._run(), name="shoal-key-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            client, self._client = self._client, None
            await client.aclose()

    async def _run(self) -> None:
        while True:
            connection = self._client.connection_pool.make_connection()
            try:
                await self._watch(connection)
            except (RedisError, OSError) as error:
                logger.warning(
                    "the key watch (client-side caching) lost Redis (%s); reopening",
                    error or type(error).__name__,
                )
            finally:
                self._lose()
                await connection.disconnect(nowait=True)
            await asyncio.sleep(REOPEN_AFTER)

    async def _watch(self, connection: Any) -> None:
        async with asyncio.timeout(self._timeout):
            await connection.connect()
            client_id = await self._ask(connection, "CLIENT", "ID")
            command: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST"]
            for prefix in self.prefixes:
                command += ["PREFIX", self._key_prefix + prefix]
            await self._ask(connection, *command)
            await self._ask(connection, "SUBSCRIBE", _CHANNEL)
        self._session += 1
        self._live = True
        self.opened.set()
        KEY_WATCHES_OPEN.inc()
        pinged: float | None = None
        while True:
            wait = HEARTBEAT if pinged is None else pinged + self._timeout - time.monotonic()
            reply = await connection.read_response(timeout=max(wait, 0.001))
            if reply is None:  # nothing within ``wait``
                if pinged is not None:
                    raise TimeoutError("no answer to a ping")
                await connection.send_command("PING")
                pinged = time.monotonic()
            elif reply[0] == b"pong":
                pinged = None
            elif reply[0] == b"message" and reply[1] == _CHANNEL:
                self._pushed(reply[2])

    @staticmethod
    async def _ask(connection: Any, *command: Any) -> Any:
        await connection.send_command(*command)
        reply = await connection.read_response()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _pushed(self, keys: list[bytes] | None) -> None:
        if keys is None:  # FLUSHDB / FLUSHALL: every key changed
            self._forget()
            return
        for raw in keys:
            key = raw.decode().removeprefix(self._key_prefix)
            self.changed(hash_tag(key))
            for subscription in self._subscriptions:
                if key.startswith(subscription.prefixes):
                    subscription.on_change(key)

    def _lose(self) -> None:
        if self._live:
            self._live = False
            self.opened.clear()
            KEY_WATCHES_OPEN.dec()
        self._forget()

    def _forget(self) -> None:
        self._session += 1
        for subscription in self._subscriptions:
            subscription.on_reset()


def _bucket(tag: str) -> int:
    return zlib.crc32(tag.encode()) % BUCKETS
