"""Plain ASGI types (as Starlette and brotli-asgi spell them) and header lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: What wraps an ASGI app in another (a middleware class, or a factory).
Middleware = Callable[[ASGIApp], ASGIApp]


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's raw value (``name`` in lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None
