"""Login throttling: after a few failures for one user or one address, each
attempt is slowed; after more, refused for a while (429 + Retry-After).

Counters live in shared state with a TTL, so every instance counts together.
"""

from __future__ import annotations

import asyncio

from ..config import AuthSettings
from ..errors import TooManyRequests
from ..hashing import sha256_hex
from ..state import SharedState


def _key(kind: str, value: str) -> str:
    # Names and addresses are hashed so that no user name appears in Redis keys.
    return f"auth:fail:{kind}:{sha256_hex(value)[:32]}"


class LoginThrottle:
    def __init__(self, state: SharedState, settings: AuthSettings) -> None:
        self.state = state
        self.slowdown_after = settings.login_slowdown_after
        self.lockout_after = settings.login_lockout_after
        self.lockout_seconds = settings.login_lockout_seconds

    async def before_attempt(self, name: str, address: str) -> None:
        values = await self.state.get_many(_key("user", name), _key("addr", address))
        failures = max(int(value or 0) for value in values)
        if failures >= self.lockout_after:
            raise TooManyRequests(
                "too many failed logins; try again later",
                headers={"Retry-After": str(self.lockout_seconds)},
            )
        if failures >= self.slowdown_after:
            excess = failures - self.slowdown_after
            await asyncio.sleep(min(0.25 * 2**excess, 4.0))

    async def failed(self, name: str, address: str) -> None:
        for key in (_key("user", name), _key("addr", address)):
            await self.state.incr(key, ttl=self.lockout_seconds)

    async def succeeded(self, name: str) -> None:
        await self.state.delete(_key("user", name))
