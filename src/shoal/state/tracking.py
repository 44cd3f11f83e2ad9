"""Redis tells a worker when keys change: server-assisted client-side caching.

A ``KeyWatch`` holds one connection of its own on which Redis tracks keys in
broadcast mode (``CLIENT TRACKING ON BCAST PREFIX …``): whenever any client
changes a key under one of the prefixes, Redis pushes the key's name to the
watch. The connection redirects the pushes to itself and subscribes to
``__redis__:invalidate``, so they arrive as ordinary Pub/Sub messages on a
RESP2 connection that redis-py reads with its public API.

What a worker keeps because of a watch is only as good as the watch, so:

- it is trusted while ``live``: from the moment tracking is on until the
  connection fails, and every loss forgets everything (``on_reset``);
- a silent connection is pinged every ``HEARTBEAT`` seconds and given up when
  the pong does not come within the socket timeout. A ping and the pushes come
  back on one connection in order, so a pong also says that every change made
  before it was seen;
- ``version`` counts the changes seen per key (and the connections opened), so
  a caller can tell whether a change arrived while it was reading the key
  from Redis (``unchanged_since``) and not trust what it read if one did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import RedisError

logger = logging.getLogger("shoal.state")

#: Seconds of silence after which the watch pings Redis.
HEARTBEAT = 1.0
#: Seconds between two attempts to open a lost watch.
REOPEN_AFTER = 1.0
_CHANNEL = b"__redis__:invalidate"


class KeyWatch:
    """Changes to the keys under ``prefixes``, as Redis reports them.

    ``on_change`` gets each changed key (full name, prefix included);
    ``on_reset`` is called whenever what was seen so far can no longer be
    trusted (the watch lost its connection, or the database was flushed).
    ``open_client`` makes a redis-py client of the watch's own, speaking
    RESP2, when the watch starts; the watch takes connections from its pool
    one at a time and closes it on stop.
    """

    def __init__(
        self,
        open_client: Callable[[], Any],
        prefixes: Iterable[str],
        *,
        on_change: Callable[[str], None],
        on_reset: Callable[[], None],
        timeout: float,
    ) -> None:
        self.prefixes = sorted(set(prefixes))
        self._open_client = open_client
        self._client: Any = None
        self._on_change = on_change
        self._on_reset = on_reset
        self._timeout = timeout
        self._live = False
        self._session = 0
        self._changes: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.opened = asyncio.Event()

    @property
    def live(self) -> bool:
        """Whether every change since the watch opened has been seen."""
        return self._live

    def version(self, key: str) -> tuple[int, int]:
        """A mark to compare after reading ``key`` elsewhere (see ``unchanged_since``)."""
        return self._session, self._changes.get(key, 0)

    def unchanged_since(self, key: str, version: tuple[int, int]) -> bool:
        """Whether the watch was live and saw no change of ``key`` since ``version``."""
        return self._live and self.version(key) == version

    def changed(self, key: str) -> None:
        """Count a change of ``key`` made here (a write's own bump), as if pushed."""
        self._changes[key] = self._changes.get(key, 0) + 1

    def start(self) -> None:
        if self._task is None:
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
                    "the cache's key watch lost Redis (%s); reopening",
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
                command += ["PREFIX", prefix]
            await self._ask(connection, *command)
            await self._ask(connection, "SUBSCRIBE", _CHANNEL)
        self._session += 1
        self._live = True
        self.opened.set()
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
            key = raw.decode()
            self.changed(key)
            self._on_change(key)

    def _lose(self) -> None:
        if self._live:
            self._live = False
            self.opened.clear()
        self._forget()

    def _forget(self) -> None:
        self._session += 1
        self._changes.clear()
        self._on_reset()
