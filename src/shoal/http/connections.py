"""A worker's open connections, so that one whose client stopped reading can be cut off.

asyncio's ``transport.close()`` (uvloop's too) sends what is buffered before it
closes the socket, so a client that never reads keeps its connection, and the
answer buffered for it, for as long as it likes. ``transport.abort()`` drops the
buffer; with ``SO_LINGER`` at 0 the kernel drops its copy too and resets the
connection. ASGI gives an app no handle on its connection, so the workers of
`shoal serve` record each transport here as hypercorn accepts it (``track``, in
``shoal.cli.worker``), by the addresses of its two ends, which a request's ASGI
scope carries (``client`` and ``server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any, cast

from quart import Quart

from .asgi import Scope

EXTENSION_KEY = "shoal.connections"

#: Both ends of a TCP connection: (client host, port), (server host, port).
Ends = tuple[tuple[str, int], tuple[str, int]]
ProtocolFactory = Callable[[], asyncio.BaseProtocol]

#: SO_LINGER on, with a zero timeout: close() resets the connection and
#: discards what the kernel had not sent yet.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def _address(value: Any) -> tuple[str, int] | None:
    """An IPv4 or IPv6 socket address as hypercorn puts it in a scope (host, port)."""
    if isinstance(value, list | tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def _ends(client: Any, server: Any) -> Ends | None:
    peer, own = _address(client), _address(server)
    return (peer, own) if peer is not None and own is not None else None


class Connections:
    """The transports of a worker's open TCP connections, by their two ends."""

    def __init__(self) -> None:
        self._open: dict[Ends, asyncio.BaseTransport] = {}

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self

    def __len__(self) -> int:
        return len(self._open)

    def track(self, factory: ProtocolFactory) -> ProtocolFactory:
        """``factory``, whose protocols' transports are known here while they are open."""

        def tracked() -> asyncio.BaseProtocol:
            protocol = factory()
            made, lost = protocol.connection_made, protocol.connection_lost
            ends: Ends | None = None

            def connection_made(transport: asyncio.BaseTransport) -> None:
                nonlocal ends
                ends = _ends(
                    transport.get_extra_info("peername"), transport.get_extra_info("sockname")
                )
                if ends is not None:
                    self._open[ends] = transport
                made(transport)

            def connection_lost(error: Exception | None) -> None:
                if ends is not None:
                    self._open.pop(ends, None)
                lost(error)

            # The loop calls these on the protocol object, for this connection only.
            protocol.connection_made = connection_made  # type: ignore[method-assign]
            protocol.connection_lost = connection_lost  # type: ignore[method-assign,assignment]
            return protocol

        return tracked

    def reset(self, scope: Scope) -> bool:
        """Reset the connection of the request ``scope``: what it had not sent yet is
        dropped, in the worker and in the kernel. False when the connection is not
        known here (not served by `shoal serve`, or already gone)."""
        ends = _ends(scope.get("client"), scope.get("server"))
        transport = self._open.pop(ends, None) if ends is not None else None
        if transport is None:
            return False
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        cast(asyncio.WriteTransport, transport).abort()
        return True


def get_connections(app: Quart) -> Connections:
    connections: Connections = app.extensions[EXTENSION_KEY]
    return connections
