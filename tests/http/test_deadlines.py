"""Slow-client deadlines on the ASGI messages: a body is read whole within its
deadlines before the app sees the request (else 408), and a send that waits too
long for its client ends the answer. The same over real sockets against a real
`shoal serve` is in tests/http/test_slow_clients.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

from shoal.config import SlowClientSettings
from shoal.http.asgi import Message, Receive, Scope, Send
from shoal.http.connections import Connections
from shoal.http.deadlines import BodyDeadline, SendDeadline, announces_body

SETTINGS = SlowClientSettings(body_timeout=2.0, body_grace=0.2, body_min_rate=1000)


def _scope(
    method: str = "POST", headers: Iterable[tuple[bytes, bytes]] = (), http_version: str = "1.1"
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": "/notes",
        "http_version": http_version,
        "headers": list(headers),
    }


class Recorder:
    """An ASGI app that reads its whole body and notes what it got."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.called = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Client:
    """The server's side of one request: body pieces that come when released."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []

    def body(self, data: bytes, more: bool = True) -> None:
        self.queue.put_nowait({"type": "http.request", "body": data, "more_body": more})

    def leave(self) -> None:
        self.queue.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> Message:
        return await self.queue.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def test_which_requests_announce_a_body() -> None:
    assert announces_body(_scope(headers=[(b"content-length", b"12")]))
    assert announces_body(_scope(headers=[(b"transfer-encoding", b"chunked")]))
    assert not announces_body(_scope(headers=[(b"content-length", b"0")]))
    assert not announces_body(_scope("GET"))
    assert not announces_body(_scope("POST"))  # HTTP/1.1 without a length: no body
    assert announces_body(_scope("POST", http_version="2"))  # HTTP/2 needs no length
    assert not announces_body(_scope("GET", http_version="2"))
    assert announces_body(_scope("GET", [(b"content-length", b"5")]))  # Data API's GET


async def test_a_body_in_pieces_reaches_the_app_as_one_message() -> None:
    app, client = Recorder(), Client()
    middleware = BodyDeadline(app, SETTINGS, max_bytes=1000)
    client.body(b'{"text": ')
    client.body(b'"a"')
    client.body(b"}", more=False)
    await middleware(_scope(headers=[(b"content-length", b"13")]), client.receive, client.send)
    assert app.messages == [{"type": "http.request", "body": b'{"text": "a"}', "more_body": False}]
    assert client.sent[0]["status"] == 201


async def test_a_request_without_a_body_passes_untouched() -> None:
    app, client = Recorder(), Client()
    client.body(b"", more=False)
    await BodyDeadline(app, SETTINGS, max_bytes=1000)(_scope("GET"), client.receive, client.send)
    assert app.messages == [{"type": "http.request", "body": b"", "more_body": False}]


async def test_a_stalled_body_gets_408_and_closes_the_connection() -> None:
    app, client = Recorder(), Client()
    client.body(b'{"text": "a"}')  # then nothing more
    scope = _scope(headers=[(b"content-length", b"100")])
    scope["shoal.request_id"] = "rid-1"
    started = asyncio.get_running_loop().time()
    await BodyDeadline(app, SETTINGS, max_bytes=1000)(scope, client.receive, client.send)
    waited = asyncio.get_running_loop().time() - started
    assert not app.called
    start, body = client.sent
    assert start["status"] == 408
    headers = dict(start["headers"])
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"] == b"application/json"
    error = json.loads(body["body"])
    assert error["_error"]["code"] == 408
    assert error["_error"]["request_id"] == "rid-1"
    assert "2 s" in error["_error"]["message"]
    assert "1000 bytes/s" in error["_error"]["message"]
    # Its 13 bytes keep up with 1000 bytes/s until 0.213 s, well before body_timeout.
    assert 0.2 <= waited < SETTINGS.body_timeout


async def test_a_body_that_keeps_its_rate_still_ends_at_the_body_timeout() -> None:
    settings = SlowClientSettings(body_timeout=0.5, body_grace=0.1, body_min_rate=10)
    app, client = Recorder(), Client()

    async def trickle() -> None:
        while True:
            client.body(b"x" * 10)
            await asyncio.sleep(0.05)  # 200 bytes/s, far above the minimum

    feeding = asyncio.create_task(trickle())
    started = asyncio.get_running_loop().time()
    scope = _scope(headers=[(b"content-length", b"100000")])
    try:
        await BodyDeadline(app, settings, max_bytes=1_000_000)(scope, client.receive, client.send)
    finally:
        feeding.cancel()
    waited = asyncio.get_running_loop().time() - started
    assert client.sent[0]["status"] == 408
    assert waited >= settings.body_timeout
    assert not app.called


async def test_over_http2_the_408_has_no_connection_header() -> None:
    app, client = Recorder(), Client()
    client.body(b"{")
    scope = _scope(headers=[(b"content-length", b"100")], http_version="2")
    await BodyDeadline(app, SETTINGS, max_bytes=1000)(scope, client.receive, client.send)
    assert client.sent[0]["status"] == 408
    assert b"connection" not in dict(client.sent[0]["headers"])


async def test_a_client_that_leaves_mid_body_gets_nothing_and_the_app_never_runs() -> None:
    app, client = Recorder(), Client()
    client.body(b"{")
    client.leave()
    scope = _scope(headers=[(b"content-length", b"100")])
    await BodyDeadline(app, SETTINGS, max_bytes=1000)(scope, client.receive, client.send)
    assert not app.called
    assert client.sent == []


async def test_a_body_over_the_limit_is_handed_on_unfinished_for_the_app_to_refuse() -> None:
    app, client = Recorder(), Client()
    client.body(b"x" * 600)
    client.body(b"x" * 600)  # past max_bytes: the rest is the app's to read or refuse
    client.body(b"x" * 10, more=False)
    scope = _scope(headers=[(b"transfer-encoding", b"chunked")])
    await BodyDeadline(app, SETTINGS, max_bytes=1000)(scope, client.receive, client.send)
    assert app.messages[0] == {"type": "http.request", "body": b"x" * 1200, "more_body": True}
    assert app.messages[1]["body"] == b"x" * 10


async def test_a_declared_length_over_the_limit_is_not_read_here() -> None:
    app, client = Recorder(), Client()
    client.body(b"x" * 10, more=False)
    scope = _scope(headers=[(b"content-length", b"5000")])
    await BodyDeadline(app, SETTINGS, max_bytes=1000)(scope, client.receive, client.send)
    assert app.messages == [{"type": "http.request", "body": b"x" * 10, "more_body": False}]


class FakeConnections(Connections):
    def __init__(self) -> None:
        super().__init__()
        self.reset_scopes: list[Scope] = []

    def reset(self, scope: Scope) -> bool:
        self.reset_scopes.append(scope)
        return True


async def test_a_send_the_client_does_not_take_in_time_resets_its_connection() -> None:
    connections = FakeConnections()
    taken: list[Message] = []
    stuck = asyncio.Event()

    async def server_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            await stuck.wait()  # the client reads nothing
        taken.append(message)

    finished = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal finished
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        finished = True

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = _scope("GET")
    await asyncio.wait_for(SendDeadline(app, 0.1, connections)(scope, receive, server_send), 5)
    assert connections.reset_scopes == [scope]
    assert [message["type"] for message in taken] == ["http.response.start"]
    assert finished  # the app ran to its end; what it sent after the deadline went nowhere


async def test_sends_the_client_takes_pass_through() -> None:
    connections = FakeConnections()
    taken: list[Message] = []

    async def server_send(message: Message) -> None:
        taken.append(message)

    app = Recorder()
    client = Client()
    client.body(b"", more=False)
    await SendDeadline(app, 0.1, connections)(_scope("GET"), client.receive, server_send)
    assert [message["type"] for message in taken] == ["http.response.start", "http.response.body"]
    assert connections.reset_scopes == []
