"""Compression, over HTTP: brotli or gzip as the client accepts, from the config."""

from __future__ import annotations

import gzip
import json
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.http.asgi import Message, Receive, Scope, Send
from shoal.http.compression import WholeBody
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client


async def _seed(app: Quart, count: int = 40) -> None:
    editor = await editor_client(app)
    books = [{"title": f"A fairly long book title number {n}", "year": n} for n in range(count)]
    assert (await editor.post("/books", json=books)).status_code == 201


@pytest.mark.parametrize(
    ("accept", "encoding", "decode"),
    [("gzip", "gzip", gzip.decompress), ("gzip, deflate, br", "br", brotli.decompress)],
)
async def test_large_answers_are_compressed_as_the_client_accepts(
    app: Quart, anonymous: Client, accept: str, encoding: str, decode: Any
) -> None:
    await _seed(app)
    plain = await anonymous.get("/books?max_results=40")
    packed = await anonymous.get("/books?max_results=40", headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == encoding
    assert "Accept-Encoding" in packed.headers["Vary"]
    data = await packed.get_data()
    assert int(packed.headers["Content-Length"]) == len(data) < len(await plain.get_data()) / 3
    assert json.loads(decode(data)) == await plain.get_json()
    assert packed.headers["ETag"] == plain.headers["ETag"]


async def test_small_and_empty_answers_are_left_alone(app: Quart, anonymous: Client) -> None:
    gzip_ok = {"Accept-Encoding": "gzip, br"}
    small = await anonymous.get("/healthz", headers=gzip_ok)
    assert "Content-Encoding" not in small.headers
    assert (await small.get_json()) == {"status": "ok"}
    assert small.headers["Content-Length"] == str(len(await small.get_data()))
    etag = (await anonymous.get("/books")).headers["ETag"]
    not_modified = await anonymous.get("/books", headers={**gzip_ok, "If-None-Match": etag})
    assert not_modified.status_code == 304
    assert "Content-Encoding" not in not_modified.headers
    assert await not_modified.get_data() == b""


async def test_compression_threshold_and_switch_come_from_the_config(
    settings_factory: SettingsFactory,
) -> None:
    for compression, expected in (({"minimum_size": 10}, "gzip"), ({"enabled": False}, None)):
        app = create_app(settings_factory(compression=compression))
        async with app.test_app():
            response = await app.test_client().get("/", headers={"Accept-Encoding": "gzip"})
            assert response.headers.get("Content-Encoding") == expected


async def test_a_body_sent_whole_leaves_as_the_same_bytes_not_a_copy() -> None:
    # A large answer, held while a slow client takes it, is held once.
    body = b"x" * 100_000
    passed: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        passed.append(message)

    await WholeBody(app)({"type": "http", "headers": []}, receive, send)
    start, whole = passed
    assert start["status"] == 200
    assert whole["body"] is body
    assert whole["more_body"] is False
