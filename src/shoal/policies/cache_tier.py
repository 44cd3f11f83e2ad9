"""The worker-memory tier of the response cache (``cache_tier: worker``).

Each worker keeps, per resource, the answers it read from or stored in Redis,
and the resource's generation it read with them, and answers from memory
while that generation is still current. Current means: Redis has not pushed a
change of the generation's key since it was read (a ``KeyWatch`` in broadcast
mode on the generation keys), and the watch has been live all along.

What it gives up against the coherent path: after a write on another instance,
a worker serves the answers from before it until Redis's push reaches it (on
one machine, a fraction of a millisecond; ``docs/how-to/caching-and-limits.md``
has the measured window). A worker's own writes forget its entries at once, and a
read never trusts a generation that changed while it was being read. Should
the watch lose Redis, every entry is forgotten and reads go to Redis again,
so an instance cut off from Redis without knowing it keeps serving from memory
at most ``HEARTBEAT`` seconds plus the socket timeout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..state import SharedState, generation_key

if TYPE_CHECKING:  # the watch comes with the Redis store, loaded only with a Redis URL
    from ..state.tracking import KeyWatch

#: A kept answer: the generation it belongs to, its headers and body.
Kept = tuple[int, dict[str, str], bytes]


class WorkerTier:
    """Answers of some resources, in this worker's memory.

    ``sizes`` gives each resource's most entries (``cache_worker_entries``);
    the least recently used entry goes first.
    """

    def __init__(self, sizes: Mapping[str, int], state: SharedState) -> None:
        self.sizes = dict(sizes)
        self._keys = {generation_key(name): name for name in self.sizes}
        self._generations: dict[str, int] = {}
        self._entries: dict[str, OrderedDict[str, Kept]] = {name: OrderedDict() for name in sizes}
        self.watch: KeyWatch | None = None
        if self.sizes:
            self.watch = state.watch()
        if self.watch is not None:
            self.watch.subscribe(self._keys, on_change=self._changed, on_reset=self._reset)

    def __contains__(self, resource: str) -> bool:
        return resource in self.sizes and self.watch is not None

    def lookup(self, resource: str, key: str) -> tuple[dict[str, str], bytes] | None:
        """The kept answer of ``key``, if it belongs to the current generation."""
        generation = self._generations.get(resource)
        if generation is None or self.watch is None or not self.watch.live:
            return None
        entries = self._entries[resource]
        kept = entries.get(key)
        if kept is None or kept[0] != generation:
            return None
        entries.move_to_end(key)
        return kept[1], kept[2]

    def version(self, resource: str) -> tuple[int, int]:
        """Taken before reading the resource's generation from Redis."""
        assert self.watch is not None
        return self.watch.version(resource)

    def learn(self, resource: str, generation: int, version: tuple[int, int]) -> None:
        """Trust ``generation``, read from Redis, unless it changed since ``version``."""
        assert self.watch is not None
        if self.watch.unchanged_since(resource, version):
            self._generations[resource] = generation

    def keep(
        self, resource: str, key: str, generation: int, headers: dict[str, str], body: bytes
    ) -> None:
        """Keep an answer of the generation this worker trusts (none other)."""
        if self._generations.get(resource) != generation:
            return
        entries = self._entries[resource]
        entries[key] = (generation, headers, body)
        entries.move_to_end(key)
        while len(entries) > self.sizes[resource]:
            entries.popitem(last=False)

    def forget(self, resource: str) -> None:
        """This worker's own write: trust nothing of ``resource`` read before now."""
        if self.watch is not None:
            self.watch.changed(resource)
        self._drop(resource)

    def _changed(self, key: str) -> None:
        name = self._keys.get(key)
        if name is not None:
            self._drop(name)

    def _reset(self) -> None:
        for name in self.sizes:
            self._drop(name)

    def _drop(self, resource: str) -> None:
        self._generations.pop(resource, None)
        self._entries[resource].clear()
