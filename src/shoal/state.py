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
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Rate:
    """A rate limit: at most ``count`` requests per ``period`` seconds (GCRA)."""

    count: int
    period: float

    @property
    def interval_us(self) -> int:
        """Microseconds between two requests at the steady rate (at least 1)."""
        return max(1, int(self.period * 1_000_000) // self.count)


@dataclass(frozen=True)
class RateVerdict:
    """What one rate limit said about one request."""

    #: This limit had room for the request (it was counted only if every limit had).
    allowed: bool
    limit: int
    #: Requests still allowed right now, after this one.
    remaining: int
    #: Seconds until the whole quota is available again.
    reset: float
    #: Seconds until a request would be allowed (0 when allowed).
    retry_after: float


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

    @abc.abstractmethod
    async def set_or_get(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        """Store ``value`` unless ``key`` exists, in one atomic step.

        Returns None when this call stored the value, else the value already there
        (which is left as it is).
        """

    @abc.abstractmethod
    async def rate_limit(self, limits: Sequence[tuple[str, Rate]]) -> list[RateVerdict]:
        """Count one request against every ``(key, rate)`` with GCRA, atomically.

        The request is counted only when every limit has room for it; each key
        expires once its bucket is full again. One verdict per limit, in order::

            verdicts = await state.rate_limit([("rl:ip:1.2.3.4", Rate(100, 60.0))])
            allowed = all(verdict.allowed for verdict in verdicts)
        """


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

    async def set_or_get(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        existing = self._live(self.key(key))
        if existing is not None:
            return existing
        self._data[self.key(key)] = (value, time.monotonic() + ttl)
        return None

    async def rate_limit(self, limits: Sequence[tuple[str, Rate]]) -> list[RateVerdict]:
        # The same GCRA as the Redis script (_GCRA), on this process's monotonic clock.
        now = time.monotonic_ns() // 1000
        tats = []
        for key, _ in limits:
            stored = self._live(self.key(key))
            tats.append(max(int(stored) if stored is not None else now, now))
        admitted = [
            tat + rate.interval_us - rate.interval_us * rate.count <= now
            for tat, (_, rate) in zip(tats, limits, strict=True)
        ]
        counted = all(admitted)
        verdicts = []
        for tat, ok, (key, rate) in zip(tats, admitted, limits, strict=True):
            interval, capacity = rate.interval_us, rate.interval_us * rate.count
            if counted:
                tat += interval
                expires = time.monotonic() + (tat - now) / 1_000_000
                self._data[self.key(key)] = (str(tat).encode(), expires)
            verdicts.append(
                RateVerdict(
                    allowed=ok,
                    limit=rate.count,
                    remaining=max(0, (capacity - (tat - now)) // interval),
                    reset=(tat - now) / 1_000_000,
                    retry_after=0.0 if ok else (tat + interval - capacity - now) / 1_000_000,
                )
            )
        return verdicts


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

# GCRA over several limits at once, on Redis's clock (so instances' clocks never
# matter). Each key holds a theoretical arrival time (TAT) in microseconds.
# ARGV holds, per key, the interval between requests (µs) and the request count;
# the capacity is interval * count, so a burst of exactly `count` fits. The
# request is counted (every TAT moved on) only if every limit admits it.
# Replies, per key: {admitted 0/1, remaining, µs until full, µs until allowed}.
_GCRA = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tats, admitted, counted = {}, {}, true
for i, key in ipairs(KEYS) do
  local interval, count = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  admitted[i] = tat + interval - interval * count <= now
  if not admitted[i] then counted = false end
end
local reply = {}
for i, key in ipairs(KEYS) do
  local interval, count = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local capacity, tat = interval * count, tats[i]
  if counted then
    tat = tat + interval
    redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
  end
  local retry = 0
  if not admitted[i] then retry = tat + interval - capacity - now end
  local remaining = math.floor((capacity - (tat - now)) / interval)
  if remaining < 0 then remaining = 0 end
  reply[i] = {admitted[i] and 1 or 0, remaining, tat - now, retry}
end
return reply
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
        self._gcra: Any = None

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
        self._gcra = None
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

    async def set_or_get(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        # SET NX GET (Redis >= 7.0): the old value, or nil when this SET stored it.
        existing: bytes | None = await self._call(
            "set", self.key(key), value, px=max(1, int(ttl * 1000)), nx=True, get=True
        )
        return existing

    async def rate_limit(self, limits: Sequence[tuple[str, Rate]]) -> list[RateVerdict]:
        if not limits:
            return []
        if self._gcra is None:
            self._gcra = self.client.register_script(_GCRA)
        args: list[int] = []
        for _, rate in limits:
            args += [rate.interval_us, rate.count]
        keys = [self.key(key) for key, _ in limits]
        try:
            reply = await self._gcra(keys=keys, args=args)
        except (RedisError, OSError) as error:
            logger.warning("Redis rate limit script failed: %s", error)
            raise StateUnavailable() from error
        return [
            RateVerdict(
                allowed=bool(admitted),
                limit=rate.count,
                remaining=int(remaining),
                reset=int(until_full) / 1_000_000,
                retry_after=int(until_allowed) / 1_000_000,
            )
            for (admitted, remaining, until_full, until_allowed), (_, rate) in zip(
                reply, limits, strict=True
            )
        ]


def create_state(settings: RedisSettings) -> SharedState:
    """Redis when a URL is configured, otherwise the in-process store."""
    if settings.url:
        return RedisState(settings)
    return MemoryState(settings.key_prefix)


def get_state(app: Quart) -> SharedState:
    state: SharedState = app.extensions[EXTENSION_KEY]
    return state
