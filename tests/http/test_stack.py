"""The ASGI stack: built from one ordered list, the first entry outermost."""

from __future__ import annotations

from functools import partial

from shoal.http.asgi import ASGIApp, Message, Receive, Scope, Send
from shoal.http.stack import build_stack


class Tag:
    """Middleware that notes its name on the way in and on the way out."""

    def __init__(self, app: ASGIApp, name: str, trail: list[str]) -> None:
        self.app, self.name, self.trail = app, name, trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.trail.append(f"in:{self.name}")

        async def send_out(message: Message) -> None:
            self.trail.append(f"out:{self.name}")
            await send(message)

        await self.app(scope, receive, send_out)


async def test_requests_pass_the_list_in_order_and_answers_in_reverse() -> None:
    trail: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        trail.append("app")
        await send({"type": "http.response.start", "status": 204, "headers": []})

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        trail.append("sent")

    stack = build_stack(app, [partial(Tag, name=name, trail=trail) for name in "abc"])
    await stack({"type": "http"}, receive, send)
    assert trail == ["in:a", "in:b", "in:c", "app", "out:c", "out:b", "out:a", "sent"]


def test_an_empty_list_leaves_the_app_as_it_is() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    assert build_stack(app, []) is app
