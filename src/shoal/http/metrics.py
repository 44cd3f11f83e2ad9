"""HTTP metrics on the raw ASGI messages, and ``/metrics`` for holders of the token.

``Metrics`` is the outermost middleware, so every answer is counted and timed:
the fast path's cache hits, errors, 304s, compressed or not. It labels each
with the method, the status, and the route template (``/books/<item_id>``,
never the raw path, so an id never becomes a label): Quart's URL rule, which
``RouteLabel`` copies into the ASGI scope before the other request policies run,
or what the cache's fast path or the direct reads wrote there when they
answered. A request that matched no
rule is labelled ``unmatched``.

With ``metrics.token`` set, ``GET /metrics`` is answered here, before Quart,
to requests that send ``Authorization: Bearer <token>`` (401 otherwise); the
body holds every worker of the instance (``shoal.metrics``). Without it,
``/metrics`` is not a route of the API (404); ``metrics.bind`` serves it on a
listener of its own instead.
"""

from __future__ import annotations

import asyncio
import hmac
import time

import orjson
from quart import Quart, Response, request

from ..errors import error_body
from ..metrics import (
    IDEMPOTENT_REPLAYS,
    exposition,
    http_request,
    probe_event_loop_lag,
    worker_started,
    worker_stopped,
)
from ..tasks import cancel
from .asgi import ASGIApp, Message, Receive, Scope, Send, header
from .methods import SAFE_METHODS

#: Where the route template of a request is kept in its ASGI scope.
ROUTE_SCOPE_KEY = "shoal.route"
#: The route label of a request that matched no URL rule (404, or answered
#: before routing).
UNMATCHED = "unmatched"
METRICS_PATH = "/metrics"
#: Methods counted by name; any other is counted as "other" (a client chooses
#: the method, and labels must stay a bounded set).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The status of a request whose client left before any answer (as nginx logs it).
CLIENT_CLOSED = 499


class RouteLabel:
    """The request policy that labels a request with its route template, the
    first of the app's ordered policies (``app.policies``): it copies Quart's
    URL rule into the ASGI scope, where ``Metrics`` reads it."""

    async def before_request(self) -> None:
        rule = request.url_rule
        request.scope[ROUTE_SCOPE_KEY] = rule.rule if rule is not None else UNMATCHED  # type: ignore[literal-required]

    async def after_request(self, response: Response) -> Response:
        return response


class Metrics:
    """ASGI middleware: ``http_requests_total`` and ``http_request_duration_seconds``
    for every answer, idempotent replays, and ``/metrics`` behind a token."""

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token is not None else None

    @staticmethod
    def init_app(app: Quart) -> None:
        """Count this worker in ``shoal_workers`` and watch its event loop's lag
        while it serves (the route of each request is noted by ``RouteLabel``,
        one of the request policies)."""
        probe: list[asyncio.Task[None]] = []

        async def started() -> None:
            worker_started()
            probe.append(asyncio.create_task(probe_event_loop_lag(), name="loop-lag"))

        async def stopped() -> None:
            while probe:
                await cancel(probe.pop())
            worker_stopped()

        app.before_serving(started)
        app.after_serving(stopped)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = self.app
        if self.expected is not None and scope["path"] == METRICS_PATH:
            app = self._scrape  # counted like any other answer
        started = time.perf_counter()
        status = 0
        replayed = False
        write = scope["method"] not in SAFE_METHODS

        async def send_noting_status(message: Message) -> None:
            nonlocal status, replayed
            if message["type"] == "http.response.start":
                status = message["status"]
                if write:
                    replayed = (b"idempotent-replayed", b"true") in message["headers"]
            await send(message)

        failed = False
        try:
            await app(scope, receive, send_noting_status)
        except Exception:
            failed = True
            raise
        finally:
            method = scope["method"]
            if method not in KNOWN_METHODS:
                method = "other"
            if status == 0:
                # Nothing was answered: the server answers 500 for an error;
                # otherwise the client left and Quart dropped its request.
                status = 500 if failed else CLIENT_CLOSED
            requests, duration = http_request(method, scope.get(ROUTE_SCOPE_KEY, UNMATCHED), status)
            requests.inc()
            duration.observe(time.perf_counter() - started)
            if replayed:
                IDEMPOTENT_REPLAYS.labels(method).inc()

    async def _scrape(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTE_SCOPE_KEY] = METRICS_PATH
        given = header(scope, b"authorization") or b""
        assert self.expected is not None
        if not hmac.compare_digest(given, self.expected):
            await _answer(
                send,
                401,
                orjson.dumps(error_body(401, "/metrics needs the metrics token as a Bearer token")),
                b"application/json",
                [(b"www-authenticate", b'Bearer realm="metrics"')],
            )
            return
        if scope["method"] != "GET":
            body = orjson.dumps(error_body(405, "/metrics answers GET only"))
            await _answer(send, 405, body, b"application/json", [(b"allow", b"GET")])
            return
        accept = header(scope, b"accept")
        # Reading every worker's files is blocking I/O: off the event loop.
        body, content_type = await asyncio.to_thread(
            exposition, accept.decode("latin-1") if accept is not None else None
        )
        await _answer(send, 200, body, content_type.encode())


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
