"""Password hashing with argon2id (argon2-cffi)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id at OWASP's recommended floor (19 MiB, 2 passes): each login briefly
# needs this much memory in a worker, so the library's 64 MiB default would push
# a worker past its memory budget for every concurrent login.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

#: One thread of a worker hashes: a login never stalls the worker's event loop
#: (argon2 releases the GIL while it works), and concurrent logins hash one at
#: a time, so a burst of them needs the 19 MiB of one hash, not of each.
_HASHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")

T = TypeVar("T")


async def off_the_loop(function: Callable[..., T], *args: object) -> T:
    """Run a hashing ``function`` on the hashing thread and await its result."""
    return await asyncio.get_running_loop().run_in_executor(_HASHING, function, *args)


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the user does not exist, so that answering "no such
    # user" takes as long as answering "wrong password". Made on first use, not
    # at import: every worker would otherwise pay for a hash at start-up.
    return _HASHER.hash("shoal-timing-equaliser")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-effort check; False for a missing or corrupt hash."""
    try:
        return _HASHER.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
