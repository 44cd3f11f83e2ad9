"""The fast path: an answerer answers what it can on the raw ASGI messages;
everything else reaches the app untouched."""

from __future__ import annotations

from shoal.http.asgi import Message, Receive, Scope, Send
from shoal.http.fast_path import FastPath


class Answerer:
    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def fast_answer(self, scope: Scope, send: Send) -> bool:
        self.asked.append(scope["path"])
        if self.answers:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        return self.answers


async def _run(fast: FastPath, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        sent.append(message)

    await fast(scope, receive, send)
    return sent


async def test_an_answered_request_never_reaches_the_app() -> None:
    reached: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope)

    answerer = Answerer(answers=True)
    sent = await _run(FastPath(app, answerer), {"type": "http", "path": "/books"})
    assert [message["status"] for message in sent] == [200]
    assert reached == []
    assert answerer.asked == ["/books"]


async def test_what_the_answerer_declines_goes_to_the_app() -> None:
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["type"])

    answerer = Answerer(answers=False)
    await _run(FastPath(app, answerer), {"type": "http", "path": "/books"})
    await _run(FastPath(app, answerer), {"type": "lifespan", "path": ""})
    assert reached == ["http", "lifespan"]
    assert answerer.asked == ["/books"]  # only HTTP requests are offered
