"""Shared state: what every instance must see the same (sessions, revocations,
cache generations, rate limits, idempotency keys).

``SharedState`` is the small interface the rest of Shoal uses. ``RedisState``
is the real one; ``MemoryState`` keeps the same contract inside one process and
is used only when no Redis URL is configured (development, one worker).

Failures to reach Redis leave this package as ``StateUnavailable`` so callers
can decide per feature: bypass (cache), fail open (limits) or answer 503.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ServiceUnavailable

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart

    from .tracking import KeyWatch

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

    def watch(self) -> KeyWatch | None:
        """The worker's watch of changed keys (see ``tracking``), to subscribe
        to before the store opens; None where the store cannot tell."""
        return None

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
    async def incr(self, key: str, *, ttl: float | None = None, amount: int = 1) -> int:
        """Atomically add ``amount`` (one by default) and return the new value (a
        missing key counts as 0).

        With ``ttl``, a key this call creates expires after ``ttl`` seconds. A
        negative ``amount`` never creates a key: on a missing key it returns 0 and
        stores nothing (so undoing a count after its window ended leaves no trace).
        """

    async def incr_each(self, *keys: str) -> list[int]:
        """Add one to each key (no TTL), in one round trip where the store can."""
        return [await self.incr(key) for key in keys]

    @abc.abstractmethod
    async def stamp(self, key: str, *, ttl: float) -> int:
        """Store, atomically, a stamp greater than any ``key`` held before, and return it.

        The stamp is the store's clock in milliseconds (Redis's, so the clocks of
        instances and command processes never matter), or one more than the old
        stamp when that is not behind the clock. The key expires after ``ttl`` seconds.
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
