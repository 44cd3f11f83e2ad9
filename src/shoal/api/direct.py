"""Direct reads: ``GET /<resource>/<id>`` of a public item, answered on the raw
ASGI messages, with the same service and rendering as the item view but
without building Quart's request context (which costs about as much as the
read itself: see docs/benchmarks.md).

Only what needs nothing of the request but its path is answered here: an
anonymous GET (no credentials, cookie or ``Origin``) with no query string, of a
resource whose item reads are public, with no response cache (the cache's own
fast path answers those), no read rate limit, no CORS, no default embedding or
projection, no parent in its URL and no read hooks. Anything else, and every error (a missing
document, a soft-deleted one, a database that is down), takes the full path,
which answers it exactly as before: an error costs its read twice, a success
costs Quart nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..config import Settings
from ..dates import http_date
from ..errors import ApiError
from ..http.asgi import ASGIApp, Receive, Scope, Send
from ..http.conditional import is_not_modified
from ..http.metrics import ROUTE_SCOPE_KEY
from ..resources import UNRESTRICTED, Resources, ResourceService
from ..resources.documents import etag_of
from ..resources.query import parse_projection
from ..resources.render import render_single

#: Events whose hooks see an item read (they need the full path).
READ_HOOKS = ("on_pre_GET", "on_fetched_item", "on_post_GET")
#: Request headers that make an answer depend on who asks, or on CORS.
_IDENTITY = frozenset({b"authorization", b"x-api-key", b"cookie", b"origin"})

Encode = Callable[[Any], bytes]


def direct_resources(resources: Resources, settings: Settings) -> dict[str, ResourceService]:
    """The resources whose item reads may be answered directly."""
    eligible: dict[str, ResourceService] = {}
    if settings.cors.allow_origins:
        return eligible
    for name, service in resources.services.items():
        config = service.resource.settings
        own = config.rate_limits
        limited = (own.read if own is not None else None) or settings.rate_limits.read
        if (
            "GET" in config.item_methods
            and "GET" in config.public_item_methods
            and config.cache_ttl is None
            and not limited
            and not config.embedded_fields
            and not config.url
            and parse_projection(None, service.resource.rules) is None
        ):
            eligible[name] = service
    return eligible


class DirectReads:
    """ASGI middleware: answer the public item reads it can, else the app."""

    def __init__(self, app: ASGIApp, services: dict[str, ResourceService], encode: Encode) -> None:
        self.app = app
        self.services = services
        self.encode = encode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not await self._answer(scope, send):
            await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send) -> bool:
        if scope["method"] != "GET" or scope["query_string"]:
            return False
        parts = scope["path"].split("/")
        if len(parts) != 3 or parts[0]:
            return False
        service = self.services.get(parts[1])
        if service is None:
            return False
        resource = service.resource
        if any(service.hooks.has(event, resource.name) for event in READ_HOOKS):
            return False
        if_none_match = if_modified_since = None
        for name, value in scope["headers"]:
            if name in _IDENTITY:
                return False
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"if-modified-since":
                if_modified_since = value.decode("latin-1")
        try:
            document = await service.get(resource.ids.parse(parts[2]), UNRESTRICTED)
        except ApiError:
            return False  # the full path answers it, exactly as it always does
        try:
            etag, updated = etag_of(document, resource.etag_key), document.get("_updated")
            body = self.encode(render_single(resource, document, resource.href({})))
        except Exception:  # a document the full path must answer for (a JSON 500)
            return False
        # The item view's URL rule, for the metrics' route label.
        scope[ROUTE_SCOPE_KEY] = resource.rule("item")
        headers = [(b"etag", f'"{etag}"'.encode())]
        if isinstance(updated, datetime):
            headers.append((b"last-modified", http_date(updated).encode()))
        if is_not_modified(if_none_match, if_modified_since, etag, updated):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True
