"""Shared state inside one process: the same contract as Redis, for one process only
(and, with a marks file, stamps shared with the other processes of the config on
this machine: see ``marks``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from .base import Rate, RateVerdict, SharedState
from .marks import MarksFile


class MemoryState(SharedState):
    """In-process shared state: correct for one process, and only for one.

    With ``marks``, a file, its stamps (the users' not-before marks) are also
    written there and read from there, so that `shoal users` commands on this
    machine reach a server that has no Redis.
    """

    name = "memory"

    def __init__(self, key_prefix: str = "shoal:", *, marks: Path | None = None) -> None:
        super().__init__(key_prefix)
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self.marks = MarksFile(marks) if marks is not None else None

    def _sync_marks(self) -> None:
        """Take the stamps other processes wrote since the last look (one stat)."""
        if self.marks is None:
            return
        changed = self.marks.changed()
        if not changed:
            return
        now, wall = time.monotonic(), time.time()
        for key, (value, expires) in changed.items():
            if value > int(self._live(key) or b"0"):
                self._data[key] = (str(value).encode(), now + (expires - wall))

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
        self._sync_marks()
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

    async def incr(self, key: str, *, ttl: float | None = None, amount: int = 1) -> int:
        key = self.key(key)
        current = self._live(key)
        if current is None and amount < 0:
            return 0
        value = int(current or b"0") + amount
        if current is not None:
            expires = self._data[key][1]
        else:
            expires = time.monotonic() + ttl if ttl is not None else None
        self._data[key] = (str(value).encode(), expires)
        return value

    async def stamp(self, key: str, *, ttl: float) -> int:
        key = self.key(key)
        value = max(time.time_ns() // 1_000_000, int(self._live(key) or b"0") + 1)
        if self.marks is not None:
            # Raises OSError when the file cannot be written: a stamp others
            # would not see must not pass for one they do.
            value = self.marks.stamp(key, value, ttl)
        self._data[key] = (str(value).encode(), time.monotonic() + ttl)
        return value

    async def get_many(self, *keys: str) -> list[bytes | None]:
        self._sync_marks()
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
