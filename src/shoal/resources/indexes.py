"""Indexes created at start-up: of every resource, and of the auth accounts."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from pymongo.errors import PyMongoError

from ..errors import ApiError, ServiceUnavailable

logger = logging.getLogger("shoal.resources")


class Indexed(Protocol):
    """Anything whose MongoDB indexes are created at start-up (resources, accounts)."""

    @property
    def index_owner(self) -> str: ...

    async def ensure_indexes(self, timeout: float | None = None) -> None: ...


async def ensure_indexes_in_background(owners: list[Indexed], problems: dict[str, str]) -> None:
    """Create every owner's indexes; while MongoDB is unreachable, retry.
    An index MongoDB refuses is recorded in ``problems`` (readiness reports it)."""
    pending = list(owners)
    delay = 1.0
    while pending:
        service = pending[0]
        try:
            await service.ensure_indexes()
        except ServiceUnavailable:
            logger.warning("MongoDB unreachable; creating indexes again in %.0fs", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        except (ApiError, PyMongoError) as error:
            record_index_problem(problems, service.index_owner, error)
        pending.pop(0)


def record_index_problem(problems: dict[str, str], name: str, error: Exception) -> None:
    reason = error.message if isinstance(error, ApiError) else str(error)
    problems[name] = reason
    logger.error("cannot create the indexes of %s: %s", name, reason)
