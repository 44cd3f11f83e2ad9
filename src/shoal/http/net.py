"""Who is on the other end: the client's address and scheme, believing
``X-Forwarded-*`` headers only from the proxies the config trusts."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from .call import Call

Networks = Sequence[IPv4Network | IPv6Network]


def trusted(address: str, networks: Networks) -> bool:
    """Whether ``address`` is in one of ``networks``."""
    try:
        parsed = ip_address(address.strip())
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_address(request: Call, proxies: Networks) -> str:
    """The client's IP: the peer, or, behind trusted proxies, the nearest
    ``X-Forwarded-For`` hop that is not itself a trusted proxy."""
    peer = request.remote_addr or "unknown"
    if not proxies or not trusted(peer, proxies):
        return peer
    forwarded = request.headers.get("X-Forwarded-For") or ""
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def came_over_tls(
    scheme: str | None, peer: str | None, forwarded_proto: str | None, proxies: Networks
) -> bool:
    """Whether a request came over TLS: its own scheme, or the first
    ``X-Forwarded-Proto`` value when the peer is a trusted proxy."""
    if scheme == "https":
        return True
    if proxies and peer and trusted(peer, proxies):
        return (forwarded_proto or "").split(",")[0].strip().lower() == "https"
    return False


def is_secure(request: Call, proxies: Networks) -> bool:
    """Whether the client reached us over TLS (directly or via a trusted proxy)."""
    return came_over_tls(
        request.scheme, request.remote_addr, request.headers.get("X-Forwarded-Proto"), proxies
    )


def base_url(request: Call, proxies: Networks) -> str:
    """This server's root URL as the client sees it (TLS at a trusted proxy too)."""
    return f"{'https' if is_secure(request, proxies) else 'http'}://{request.host}/"
