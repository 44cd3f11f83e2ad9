"""Deadlines for slow clients (``slow_clients`` in the config): a request's body
must arrive in time, and an answer must be taken in time.

hypercorn bounds the wait for a request's headers (``keep_alive_timeout``) but
not for its body, nor how long a send may wait for a client that does not read:
a client that trickles a body, or takes an answer a few bytes at a time, holds a
connection, the bytes buffered for it, and whatever the request holds (an
admission slot) for as long as it likes.

- ``BodyDeadline`` reads a request's whole body before the app sees the
  request, and hands it on in one message. The body must arrive within
  ``body_timeout`` seconds and, after the first ``body_grace`` seconds, keep up
  with ``body_min_rate`` bytes per second on average; otherwise the answer is
  408 and the connection closes. It stands before admission in the pipeline,
  so a request takes a slot only with its body in hand, and nothing after it
  (idempotency keys, the view, storage) ever sees a request whose body did not
  arrive.
- A request ``streamed`` picks out (a multipart upload of files, which may be
  far larger than ``max_body_bytes``) is not read whole: the app reads its
  body as it comes, under the same deadlines, and a body that misses one
  raises a 408 ``ApiError`` from ``receive`` (the upload's reader bounds its
  size and removes what it stored).
- ``SendDeadline`` lets each send of an answer wait at most ``send_timeout``
  seconds for the client to take it. Past that, the connection is reset: the
  unsent bytes are dropped, in the worker and in the kernel (``Connections``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..config import SlowClientSettings
from ..errors import ApiError
from ..metrics import SLOW_CLIENTS
from .asgi import ASGIApp, Message, Receive, Scope, Send, header
from .call import send_reply
from .connections import Connections
from .errors import error_reply
from .methods import READ_METHODS
from .request_id import REQUEST_ID

logger = logging.getLogger("shoal.slow_clients")

HTTP1 = ("1.0", "1.1")


def announces_body(scope: Scope) -> bool:
    """Whether a request may come with a body."""
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() != b"0"
    if header(scope, b"transfer-encoding") is not None:
        return True
    # HTTP/1.x: without Content-Length or Transfer-Encoding there is no body
    # (RFC 9112, 6.3). HTTP/2 needs neither, so there only reads count as bodiless.
    return scope.get("http_version") not in HTTP1 and scope["method"] not in READ_METHODS


def declared_length(scope: Scope) -> int | None:
    length = header(scope, b"content-length")
    try:
        return int(length) if length is not None else None
    except ValueError:
        return None


class _Late(Exception):
    """The body missed a deadline."""


class BodyDeadline:
    """ASGI middleware: the whole body first, within its deadlines, then the app."""

    def __init__(
        self,
        app: ASGIApp,
        settings: SlowClientSettings,
        max_bytes: int,
        streamed: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.streamed = streamed
        self.timeout = settings.body_timeout
        self.grace = settings.body_grace
        self.min_rate = settings.body_min_rate
        self.max_bytes = max_bytes
        self.message = (
            f"the request body did not arrive in time: it must arrive within "
            f"{settings.body_timeout:g} s"
            + (
                f", at {settings.body_min_rate} bytes/s or more after its first "
                f"{settings.body_grace:g} s"
                if settings.body_min_rate > 0
                else ""
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not announces_body(scope):
            await self.app(scope, receive, send)
            return
        if self.streamed is not None and self.streamed(scope):
            await self.app(scope, self._paced(scope, receive), send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            # The app refuses it (413) without reading it.
            await self.app(scope, receive, send)
            return
        try:
            pending = await self._read(receive)
        except _Late:
            SLOW_CLIENTS.labels("body").inc()
            await self._refuse(scope, send)
            return
        if pending is None:  # the client left
            return

        async def replay() -> Message:
            nonlocal pending
            if pending is None:
                return await receive()
            # Handed on, and no longer held here: the app keeps its own copy.
            message, pending = pending, None
            return message

        await self.app(scope, replay, send)

    def _paced(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` under the body's deadlines: a piece that comes too late
        raises a 408 ``ApiError``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        size = 0
        done = False

        async def paced() -> Message:
            nonlocal size, done
            if done:  # the body is in: what comes next is a disconnect
                return await receive()
            deadline = start + self.timeout
            if self.min_rate > 0:
                deadline = min(deadline, start + self.grace + size / self.min_rate)
            try:
                async with asyncio.timeout_at(max(deadline, loop.time())):
                    message = await receive()
            except TimeoutError:
                SLOW_CLIENTS.labels("body").inc()
                late = ApiError(self.message, status=408)
                if scope.get("http_version") in HTTP1:
                    late.headers["Connection"] = "close"
                raise late from None
            size += len(message.get("body", b""))
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return paced

    async def _read(self, receive: Receive) -> Message | None:
        """The body as one ``http.request`` message (None if the client left);
        ``_Late`` past a deadline. Past ``max_bytes`` the body read so far is
        handed on as is (``more_body``), and the app refuses it (413)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        chunks: list[bytes] = []
        size = 0

        def deadline() -> float:
            if self.min_rate > 0:
                return min(start + self.timeout, start + self.grace + size / self.min_rate)
            return start + self.timeout

        while True:
            # Each piece that arrives moves the deadline on; rather than re-arm the
            # timer for every piece, a timer that fires early is armed again.
            armed = deadline()
            if armed <= loop.time():
                raise _Late
            try:
                async with asyncio.timeout_at(armed):
                    while True:
                        message = await receive()
                        if message["type"] != "http.request":
                            return None
                        more = bool(message.get("more_body", False))
                        if not chunks and not more:
                            return message  # the whole body in one message: the usual case
                        chunk = message.get("body", b"")
                        chunks.append(chunk)
                        size += len(chunk)
                        if not more or size > self.max_bytes:
                            body = b"".join(chunks)
                            return {"type": "http.request", "body": body, "more_body": more}
            except TimeoutError:
                continue  # late, unless what came meanwhile moved the deadline

    async def _refuse(self, scope: Scope, send: Send) -> None:
        late = ApiError(self.message, status=408)
        if scope.get("http_version") in HTTP1:
            # The rest of the body may still be on its way: this connection is done.
            late.headers["Connection"] = "close"
        await send_reply(send, error_reply(late, scope.get(REQUEST_ID)))


class SendDeadline:
    """ASGI middleware: a send of an answer that waits longer than ``timeout``
    seconds for the client resets the connection.

    The connection is reset through ``connections`` (`shoal serve` records them);
    on a connection it does not know, the answer just stops there, and the server
    closes the connection as it closes any answer left unfinished.
    """

    def __init__(self, app: ASGIApp, timeout: float, connections: Connections) -> None:
        self.app = app
        self.timeout = timeout
        self.connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cut = False

        async def send_in_time(message: Message) -> None:
            nonlocal cut
            if cut:
                return
            try:
                async with asyncio.timeout(self.timeout):
                    await send(message)
            except TimeoutError:
                cut = True
                SLOW_CLIENTS.labels("send").inc()
                reset = self.connections.reset(scope)
                logger.info(
                    "a client did not take its answer within slow_clients.send_timeout (%g s): %s",
                    self.timeout,
                    "connection reset" if reset else "answer ended",
                    extra={"request_id": scope.get(REQUEST_ID)},
                )

        await self.app(scope, receive, send_in_time)
