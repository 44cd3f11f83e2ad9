"""A `shoal serve` worker takes every connection the kernel has queued at each
wake-up of its listening socket, on either event loop (decision 0027): a burst
of new connections is not left waiting while the loop serves others."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from shoal.cli.worker import WORKER_CLASSES, _loop_factory

BURST = 200


class _Counted(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        type(self).made += 1


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_burst_of_connections_is_accepted_in_a_few_turns_of_the_loop(
    worker_class: str, listening: socket.socket
) -> None:
    loop = _loop_factory(worker_class)()
    clients: list[socket.socket] = []
    _Counted.made = 0
    try:
        server = loop.run_until_complete(loop.create_server(_Counted, sock=listening, backlog=1024))
        # The whole burst is queued in the kernel before the loop looks again.
        for _ in range(BURST):
            client = socket.create_connection(listening.getsockname(), timeout=5)
            clients.append(client)
        turns = 0
        while _Counted.made < BURST and turns < 20:
            loop.run_until_complete(asyncio.sleep(0))
            turns += 1
        # One connection per turn (libuv's own pace) would need BURST turns.
        assert _Counted.made == BURST, (_Counted.made, turns)
        assert turns <= 5
        server.close()
        for listener in getattr(loop, "listeners", []):
            loop.run_until_complete(listener.stop_accepting(loop))
    finally:
        for client in clients:
            client.close()
        loop.close()
