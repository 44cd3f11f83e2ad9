"""Per-resource generations: a counter in shared state that every write to a
resource increments. The response cache records the generation an answer was
computed under and uses it only while the generation is unchanged, so one
increment makes every cached answer of the resource stale on every instance."""

from __future__ import annotations

from .base import SharedState


def generation_key(resource: str) -> str:
    # The {hash tag} puts a resource's generation and cache entries in one
    # Cluster slot, so one MGET reads both.
    return f"cache:{{{resource}}}:gen"


async def bump_generation(state: SharedState, *resources: str) -> None:
    """Make every cached answer of each of ``resources`` stale, on every
    instance (one round trip to Redis for them all).

    Raises StateUnavailable when Redis is unreachable; some may have been bumped.
    """
    await state.incr_each(*(generation_key(resource) for resource in resources))
