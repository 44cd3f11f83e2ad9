"""The fast path: a request answered in full on the raw ASGI messages, before
Quart builds a request context, when something in front can (the response
cache, for anonymous public GETs; see ``shoal.policies.cache``)."""

from __future__ import annotations

from typing import Protocol

from .asgi import ASGIApp, Receive, Scope, Send


class Answerer(Protocol):
    """What may answer a request in full (True), or leave it to the app (False)."""

    async def fast_answer(self, scope: Scope, send: Send) -> bool: ...


class FastPath:
    """ASGI middleware: let ``answerer`` answer HTTP requests it can, else the app."""

    def __init__(self, app: ASGIApp, answerer: Answerer) -> None:
        self.app = app
        self.answerer = answerer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and await self.answerer.fast_answer(scope, send):
            return
        await self.app(scope, receive, send)
