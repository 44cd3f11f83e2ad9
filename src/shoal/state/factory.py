"""Which shared state an app gets, and where it keeps it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import RedisSettings, Settings
from .base import EXTENSION_KEY, SharedState
from .marks import MARKS_FILE
from .memory import MemoryState

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart


def create_state(settings: RedisSettings, *, marks: Path | None = None) -> SharedState:
    """Redis when a URL is configured, otherwise the in-process store (sharing
    its stamps through ``marks``, when given)."""
    if settings.url:
        from .redis import RedisState  # redis-py (about 8 MB) only for a config with Redis

        return RedisState(settings)
    return MemoryState(settings.key_prefix, marks=marks)


def marks_file(settings: Settings) -> Path | None:
    """Where a config with no Redis URL shares the users' not-before marks
    between a server and the `shoal users` commands: ``.shoal/user-marks.json``
    beside the config file (None with Redis, or for a config read from no file)."""
    if settings.redis.url or settings.source is None:
        return None
    return settings.data_dir / MARKS_FILE


def state_for(settings: Settings) -> SharedState:
    """The shared state of a config, for a server and for the commands alike."""
    return create_state(settings.redis, marks=marks_file(settings))


def get_state(app: Quart) -> SharedState:
    state: SharedState = app.extensions[EXTENSION_KEY]
    return state
