"""Shared state: what every instance must see the same (sessions, revocations,
cache generations, rate limits, idempotency keys).

``SharedState`` is the small interface the rest of Shoal uses. ``RedisState``
is the real one; ``MemoryState`` keeps the same contract inside one process and
is used only when no Redis URL is configured (development, one worker).

Failures to reach Redis leave this module as ``StateUnavailable`` so callers
can decide per feature: bypass (cache), fail open (limits) or answer 503.
"""

from __future__ import annotations

import abc
import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as redis
from quart import Quart
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from .config import RedisSettings
from .errors import ServiceUnavailable

logger = logging.getLogger("shoal.state")

EXTENSION_KEY = "shoal.state"


class StateUnavailable(ServiceUnavailable):
    """Redis cannot be reached; features that need it answer 503."""

    def __init__(self, message: str = "shared state (Redis) is unreachable; retry shortly") -> None:
        super().__init__(message)


class SharedState(abc.ABC):
    """Key-value operations with TTLs, atomic where it matters."""

    name: str = "state"

    def __init__(self, key_prefix: str = "shoal:") -> None:
        self.key_prefix = key_prefix

    def key(self, name: str) -> str:
        """The full key of ``name`` (every key carries the configured prefix)."""
        return self.key_prefix + name

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self
        app.before_serving(self.open)
        app.after_serving(self.close)

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect; the default has nothing to open."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; the default has nothing to close."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StateUnavailable unless the store answers."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store ``value``; with ``only_if_absent`` only when the key is new.

        Returns whether the value was stored.
        """

    @abc.abstractmethod
    async def delete(self, *keys: str) -> int: ...

    @abc.abstractmethod
    async def incr(self, key: str, *, ttl: float | None = None) -> int:
        """Atomically add one and return the new value (a missing key counts as 0).

        With ``ttl``, a key this call creates expires after ``ttl`` seconds.
        """

    @abc.abstractmethod
    async def get_many(self, *keys: str) -> list[bytes | None]:
        """The values of several keys in one round trip."""


class MemoryState(SharedState):
    """In-process shared state: correct for one process, and only for one."""

    name = "memory"

    def __init__(self, key_prefix: str = "shoal:") -> None:
        super().__init__(key_prefix)
        self._data: dict[str, tuple[bytes, float | None]] = {}

    def _live(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    async def ping(self) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        return self._live(self.key(key))

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        key = self.key(key)
        if only_if_absent and self._live(key) is not None:
            return False
        expires = time.monotonic() + ttl if ttl is not None else None
        self._data[key] = (value, expires)
        return True

    async def delete(self, *keys: str) -> int:
        return sum(self._data.pop(self.key(key), None) is not None for key in keys)

    async def incr(self, key: str, *, ttl: float | None = None) -> int:
        key = self.key(key)
        current = self._live(key)
        value = int(current or b"0") + 1
        if current is not None:
            expires = self._data[key][1]
        else:
            expires = time.monotonic() + ttl if ttl is not None else None
        self._data[key] = (str(value).encode(), expires)
        return value

    async def get_many(self, *keys: str) -> list[bytes | None]:
        return [self._live(self.key(key)) for key in keys]


def connect_redis(url: str, *, socket_timeout: float) -> Any:
    """A redis.asyncio client for a URL: standalone, Sentinel or Cluster.

    - ``redis://``, ``rediss://``, ``unix://``: one server;
    - ``redis+sentinel://host:port[,host:port]/service[/db]``: the master of a
      Sentinel-monitored service;
    - ``redis+cluster://host:port``: a Redis Cluster.
    """
    options: dict[str, Any] = {
        "protocol": 3,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "health_check_interval": 15,
    }
    if url.startswith("redis+cluster://"):
        options.pop("health_check_interval")
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"), **options)
    if url.startswith("redis+sentinel://"):
        parts = urlsplit(url)
        hosts = []
        for host_port in parts.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = host_port.partition(":")
            hosts.append((host, int(port or 26379)))
        path = [segment for segment in parts.path.split("/") if segment]
        if not path:
            raise ValueError("a redis+sentinel:// URL names the service: .../SERVICE[/DB]")
        service = path[0]
        db = int(path[1]) if len(path) > 1 else 0
        query = parse_qs(parts.query)
        if "password" in query:
            options["password"] = query["password"][0]
        elif parts.password:
            options["password"] = parts.password
        sentinel = Sentinel(hosts, **options)  # type: ignore[no-untyped-call]
        return sentinel.master_for(service, db=db)
    return redis.Redis.from_url(url, **options)


# INCR, and give the key its TTL when this INCR created it: one atomic step.
_INCR_WITH_TTL = """
local value = redis.call('INCR', KEYS[1])
if value == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return value
"""


class RedisState(SharedState):
    """Shared state in Redis, one client (and connection pool) per worker."""

    name = "redis"

    def __init__(self, settings: RedisSettings) -> None:
        if settings.url is None:
            raise ValueError("RedisState needs a Redis URL")
        super().__init__(settings.key_prefix)
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("shared state is not open; it opens in before_serving")
        return self._client

    async def open(self) -> None:
        if self._client is None:
            assert self.settings.url is not None
            self._client = connect_redis(
                self.settings.url, socket_timeout=self.settings.socket_timeout
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.client, method)(*args, **kwargs)
        except (RedisError, OSError) as error:
            logger.warning("Redis %s failed: %s", method, error)
            raise StateUnavailable() from error

    async def ping(self) -> None:
        await self._call("ping")

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", self.key(key))
        return value

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        px = int(ttl * 1000) if ttl is not None else None
        stored = await self._call("set", self.key(key), value, px=px, nx=only_if_absent)
        return bool(stored)

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self._call("delete", *(self.key(key) for key in keys)))

    async def incr(self, key: str, *, ttl: float | None = None) -> int:
        if ttl is None:
            return int(await self._call("incr", self.key(key)))
        return int(await self._call("eval", _INCR_WITH_TTL, 1, self.key(key), int(ttl * 1000)))

    async def get_many(self, *keys: str) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = await self._call("mget", [self.key(key) for key in keys])
        return values


def create_state(settings: RedisSettings) -> SharedState:
    """Redis when a URL is configured, otherwise the in-process store."""
    if settings.url:
        return RedisState(settings)
    return MemoryState(settings.key_prefix)


def get_state(app: Quart) -> SharedState:
    state: SharedState = app.extensions[EXTENSION_KEY]
    return state
