"""A worker's serving state: serving, then draining once it has been told to
stop. While draining, ``/readyz`` answers 503 (a load balancer stops sending),
long-lived answers (event streams) end, and HTTP/1.1 answers carry
``Connection: close`` (a keep-alive client opens its next connection
elsewhere), so that in-flight requests can finish before the worker exits.
`shoal serve`'s supervisor starts the drain (``shoal.cli.supervisor``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from quart import Quart

from .asgi import ASGIApp, Message, Receive, Scope, Send

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


class CloseWhenDraining:
    """ASGI: while the worker drains, HTTP/1.x answers carry ``Connection:
    close``, so the server ends each connection after its answer instead of
    keeping it open (HTTP/2 has no such header; its connections end when the
    worker stops)."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("http_version") not in ("1.0", "1.1"):
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.lifecycle.draining:
                headers = [item for item in message["headers"] if item[0].lower() != b"connection"]
                message["headers"] = [*headers, (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, send_closing)
