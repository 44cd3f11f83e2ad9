"""A worker's connections, known by their two ends: one whose client reads nothing
is reset, its unsent answer dropped, on both event loops `shoal serve` offers."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pytest
import uvloop

from shoal.http.connections import Connections

#: More than loopback's kernel buffers take (a few MB): the rest waits in the worker.
ANSWER = 16 * 1024 * 1024
#: Seconds a test waits for something that happens at once.
WAIT = 5.0

LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


class Answers(asyncio.Protocol):
    """Sends one large answer to whoever connects."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio's classes, only alike.
        self.transport = cast(asyncio.WriteTransport, transport)
        self.transport.write(b"x" * ANSWER)


def _hung_up(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP)
    return bool(poller.poll(int(timeout * 1000)))


async def _reset_a_client_that_reads_nothing() -> None:
    loop = asyncio.get_running_loop()
    connections = Connections()
    protocols: list[Answers] = []

    def factory() -> Answers:
        protocols.append(Answers())
        return protocols[-1]

    server = await loop.create_server(connections.track(factory), "127.0.0.1", 0)
    client = socket.socket()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.connect(server.sockets[0].getsockname())
        for _ in range(int(WAIT / 0.01)):
            if len(connections) == 1 and protocols:
                break
            await asyncio.sleep(0.01)
        assert len(connections) == 1
        transport = protocols[0].transport
        assert transport.get_write_buffer_size() > 0  # the worker holds the rest
        scope = {"client": client.getsockname(), "server": client.getpeername()}

        assert connections.reset({"client": ("127.0.0.1", 1), "server": scope["server"]}) is False
        assert connections.reset(scope) is True
        assert transport.is_closing()
        # The kernel reset the connection: the client learns at once.
        assert await loop.run_in_executor(None, _hung_up, client, WAIT)
        for _ in range(int(WAIT / 0.01)):
            if len(connections) == 0:
                break
            await asyncio.sleep(0.01)
        assert len(connections) == 0  # forgotten once lost
        assert transport.get_write_buffer_size() == 0  # its answer dropped
        assert connections.reset(scope) is False
    finally:
        client.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_whose_client_reads_nothing_is_reset_and_its_buffer_dropped(
    loop: str,
) -> None:
    LOOPS[loop](_reset_a_client_that_reads_nothing())
