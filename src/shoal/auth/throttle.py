"""Login throttling: after a few attempts for one user name or one address,
each attempt is slowed; after more, refused for a while (429 + Retry-After).

An attempt is counted *before* its password is checked, each counter with one
atomic ``INCR`` in shared state: of N guesses sent at once, to any number of
instances, the counters hand out N different values, and only those within the
limit go on to the password check. A successful login then takes its attempt
back (the user's counter is cleared, the address's decremented), so only
failures accumulate. So does an attempt that ended with no verdict on its
password, because MongoDB or Redis failed (503): an outage must not lock
users out once it is over.

The user's count comes first, and only an attempt within its limit is counted
for the address: of a burst for one user, exactly the limit reach the password
check (with both counted in any order, a guess could pair a low count with a
high one, and a burst could lock out before any check). The two counters live
in different Redis Cluster slots (one key each, never read together), so they
are two single-key calls.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..config import AuthSettings
from ..errors import TooManyRequests
from ..hashing import sha256_hex
from ..state import SharedState, StateUnavailable


def _key(kind: str, value: str) -> str:
    # Names and addresses are hashed so that no user name appears in Redis keys.
    return f"auth:fail:{kind}:{sha256_hex(value)[:32]}"


class LoginThrottle:
    def __init__(self, state: SharedState, settings: AuthSettings) -> None:
        self.state = state
        self.slowdown_after = settings.login_slowdown_after
        self.lockout_after = settings.login_lockout_after
        self.lockout_seconds = settings.login_lockout_seconds

    async def attempt(self, name: str, address: str) -> None:
        """Count this attempt; 429 when it is beyond the limit (then its password
        must not be checked), else return once its slow-down, if any, is over."""
        ttl = self.lockout_seconds
        by_user = await self.state.incr(_key("user", name), ttl=ttl)
        self._refuse_beyond_the_limit(by_user)
        # Only an attempt the user's count let through counts for the address,
        # so a burst for one user costs the address at most the limit.
        by_address = await self.state.incr(_key("addr", address), ttl=ttl)
        self._refuse_beyond_the_limit(by_address)
        attempts = max(by_user, by_address)  # this one included
        if attempts > self.slowdown_after:
            excess = attempts - self.slowdown_after - 1
            await asyncio.sleep(min(0.25 * 2**excess, 4.0))

    def _refuse_beyond_the_limit(self, attempts: int) -> None:
        if attempts > self.lockout_after:
            raise TooManyRequests(
                "too many failed logins; try again later",
                headers={"Retry-After": str(self.lockout_seconds)},
            )

    async def succeeded(self, name: str, address: str) -> None:
        """The attempt was right: forget the user's failures, and take this
        attempt back from the address's count."""
        await self.state.delete(_key("user", name))
        await self.state.incr(_key("addr", address), amount=-1)

    async def withdraw(self, name: str, address: str) -> None:
        """The attempt ended with no verdict on its password (a service failed):
        take it back from both counts, as far as shared state answers."""
        with contextlib.suppress(StateUnavailable):
            await self.state.incr(_key("user", name), amount=-1)
            await self.state.incr(_key("addr", address), amount=-1)
