"""The edge, over HTTP: request ids and security headers on every answer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import SecurityHeaderSettings
from shoal.http.asgi import ASGIApp, Message, Receive, Scope, Send
from shoal.http.edge import Edge
from shoal.http.request_id import REQUEST_ID
from tests.conftest import SettingsFactory

# -- request ids ----------------------------------------------------------------


async def test_a_sane_client_request_id_is_echoed(anonymous: Client) -> None:
    supplied = "req-2026.11.24:abc_123"
    response = await anonymous.get("/healthz", headers={"X-Request-ID": supplied})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == supplied


async def test_the_request_id_is_echoed_on_errors_too(anonymous: Client) -> None:
    response = await anonymous.get("/nowhere", headers={"X-Request-ID": "trace-42"})

    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "trace-42"


@pytest.mark.parametrize(
    "supplied",
    ["x" * 129, "has spaces in it", "semi;colon", "<script>", ""],
    ids=["too-long", "spaces", "semicolon", "markup", "empty"],
)
async def test_an_insane_client_request_id_is_replaced(anonymous: Client, supplied: str) -> None:
    response = await anonymous.get("/healthz", headers={"X-Request-ID": supplied})

    assigned = response.headers["X-Request-ID"]
    assert assigned != supplied
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", assigned)


async def test_without_a_request_id_each_request_gets_its_own(anonymous: Client) -> None:
    first = (await anonymous.get("/healthz")).headers["X-Request-ID"]
    second = (await anonymous.get("/healthz")).headers["X-Request-ID"]

    assert first
    assert second
    assert first != second


# -- security headers -------------------------------------------------------


@pytest.mark.parametrize("path", ["/books", "/books/0123456789abcdef01234567", "/nowhere"])
async def test_every_answer_carries_the_security_headers(anonymous: Client, path: str) -> None:
    response = await anonymous.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert "Strict-Transport-Security" not in response.headers


async def test_the_docs_page_keeps_its_own_content_security_policy(anonymous: Client) -> None:
    response = await anonymous.get("/docs")
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def test_hsts_only_over_tls(settings_factory: SettingsFactory) -> None:
    app = create_app(settings_factory(trusted_proxies=["10.0.0.0/8"]))
    async with app.test_app():
        client = app.test_client()
        direct = await client.get("/healthz", scheme="https")
        assert direct.headers["Strict-Transport-Security"] == "max-age=31536000"
        plain = await client.get("/healthz")
        assert "Strict-Transport-Security" not in plain.headers
        forwarded = {"X-Forwarded-Proto": "https"}
        proxy = {"scope_base": {"client": ("10.1.2.3", 5000)}}
        via_proxy = await client.get("/healthz", headers=forwarded, **proxy)
        assert "Strict-Transport-Security" in via_proxy.headers
        stranger = {"scope_base": {"client": ("192.0.2.9", 5000)}}
        spoofed = await client.get("/healthz", headers=forwarded, **stranger)
        assert "Strict-Transport-Security" not in spoofed.headers


# -- on the raw ASGI messages ---------------------------------------------------


class Recorder:
    """An ASGI app that answers 200 with the headers it is given, and records
    the scope it saw."""

    def __init__(self, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.headers = headers or []
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})


async def _call(app: ASGIApp, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _http_scope(**overrides: Any) -> Scope:
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "client": ("127.0.0.1", 5000),
    }
    scope.update(overrides)
    return scope


def _edge(app: ASGIApp, **policy: Any) -> Edge:
    return Edge(app, SecurityHeaderSettings(**policy), trusted_proxies=[])


async def test_the_edge_adds_only_the_headers_an_answer_lacks() -> None:
    own_policy = (b"content-security-policy", b"default-src 'self'")
    sent = await _call(_edge(Recorder([own_policy])), _http_scope())
    headers = sent[0]["headers"]
    names = [name for name, _ in headers]
    assert names.count(b"content-security-policy") == 1
    assert own_policy in headers
    assert (b"x-frame-options", b"DENY") in headers
    assert sent[1]["body"] == b"{}"


async def test_the_request_id_is_in_the_scope_the_app_sees() -> None:
    app = Recorder()
    supplied = [(b"x-request-id", b"trace-7")]
    sent = await _call(_edge(app), _http_scope(headers=supplied))
    assert app.scopes[0][REQUEST_ID] == "trace-7"
    assert (b"x-request-id", b"trace-7") in sent[0]["headers"]


async def test_security_headers_can_be_turned_off_but_request_ids_stay() -> None:
    sent = await _call(_edge(Recorder(), enabled=False), _http_scope())
    names = {name for name, _ in sent[0]["headers"]}
    assert names == {b"x-request-id"}


async def test_hsts_follows_the_connections_own_scheme() -> None:
    sent = await _call(_edge(Recorder(), hsts_max_age=60), _http_scope(scheme="https"))
    assert (b"strict-transport-security", b"max-age=60") in sent[0]["headers"]


async def test_lifespan_and_other_scopes_pass_through_untouched() -> None:
    app = Recorder()
    sent = await _call(_edge(app), {"type": "lifespan"})
    assert sent == []
    assert app.scopes == [{"type": "lifespan"}]
