"""Admission control: a bounded number of requests run at once, the others
wait in arrival order, and one that waits too long gets a JSON 503."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from quart import Quart

from shoal.app import create_app
from shoal.config import AdmissionSettings
from shoal.http.admission import Admission
from shoal.http.asgi import Message, Receive, Scope, Send
from tests.conftest import SettingsFactory


class Slow:
    """An ASGI app whose requests finish when the test says so, in any order."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"]
        self.started.append(name)
        await self.release.setdefault(name, asyncio.Event()).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": name.encode(), "more_body": False})

    def finish(self, name: str) -> None:
        self.release.setdefault(name, asyncio.Event()).set()


async def _request(app: Admission, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "headers": []}, receive, send)
    return sent


def _admission(inner: Slow, limit: int, timeout: float = 5.0) -> Admission:
    settings = AdmissionSettings(max_in_flight=limit, queue_timeout=timeout)
    return Admission(inner, settings, bypass=lambda path: path == "/healthz")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_beyond_the_limit_wait_and_start_in_arrival_order() -> None:
    inner = Slow()
    admission = _admission(inner, limit=2)
    names = [f"/{n}" for n in range(6)]
    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(_request(admission, name)))
        await _settle()
    assert inner.started == ["/0", "/1"]
    # Finish the running ones out of order: the waiting ones still start in order.
    inner.finish("/1")
    await _settle()
    inner.finish("/0")
    await _settle()
    assert inner.started == ["/0", "/1", "/2", "/3"]
    for name in names[2:]:
        inner.finish(name)
        await _settle()
    await asyncio.gather(*tasks)
    assert inner.started == names
    assert admission.running == 0
    assert not admission.waiting


async def test_a_request_that_waits_too_long_gets_a_json_503() -> None:
    inner = Slow()
    admission = _admission(inner, limit=1, timeout=0.1)
    first = asyncio.create_task(_request(admission, "/first"))
    await _settle()
    sent = await _request(admission, "/second")
    start, body = sent
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"retry-after"]) >= 1
    error = json.loads(body["body"])
    assert error["_status"] == "ERR"
    assert error["_error"]["code"] == 503
    assert "busy" in error["_error"]["message"]
    assert inner.started == ["/first"]
    inner.finish("/first")
    await first
    assert admission.running == 0


async def test_probes_bypass_the_queue() -> None:
    inner = Slow()
    admission = _admission(inner, limit=1)
    blocker = asyncio.create_task(_request(admission, "/busy"))
    await _settle()
    inner.finish("/healthz")
    sent = await asyncio.wait_for(_request(admission, "/healthz"), 1)
    assert sent[0]["status"] == 200
    inner.finish("/busy")
    await blocker


async def test_a_waiting_client_that_leaves_gives_up_its_place() -> None:
    inner = Slow()
    admission = _admission(inner, limit=1)
    first = asyncio.create_task(_request(admission, "/a"))
    await _settle()
    leaving = asyncio.create_task(_request(admission, "/b"))
    staying = asyncio.create_task(_request(admission, "/c"))
    await _settle()
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    inner.finish("/a")
    inner.finish("/c")
    await asyncio.gather(first, staying)
    assert inner.started == ["/a", "/c"]
    assert (admission.running, len(admission.waiting)) == (0, 0)


async def test_a_slot_is_given_back_as_the_answer_starts_to_go_out() -> None:
    # Handing an answer to a client that reads slowly waits on the client, not
    # on the worker: the next request need not wait for it.
    inner = Slow()
    admission = _admission(inner, limit=1)
    taken = asyncio.Event()  # the first client takes its answer's body when this is set
    sent: list[str] = []

    async def slow_reader(message: Message) -> None:
        if message["type"] == "http.response.body":
            await taken.wait()
        sent.append(message["type"])

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    inner.finish("/big")
    scope = {"type": "http", "path": "/big", "headers": []}
    first = asyncio.create_task(admission(scope, receive, slow_reader))
    await _settle()
    assert sent == ["http.response.start"]  # stuck on its body
    inner.finish("/next")
    assert (await asyncio.wait_for(_request(admission, "/next"), 1))[0]["status"] == 200
    assert inner.started == ["/big", "/next"]
    taken.set()
    await first
    assert (admission.running, len(admission.waiting)) == (0, 0)


@pytest.fixture
async def busy_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    app = create_app(settings_factory(admission={"max_in_flight": 1, "queue_timeout": 0.2}))
    gate = asyncio.Event()

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await gate.wait()
        return {"done": "yes"}

    app.config["gate"] = gate
    async with app.test_app():
        yield app


async def test_over_http_a_crowd_gets_served_or_a_clear_503(busy_app: Quart) -> None:
    client = busy_app.test_client()
    running = asyncio.create_task(client.get("/slow"))
    try:
        await asyncio.sleep(0.05)
        refused = await client.get("/books")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        assert refused.headers["X-Request-ID"]  # the edge still marks it
        assert (await refused.get_json())["_error"]["code"] == 503
        assert (await client.get("/readyz")).status_code == 200  # probes never wait
    finally:  # even when a check fails, no request is left pending for a later test
        busy_app.config["gate"].set()
        slow = await running
    assert slow.status_code == 200
    assert (await client.get("/books")).status_code == 200
