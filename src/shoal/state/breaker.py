"""A circuit breaker for shared state: after a failure, features that can do
without Redis (the cache, fail-open rate limits) stop asking it for a moment,
so a dead Redis does not add a connect timeout to every request."""

from __future__ import annotations

import time

#: Seconds during which shared state is not asked again after it failed.
RETRY_AFTER_FAILURE = 1.0


class Breaker:
    """Open (skip Redis) for ``pause`` seconds after each ``trip``."""

    def __init__(self, pause: float = RETRY_AFTER_FAILURE) -> None:
        self.pause = pause
        self._open_until = 0.0

    @property
    def closed(self) -> bool:
        """Whether shared state may be asked now."""
        return time.monotonic() >= self._open_until

    def trip(self) -> None:
        """Shared state just failed: skip it for the next ``pause`` seconds."""
        self._open_until = time.monotonic() + self.pause
