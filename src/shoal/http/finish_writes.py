"""Writes run to their end once their body has arrived, even if the client leaves."""

from __future__ import annotations

import asyncio

from .asgi import ASGIApp, Message, Receive, Scope, Send
from .methods import SAFE_METHODS


class FinishWrites:
    """ASGI: once a write's body has arrived, the write runs to its end, even if
    the client goes away.

    Quart cancels a request's handler when its client disconnects, and a client
    that gives up waiting is exactly the one that will retry. Cancelled between
    MongoDB applying a write and Shoal recording what follows from it, a write
    would leave its Idempotency-Key claimed but unanswered (a retry after
    ``lock_ttl`` would write again) and its cache generation not bumped (other
    instances would serve the old answer for up to ``cache_ttl``). So the
    disconnect of a write whose body is complete is held back until the handler
    is done; a client that leaves before sending its whole body still cancels it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        complete = False

        async def receive_until_done() -> Message:
            nonlocal complete
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                complete = True
            elif message["type"] == "http.disconnect" and complete:
                # Never returns: Quart cancels this wait once the handler is done.
                await asyncio.Event().wait()
            return message

        await self.app(scope, receive_until_done, send)
