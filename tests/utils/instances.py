"""Several Shoal instances in one test: apps on one database and one Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from quart import Quart

from shoal.app import create_app
from shoal.config import Settings


@asynccontextmanager
async def two_served(settings: Settings) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two apps ('instances') built from one config, both serving."""
    first, second = create_app(settings), create_app(settings)
    async with first.test_app(), second.test_app():
        yield first, second
