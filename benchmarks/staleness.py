"""How stale the worker-memory tier (``cache_tier: worker``) can be, two ways:

- **over HTTP**, between two instances of a running stack: each round reads an
  item twice through the reader instance's ``/items_local/`` (kept in its
  worker's memory), PATCHes it through the writer instance's ``/items/``, then
  reads it through the reader until the answer shows the write. Measured: the
  time from the PATCH's answer to the first fresh answer (that read's own round
  trip included), and how many answers were still stale;
- **Redis's push alone**: a ``KeyWatch`` (the tier's own) on one connection, an
  INCR of a watched key on another; the time from sending the INCR to the push
  reaching the watch.

Both run on loopback, so they show what the mechanism adds, not a network's
latency.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shoal.config import RedisSettings
from shoal.state.redis import RedisState

#: How long one round waits for the reader to show a write before it counts as lost.
GIVE_UP_S = 2.0


@dataclass(frozen=True)
class Window:
    """Milliseconds from a write to the moment it was seen, over ``rounds``."""

    rounds: int
    p50_ms: float
    p99_ms: float
    stale: int = 0
    lost: int = 0


def _percentiles(samples: list[float], rounds: int, **counts: int) -> Window:
    ordered = sorted(samples) or [0.0]
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return Window(rounds, statistics.median(ordered), p99, **counts)


class _Client:
    """Requests over one kept-alive connection to a base URL (``http://host:port``)."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **headers}
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}: {payload[:200]!r}")
        return json.loads(payload)


def over_http(writer_url: str, reader_url: str, ids: list[str], rounds: int) -> Window:
    """Writes through ``writer_url``, reads through ``reader_url`` (base URLs)."""
    writer, reader = _Client(writer_url), _Client(reader_url)
    samples: list[float] = []
    stale = lost = 0
    for n in range(rounds):
        item = ids[n % len(ids)]
        for _ in range(2):
            reader.call("GET", f"/items_local/{item}")
        etag = writer.call("GET", f"/items/{item}")["_etag"]
        qty = 1_000_000 + n
        writer.call("PATCH", f"/items/{item}", {"qty": qty}, **{"If-Match": etag})
        answered = time.perf_counter()
        while True:
            if reader.call("GET", f"/items_local/{item}").get("qty") == qty:
                samples.append((time.perf_counter() - answered) * 1000)
                break
            stale += 1
            if time.perf_counter() - answered > GIVE_UP_S:
                lost += 1
                break
    return _percentiles(samples, rounds, stale=stale, lost=lost)


async def _push_alone(redis_url: str, rounds: int) -> Window:
    settings = RedisSettings(url=redis_url, key_prefix="bench-staleness:")
    writer = RedisState(settings)
    await writer.open()
    arrived: asyncio.Queue[float] = asyncio.Queue()
    watch = writer.watch()
    assert watch is not None, "a Cluster has no watch"
    watch.subscribe(
        ["gen"],
        on_change=lambda _key: arrived.put_nowait(time.perf_counter()),
        on_reset=lambda: None,
    )
    watch.start()
    samples: list[float] = []
    lost = 0
    try:
        await asyncio.wait_for(watch.opened.wait(), 10)
        for _ in range(rounds):
            sent = time.perf_counter()
            await writer.incr("gen")
            try:
                samples.append((await asyncio.wait_for(arrived.get(), GIVE_UP_S) - sent) * 1000)
            except TimeoutError:
                lost += 1
        await writer.delete("gen")
    finally:
        await watch.stop()
        await writer.close()
    return _percentiles(samples, rounds, lost=lost)


def push_alone(redis_url: str, rounds: int) -> Window:
    """An INCR on one connection to its push on the watch's, ``rounds`` times."""
    return asyncio.run(_push_alone(redis_url, rounds))
