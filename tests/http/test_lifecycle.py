"""Draining, over HTTP: /readyz answers 503 and keep-alive connections end."""

from __future__ import annotations

from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.http.lifecycle import get_lifecycle


async def test_while_draining_http1_answers_close_the_connection(
    app: Quart, anonymous: Client
) -> None:
    before = await anonymous.get("/books")
    assert "Connection" not in before.headers

    await get_lifecycle(app).drain()

    after = await anonymous.get("/books")
    assert after.status_code == 200
    assert after.headers["Connection"] == "close"
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["Connection"] == "close"
    assert (await ready.get_json())["_error"]["message"] == "not ready: shutting down"


async def test_http2_answers_never_carry_connection(app: Quart) -> None:
    await get_lifecycle(app).drain()
    response = await app.test_client().get("/books", http_version="2")
    assert response.status_code == 200
    assert "Connection" not in response.headers
