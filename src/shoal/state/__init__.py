"""Shared state: what every instance must see the same (see ``base``)."""

from .base import EXTENSION_KEY, Rate, RateVerdict, SharedState, StateUnavailable
from .breaker import Breaker
from .factory import create_state, get_state, marks_file, state_for
from .generations import bump_generation, generation_key
from .memory import MemoryState
from .redis import RedisState, connect_redis
from .tracking import KeyWatch

__all__ = [
    "EXTENSION_KEY",
    "Breaker",
    "KeyWatch",
    "MemoryState",
    "Rate",
    "RateVerdict",
    "RedisState",
    "SharedState",
    "StateUnavailable",
    "bump_generation",
    "connect_redis",
    "create_state",
    "generation_key",
    "get_state",
    "marks_file",
    "state_for",
]
