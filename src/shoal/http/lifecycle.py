"""A worker's serving state: serving, then draining once it has been told to
stop. While draining, ``/readyz`` answers 503 (a load balancer stops sending)
and long-lived answers (event streams) end, so that in-flight requests can
finish before the worker exits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from quart import Quart

logger = logging.getLogger("shoal.lifecycle")

EXTENSION_KEY = "shoal.lifecycle"

DrainListener = Callable[[], Awaitable[None]]


class Lifecycle:
    """Whether the worker is draining, and who to tell when it starts."""

    def __init__(self) -> None:
        self._draining = False
        self._listeners: list[DrainListener] = []

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self

    @property
    def draining(self) -> bool:
        return self._draining

    def on_drain(self, listener: DrainListener) -> None:
        """Call ``listener`` once, when draining starts."""
        self._listeners.append(listener)

    async def drain(self) -> None:
        """Start draining (idempotent): readiness fails, listeners are told."""
        if self._draining:
            return
        self._draining = True
        logger.info("draining: readiness fails, event streams end")
        results = await asyncio.gather(
            *(listener() for listener in self._listeners), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                logger.error("a drain listener failed: %s", result)


def get_lifecycle(app: Quart) -> Lifecycle:
    lifecycle: Lifecycle = app.extensions[EXTENSION_KEY]
    return lifecycle
