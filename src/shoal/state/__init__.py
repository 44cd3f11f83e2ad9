"""Shared state: what every instance must see the same (see ``base``).

The Redis store is imported from ``shoal.state.redis``, not from here: a config
without ``redis.url`` does not load redis-py (``create_state``)."""

from .base import EXTENSION_KEY, Rate, RateVerdict, SharedState, StateUnavailable
from .breaker import Breaker
from .factory import create_state, get_state, marks_file, state_for
from .generations import bump_generation, generation_key
from .keys import hash_tag
from .memory import MemoryState

__all__ = [
    "EXTENSION_KEY",
    "Breaker",
    "MemoryState",
    "Rate",
    "RateVerdict",
    "SharedState",
    "StateUnavailable",
    "bump_generation",
    "create_state",
    "generation_key",
    "get_state",
    "hash_tag",
    "marks_file",
    "state_for",
]
