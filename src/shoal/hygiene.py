"""HTTP hygiene: compression and CORS, from the config (security headers are
added at the edge, see ``shoal.edge``).

- **Compression** (brotli-asgi, see docs/decisions/0007-http-compression.md):
  brotli when the client accepts ``br``, else gzip, for bodies of at least
  ``compression.minimum_size`` bytes. It wraps the ASGI app, so it applies to
  every response, cached ones included.
- **CORS** (quart-cors): browsers on the origins in ``cors.allow_origins`` may
  call the API; with none (the default), no CORS header is sent and browsers
  keep cross-origin pages out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from brotli_asgi import BrotliMiddleware
from quart import Quart
from quart_cors import cors

from .config import Settings

EXTENSION_KEY = "shoal.hygiene"

#: Request headers a cross-origin page may send.
CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "X-API-Key",
    "X-CSRF-Token",
    "X-Request-ID",
)
#: Response headers a cross-origin page may read.
CORS_EXPOSE_HEADERS = (
    "ETag",
    "Last-Modified",
    "Location",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Idempotent-Replayed",
    "X-Cache",
    "X-Request-ID",
    "X-Total-Count",
)
CORS_ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


#: Bodies up to this size are handed to the compressor whole (see WholeBody).
WHOLE_BODY_LIMIT = 16 * 1024 * 1024

# Plain ASGI types (as Starlette and brotli-asgi spell them).
Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
                length = dict(message["headers"]).get(b"content-length")
                if length is not None and int(length) <= WHOLE_BODY_LIMIT:
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await send(start)
                body = b"".join(chunks)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_whole)


class HttpHygiene:
    """The extension: compression middleware and CORS hooks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self
        compression = self.settings.compression
        if compression.enabled:
            middleware: Any = BrotliMiddleware(
                WholeBody(app.asgi_app),  # type: ignore[arg-type]
                quality=compression.brotli_quality,
                minimum_size=compression.minimum_size,
                gzip_fallback=True,
            )
            app.asgi_app = middleware  # type: ignore[method-assign]
        allowed = self.settings.cors
        if allowed.allow_origins:
            cors(
                app,
                allow_origin=allowed.allow_origins,
                allow_credentials=allowed.allow_credentials,
                allow_headers=CORS_ALLOW_HEADERS,
                allow_methods=CORS_ALLOW_METHODS,
                expose_headers=CORS_EXPOSE_HEADERS,
                max_age=allowed.max_age,
            )
