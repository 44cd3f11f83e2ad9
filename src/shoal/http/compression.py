"""Response compression (brotli-asgi, see docs/decisions/0007-http-compression.md):
brotli when the client accepts ``br``, else gzip, for bodies of at least
``compression.minimum_size`` bytes. It is the outermost middleware but for
the metrics (when they are on), so it applies to every response, those the fast
path answers included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from brotli_asgi import BrotliMiddleware

from ..config import CompressionSettings
from .asgi import ASGIApp, Message, Receive, Scope, Send

#: Bodies up to this size are handed to the compressor whole (see WholeBody).
WHOLE_BODY_LIMIT = 16 * 1024 * 1024


class WholeBody:
    """ASGI shim: a response whose size is known leaves in one body message.

    Quart sends every body as chunks marked ``more_body`` followed by an empty
    last message, so an ASGI compressor takes every response for a stream: it
    compresses even empty and tiny bodies (a 304 would get a body) and drops
    ``Content-Length``. Given the whole body at once, brotli-asgi applies its
    minimum size and sets ``Content-Length`` again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_whole(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                for name, length in message["headers"]:
                    if name == b"content-length":
                        if int(length) <= WHOLE_BODY_LIMIT:
                            start = message
                            return
                        break
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await send(start)
                # Quart's body comes whole, then an empty last message: join
                # (and copy) only when there are pieces to join.
                pieces = [chunk for chunk in chunks if chunk]
                body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_whole)


def compressed(
    app: ASGIApp, settings: CompressionSettings, excluded: Sequence[str] = ()
) -> ASGIApp:
    """``app`` with its responses compressed as ``settings`` say, except on the
    paths that match a regular expression of ``excluded``."""
    middleware: Any = BrotliMiddleware(
        WholeBody(app),
        quality=settings.brotli_quality,
        minimum_size=settings.minimum_size,
        gzip_fallback=True,
        excluded_handlers=list(excluded),
    )
    return middleware  # type: ignore[no-any-return]
