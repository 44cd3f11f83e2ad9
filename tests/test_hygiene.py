"""HTTP hygiene, over HTTP: compression, CORS, security headers."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import ConfigError, load_settings
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client

APP_ORIGIN = "https://app.example"


async def _seed(app: Quart, count: int = 40) -> None:
    editor = await editor_client(app)
    books = [{"title": f"A fairly long book title number {n}", "year": n} for n in range(count)]
    assert (await editor.post("/books", json=books)).status_code == 201


# -- compression -------------------------------------------------------------


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


# -- CORS ---------------------------------------------------------------------


@pytest.fixture
async def cors_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    app = create_app(settings_factory(cors={"allow_origins": [APP_ORIGIN], "max_age": 300}))
    async with app.test_app():
        yield app


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key",
    }


async def test_a_preflight_from_an_allowed_origin_is_allowed(cors_app: Quart) -> None:
    response = await cors_app.test_client().options("/books", headers=_preflight(APP_ORIGIN))
    assert response.status_code == 200
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {name.strip().lower() for name in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key"}
    assert headers["Access-Control-Max-Age"] == "300"
    assert "Origin" in headers["Vary"]


async def test_a_preflight_from_another_origin_gets_no_permission(cors_app: Quart) -> None:
    client = cors_app.test_client()
    response = await client.options("/books", headers=_preflight("https://evil.example"))
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers
    simple = await client.get("/books", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in simple.headers


async def test_an_allowed_origin_may_read_the_headers_that_matter(cors_app: Quart) -> None:
    response = await cors_app.test_client().get("/books", headers={"Origin": APP_ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed_header = response.headers["Access-Control-Expose-Headers"]
    exposed = {name.strip() for name in exposed_header.split(",")}
    assert {"ETag", "Location", "Retry-After", "RateLimit-Remaining", "X-Total-Count"} <= exposed
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_credentials_are_allowed_only_when_configured(
    settings_factory: SettingsFactory,
) -> None:
    cors = {"allow_origins": [APP_ORIGIN], "allow_credentials": True}
    app = create_app(settings_factory(cors=cors))
    async with app.test_app():
        response = await app.test_client().get("/books", headers={"Origin": APP_ORIGIN})
        assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_no_cors_without_an_allowlist(anonymous: Client) -> None:
    response = await anonymous.options("/books", headers=_preflight(APP_ORIGIN))
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("cors", "message"),
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, "allow_credentials"),
        ({"allow_origins": ["https://app.example/path"]}, "not an origin"),
    ],
)
def test_unsafe_or_malformed_cors_settings_are_refused(cors: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"environment": "development", "cors": cors}, env={})


# -- security headers -------------------------------------------------------------


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
