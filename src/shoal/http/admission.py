"""Admission control: at most ``admission.max_in_flight`` requests of a worker
run at once; the others wait in arrival order (FIFO), and one that waits longer
than ``admission.queue_timeout`` is answered ``503`` with ``Retry-After``.

Without a bound, a thousand connections start a thousand handlers that all
share the event loop, the connection pools and the database, and whichever
happens to be scheduled wins: the latency tail grows with the crowd. With it,
requests are served roughly in the order they came, and the wait is visible
(and bounded) instead of hidden in every request. Long-lived answers (event
streams) and probes bypass the queue: streams have their own limit, and a load
balancer's probe must not wait behind the traffic it is meant to judge.

A slot counts work, not waiting on a client: a request comes here with its
body already read (``deadlines.BodyDeadline`` stands in front), and gives its
slot back as its answer starts to go out (its first body message), since
handing the answer over waits on the client (bounded by
``slow_clients.send_timeout``), not on the worker. An answer streamed in
pieces (a generator) runs on without a slot after its first piece.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

from ..config import AdmissionSettings
from ..errors import ServiceUnavailable
from .asgi import ASGIApp, Message, Receive, Scope, Send
from .call import send_reply
from .errors import error_reply
from .request_id import REQUEST_ID


class Admission:
    """ASGI middleware: a FIFO queue in front of a bounded number of slots."""

    def __init__(
        self, app: ASGIApp, settings: AdmissionSettings, bypass: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.limit = settings.max_in_flight
        self.timeout = settings.queue_timeout
        self.bypass = bypass
        self.running = 0
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.bypass(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not await self._admit():
            await _refuse(scope, send, self.timeout)
            return
        holding = True

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                self._release()

        async def send_releasing(message: Message) -> None:
            if message["type"] == "http.response.body":
                release()  # the answer is made; the rest is the client's pace
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            release()

    async def _admit(self) -> bool:
        """Take a slot now, or wait for one in line; False after the timeout."""
        if self.running < self.limit and not self.waiting:
            self.running += 1
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.timeout)
        except TimeoutError:
            if turn.done():  # the slot came just as the wait ended: take it
                return True
            self.waiting.remove(turn)
            return False
        except asyncio.CancelledError:
            if turn.done():
                self._release()  # handed a slot, but leaving: pass it on
            else:
                self.waiting.remove(turn)
            raise
        return True

    def _release(self) -> None:
        """Hand the slot to the first in line, or free it."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on: running stays the same
                return
        self.running -= 1


async def _refuse(scope: Scope, send: Send, waited: float) -> None:
    busy = ServiceUnavailable(
        f"the server is busy: the request waited {waited:g} s for its turn; retry shortly",
        retry_after=max(1, math.ceil(waited / 2)),
    )
    await send_reply(send, error_reply(busy, scope.get(REQUEST_ID)))
