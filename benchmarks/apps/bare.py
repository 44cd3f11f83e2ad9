"""The server alone: a bare ASGI callable answering every request with one fixed
JSON document, shaped and sized like an item of ``benchmarks/shoal.yaml``.

No framework, no routing, no I/O: what hypercorn with the repository's
``hypercorn.toml`` costs per request, the floor under Shoal's cached item GET::

    hypercorn --config hypercorn.toml benchmarks.apps.bare:app
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]

BODY = json.dumps(
    {
        "_id": "6b04fa053196f641d19534f5",
        "title": "Item 00042",
        "sku": "KQZ-00042",
        "qty": 117,
        "price": 42.5,
        "tags": ["steel", "classic"],
        "in_stock": True,
        "_created": "Tue, 24 Nov 2026 03:40:10 GMT",
        "_updated": "Tue, 24 Nov 2026 03:40:10 GMT",
        "_etag": "0f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
        "_links": {"self": {"title": "Item", "href": "items/6b04fa053196f641d19534f5"}},
    },
    separators=(",", ":"),
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
