"""The bare app (``bare.py``) that also keeps, per client connection (its source
port), how many requests it answered and when it saw the first one. ``GET
/_fairness`` answers them as JSON (and forgets them); ``benchmarks/loop_fairness.py``
asks once wrk is done."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .bare import BODY, HEADERS
from .bare import app as bare

Message = dict[str, Any]

#: Requests answered per client port, and the monotonic time of each port's first.
counts: dict[int, int] = {}
first_seen: dict[int, float] = {}


REPORT_PATH = "/_fairness"


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        await bare(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] == REPORT_PATH:
        report = json.dumps({"counts": counts, "first_seen": first_seen}).encode()
        counts.clear()
        first_seen.clear()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(report))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": report})
    elif scope["type"] == "http":
        client = scope.get("client")
        port = int(client[1]) if client else 0
        counts[port] = counts.get(port, 0) + 1
        first_seen.setdefault(port, time.monotonic())
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
