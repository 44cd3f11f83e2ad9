"""Which shared state an app gets, and where it keeps it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import RedisSettings
from .base import EXTENSION_KEY, SharedState
from .memory import MemoryState
from .redis import RedisState

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart


def create_state(settings: RedisSettings) -> SharedState:
    """Redis when a URL is configured, otherwise the in-process store."""
    if settings.url:
        return RedisState(settings)
    return MemoryState(settings.key_prefix)


def get_state(app: Quart) -> SharedState:
    state: SharedState = app.extensions[EXTENSION_KEY]
    return state
