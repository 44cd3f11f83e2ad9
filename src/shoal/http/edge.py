"""The edge: request ids and security headers, on the raw ASGI messages.

- Every request gets an id (see ``request_id``), echoed as ``X-Request-ID``.
- Every response gets the security headers it does not already carry
  (``X-Content-Type-Options``, ``Referrer-Policy``, ``X-Frame-Options``,
  ``Content-Security-Policy: frame-ancestors 'none'`` unless the route set its
  own policy, ``Strict-Transport-Security`` over TLS).

Doing this on the ASGI messages keeps it off Quart's request machinery, so
the answers the fast path and direct reads give without Quart carry the same
headers.
"""

from __future__ import annotations

from ..config import SecurityHeaderSettings
from .asgi import ASGIApp, Message, Receive, Scope, Send, header
from .net import Networks, came_over_tls
from .request_id import assign_request_id


class Edge:
    """ASGI middleware: request ids and security headers."""

    def __init__(
        self, app: ASGIApp, policy: SecurityHeaderSettings, trusted_proxies: Networks
    ) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.static: list[tuple[bytes, bytes]] = []
        self.hsts: bytes | None = None
        if policy.enabled:
            self.static = [
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", policy.referrer_policy.encode()),
                (b"x-frame-options", b"DENY"),
                (b"content-security-policy", b"frame-ancestors 'none'"),
            ]
            if policy.hsts_max_age > 0:
                value = f"max-age={policy.hsts_max_age}"
                if policy.hsts_include_subdomains:
                    value += "; includeSubDomains"
                self.hsts = value.encode()

    def _secure(self, scope: Scope) -> bool:
        client = scope.get("client")
        proto = header(scope, b"x-forwarded-proto")
        return came_over_tls(
            scope.get("scheme"),
            client[0] if client else None,
            proto.decode("latin-1") if proto is not None else None,
            self.trusted_proxies,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = assign_request_id(scope, header(scope, b"x-request-id"))
        extra = [(b"x-request-id", rid.encode()), *self.static]
        if self.hsts is not None and self._secure(scope):
            extra.append((b"strict-transport-security", self.hsts))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message["headers"])
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in extra if item[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
