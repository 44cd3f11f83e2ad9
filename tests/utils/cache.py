"""The response cache in tests: its worker-memory tier made ready, and counted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY
from quart import Quart

from shoal.policies.cache import get_cache

#: A cached resource whose every document belongs to the user who wrote it
#: (``auth_field``): each owner's answers are their own.
OWNED_NOTES: dict[str, Any] = {
    "schema": {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string"}, "owner": {"type": "string"}},
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH"],
    "allowed_roles": ["editor"],
    "auth_field": "owner",
    "cache_ttl": 60,
}


async def worker_tier_ready(app: Quart, resource: str) -> Callable[[], float]:
    """Wait until ``resource``'s answers can be kept in the worker's memory (its
    key watch is open), if it has ``cache_tier: worker``; then a function giving
    how many answers of it came from that memory so far, in this process."""
    tier = get_cache(app).tier
    if resource in tier:
        assert tier.watch is not None
        await asyncio.wait_for(tier.watch.opened.wait(), 5)

    def local_hits() -> float:
        return sum(
            REGISTRY.get_sample_value(
                "shoal_cache_requests_total",
                {"resource": resource, "result": "local_hit", "path": path},
            )
            or 0.0
            for path in ("app", "fast_path")
        )

    return local_hits
