"""Who is on the other end: X-Forwarded-* believed only from trusted proxies."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from quart import Quart, request

from shoal.http.call import Call
from shoal.http.net import came_over_tls, client_address, is_secure

PROXIES = [ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.9", "203.0.113.5", "192.0.2.9"),  # untrusted peer: its header is ignored
        ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "203.0.113.5, 10.1.1.1", "203.0.113.5"),  # a chain of our proxies
        ("127.0.0.1", "198.51.100.7, 203.0.113.5, 10.1.1.1", "203.0.113.5"),  # spoofed first hop
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "10.2.2.2, 10.1.1.1", "10.2.2.2"),  # all hops trusted: the farthest
    ],
)
async def test_client_address(peer: str, forwarded: str, expected: str) -> None:
    app = Quart(__name__)
    seen: list[str] = []

    @app.get("/")
    async def index() -> str:
        seen.append(client_address(Call.from_quart(request), PROXIES))
        return "ok"

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    await app.test_client().get("/", headers=headers, scope_base={"client": (peer, 1)})
    assert seen == [expected]


@pytest.mark.parametrize(
    ("scheme", "peer", "proto", "expected"),
    [
        ("https", "192.0.2.9", None, True),
        ("http", "192.0.2.9", "https", False),  # anyone can send the header
        ("http", "10.0.0.5", "https", True),
        ("http", "10.0.0.5", "https, http", True),  # the nearest proxy's view comes first
        ("http", "10.0.0.5", "http", False),
        ("http", None, "https", False),
    ],
)
def test_came_over_tls(scheme: str, peer: str | None, proto: str | None, expected: bool) -> None:
    assert came_over_tls(scheme, peer, proto, PROXIES) is expected


async def test_is_secure_reads_the_request() -> None:
    app = Quart(__name__)
    seen: list[bool] = []

    @app.get("/")
    async def index() -> str:
        seen.append(is_secure(Call.from_quart(request), PROXIES))
        return "ok"

    client = app.test_client()
    await client.get(
        "/", headers={"X-Forwarded-Proto": "https"}, scope_base={"client": ("10.0.0.5", 1)}
    )
    await client.get(
        "/", headers={"X-Forwarded-Proto": "https"}, scope_base={"client": ("192.0.2.1", 1)}
    )
    assert seen == [True, False]
