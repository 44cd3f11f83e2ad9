"""Shared state in Redis: standalone, Sentinel or Cluster, from one URL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from ..config import RedisSettings
from ..metrics import redis_command
from .base import Rate, RateVerdict, SharedState, StateUnavailable
from .tracking import KeyWatch

logger = logging.getLogger("shoal.state")

#: What a failed Redis call raises. redis-py's cluster client raises
#: ``RedisClusterException`` (not a ``RedisError``) when it cannot map keys to
#: nodes, e.g. a multi-key command whose keys live in different slots.
REDIS_FAILURES = (RedisError, RedisClusterException, OSError)


def connect_redis(url: str, *, socket_timeout: float, protocol: int = 2) -> Any:
    """A redis.asyncio client for a URL: standalone, Sentinel or Cluster.

    - ``redis://``, ``rediss://``, ``unix://``: one server;
    - ``redis+sentinel://host:port[,host:port]/service[/db]``: the master of a
      Sentinel-monitored service;
    - ``redis+cluster://host:port``: a Redis Cluster.

    Every client speaks RESP2 unless told otherwise: redis-py 8.2 with hiredis
    spends about 15 µs less CPU on a call than over RESP3 (an MGET of two keys
    on loopback, 5,000 calls: 78 µs against 93), and no command Shoal sends
    needs RESP3's types.

    Every client tries a failed command once more, at once, on a new
    connection (one the server closed while it sat in the pool), and no more:
    redis-py's Cluster client would otherwise try ten more times with a
    backoff between tries (seconds of waiting for a node that is gone).
    ``RedisState`` bounds each call's total time besides.
    """
    options: dict[str, Any] = {
        "protocol": protocol,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 1),
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
            options["password"] = unquote(parts.password)  # as redis-py reads redis://
        # redis-py 8 types Sentinel; older releases leave it untyped.
        sentinel = Sentinel(hosts, **options)  # type: ignore[no-untyped-call, unused-ignore]
        return sentinel.master_for(service, db=db)
    return redis.Redis.from_url(url, **options)


# INCRBY, and give the key its TTL (ARGV[2] ms, 0 for none) when this call
# created it; a negative amount never creates the key. One atomic step.
_INCR = """
local amount = tonumber(ARGV[1])
local existed = redis.call('EXISTS', KEYS[1])
if existed == 0 and amount < 0 then return 0 end
local value = redis.call('INCRBY', KEYS[1], amount)
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# A stamp above the old one: Redis's clock in ms, or the old stamp + 1 when the
# clock has not passed it. TTL in ARGV[1] (ms).
_STAMP = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local value = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if value <= old then value = old + 1 end
redis.call('SET', KEYS[1], string.format('%d', value), 'PX', ARGV[1])
return value
"""

# GCRA over several limits at once, on Redis's clock (so instances' clocks never
# matter). Each key holds a theoretical arrival time (TAT) in microseconds.
# ARGV[1] is 1 to count the request, 0 only to ask; then ARGV holds, per key,
# the interval between requests (µs) and the request count; the capacity is
# interval * count, so a burst of exactly `count` fits. The request is counted
# (every TAT moved on) only if every limit admits it.
# Replies, per key: {admitted 0/1, remaining, µs until full, µs until allowed}.
_GCRA = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tats, admitted, counted = {}, {}, ARGV[1] == '1'
for i, key in ipairs(KEYS) do
  local interval, count = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  admitted[i] = tat + interval - interval * count <= now
  if not admitted[i] then counted = false end
end
local reply = {}
for i, key in ipairs(KEYS) do
  local interval, count = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
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


_Call = Callable[..., Awaitable[Any]]


def _measured(call: _Call) -> _Call:
    """Time a call to Redis and count its failures (``shoal_redis_*`` metrics),
    labelled by its first argument: the command.

    Also a failure: redis-py's asyncio connections can raise AttributeError or
    TypeError instead of ConnectionError when a connection's transport is torn
    down under a write (seen on a Cluster losing a node). Logged with the
    traceback, answered as shared state unavailable, never as a 500.
    """

    @functools.wraps(call)
    async def measured(self: RedisState, command: str, *args: Any, **kwargs: Any) -> Any:
        duration, errors = redis_command(command)
        started = time.perf_counter()
        try:
            return await call(self, command, *args, **kwargs)
        except StateUnavailable:
            errors.inc()
            raise
        except (AttributeError, TypeError) as error:
            errors.inc()
            logger.error("Redis %s failed inside the client", command, exc_info=error)
            raise StateUnavailable() from error
        finally:
            duration.observe(time.perf_counter() - started)

    return measured


class RedisState(SharedState):
    """Shared state in Redis, one client (and connection pool) per worker.

    Each call ends within ``redis.socket_timeout`` seconds, whatever the client
    does inside it (connect, handshake, the command, a retry): one still
    waiting then is cancelled and fails as Redis unreachable. The socket
    timeout alone bounds each read, not their sum.
    """

    name = "redis"

    def __init__(self, settings: RedisSettings) -> None:
        if settings.url is None:
            raise ValueError("RedisState needs a Redis URL")
        super().__init__(settings.key_prefix)
        self.settings = settings
        self._client: Any = None
        self._gcra: Any = None
        self._watch: KeyWatch | None = None
        self._cluster_warned = False

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
        if self._watch is not None:
            self._watch.start()

    async def close(self) -> None:
        if self._watch is not None:
            await self._watch.stop()
        client, self._client = self._client, None
        self._gcra = None
        if client is not None:
            await client.aclose()

    def watch(self) -> KeyWatch | None:
        """This worker's ``KeyWatch`` (one connection of its own, opened with
        the store), made on first use; None on a Cluster, where a key's pushes
        come from whichever node holds it."""
        assert self.settings.url is not None
        if self.settings.url.startswith("redis+cluster://"):
            if not self._cluster_warned:
                self._cluster_warned = True
                logger.warning(
                    "no client-side caching on a Redis Cluster: what a worker would keep in "
                    "memory (cache_tier: worker, auth.revocation_cache) is asked of Redis instead"
                )
            return None
        if self._watch is None:
            url, timeout = self.settings.url, self.settings.socket_timeout
            self._watch = KeyWatch(
                # A client of its own, RESP2: the pushes arrive as Pub/Sub messages.
                lambda: connect_redis(url, socket_timeout=timeout, protocol=2),
                key_prefix=self.key_prefix,
                timeout=timeout,
            )
        return self._watch

    @contextlib.asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        """Within ``socket_timeout``, or StateUnavailable (logged, naming ``what``)."""
        try:
            async with asyncio.timeout(self.settings.socket_timeout):
                yield
        except REDIS_FAILURES as error:  # TimeoutError, the deadline's, is an OSError
            logger.warning("Redis %s failed: %s", what, error or type(error).__name__)
            raise StateUnavailable() from error

    @_measured
    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        async with self._bounded(method):
            return await getattr(self.client, method)(*args, **kwargs)

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

    async def incr(self, key: str, *, ttl: float | None = None, amount: int = 1) -> int:
        if ttl is None and amount > 0:
            return int(await self._call("incrby", self.key(key), amount))
        ttl_ms = max(1, int(ttl * 1000)) if ttl is not None else 0
        return int(await self._call("eval", _INCR, 1, self.key(key), amount, ttl_ms))

    async def incr_each(self, *keys: str) -> list[int]:
        if len(keys) < 2:
            return [await self.incr(key) for key in keys]
        values: list[int] = await self._incr_each("incr_each", [self.key(key) for key in keys])
        return values

    @_measured
    async def _incr_each(self, command: str, keys: list[str]) -> list[int]:
        # A pipeline, not a transaction: on a Cluster the keys may live on
        # several nodes, and each INCR stands alone.
        async with self._bounded(command), self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incr(key)
            replies = await pipe.execute()
        return [int(reply) for reply in replies]

    async def stamp(self, key: str, *, ttl: float) -> int:
        return int(await self._call("eval", _STAMP, 1, self.key(key), max(1, int(ttl * 1000))))

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
        """One GCRA script for all the limits, or, on a Cluster, one per hash slot.

        A script's keys must share a slot. A request's limits usually do (keys
        are tagged with the caller), but a route's own limit may count by
        another key. Then every group is first only asked; if one refuses,
        nothing is counted. Otherwise the groups count in turn, and once one
        refuses (a concurrent request took the last unit since the asking) the
        next ones are only asked: the groups before it keep the request
        counted, so limits then err on the strict side, never the lenient one.
        """
        if not limits:
            return []
        groups = self._slot_groups([key for key, _ in limits])
        counting = True
        if len(groups) > 1:
            asked = await self._verdicts(limits, groups, counting=False)
            counting = all(verdict.allowed for verdict in asked)
            if not counting:
                return asked
        return await self._verdicts(limits, groups, counting=counting)

    async def _verdicts(
        self, limits: Sequence[tuple[str, Rate]], groups: list[list[int]], *, counting: bool
    ) -> list[RateVerdict]:
        verdicts: dict[int, RateVerdict] = {}
        for group in groups:
            replies = await self._script("gcra", [limits[i] for i in group], counting=counting)
            verdicts.update(zip(group, replies, strict=True))
            counting = counting and all(verdict.allowed for verdict in replies)
        return [verdicts[index] for index in range(len(limits))]

    def _slot_groups(self, keys: list[str]) -> list[list[int]]:
        """Indexes of ``keys`` grouped by Cluster hash slot (one group elsewhere)."""
        if not isinstance(self.client, RedisCluster):
            return [list(range(len(keys)))]
        groups: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(self.client.keyslot(self.key(key)), []).append(index)
        return list(groups.values())

    @_measured
    async def _script(
        self, name: str, limits: Sequence[tuple[str, Rate]], *, counting: bool
    ) -> list[RateVerdict]:
        if self._gcra is None:
            self._gcra = self.client.register_script(_GCRA)
        args: list[int] = [1 if counting else 0]
        for _, rate in limits:
            args += [rate.interval_us, rate.count]
        keys = [self.key(key) for key, _ in limits]
        async with self._bounded("rate limit script"):
            reply = await self._gcra(keys=keys, args=args)
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
