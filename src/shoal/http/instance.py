"""``X-Shoal-Instance``: which instance answered, on the raw ASGI messages.

Behind a load balancer, the header tells which `shoal serve` served each
request (``instance.name``, by default the host name), so that a newcomer can
watch requests spread over the instances, and an operator can tie an answer
to one instance's logs. On in development, off by default elsewhere
(``instance.header``): it tells strangers how the deployment is laid out.
"""

from __future__ import annotations

from .asgi import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-shoal-instance"


class InstanceHeader:
    """ASGI middleware: ``X-Shoal-Instance: <name>`` on every HTTP answer."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.value = name.encode("latin-1", errors="replace")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_instance(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, send_with_instance)
