"""Change streams in tests: an event stream opened with the app's test client
and read in the background, event by event."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from quart.typing import TestClientProtocol as Client

from shoal.resources.changes import EXTENSION_KEY as FEEDS_KEY
from shoal.resources.changes import ChangeFeeds

#: Seconds a test waits for an event it expects.
EVENT_WAIT = 10.0


@dataclass
class Event:
    name: str
    id: str | None
    data: dict[str, Any]


@dataclass
class Listener:
    """An open stream, read in the background into ``events`` and ``comments``."""

    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    async def wait_for(self, count: int, timeout: float = EVENT_WAIT) -> list[Event]:
        """Until ``count`` events have arrived (or fail after ``timeout``)."""
        await self._wait_until(lambda: len(self.events) >= count, timeout, f"{count} events")
        return self.events[:count]

    async def wait_for_comments(self, count: int, timeout: float = EVENT_WAIT) -> None:
        """Until ``count`` comment lines (heartbeats) have arrived."""
        await self._wait_until(lambda: len(self.comments) >= count, timeout, f"{count} comments")

    async def _wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done():
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"not {what} in {timeout:g}s: {self.events} {self.comments}"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    def feed(self, text: str) -> None:
        for block in text.split("\n\n"):
            if not block.strip():
                continue
            lines = block.split("\n")
            if all(line.startswith(":") for line in lines):
                self.comments.extend(lines)
                continue
            fields: dict[str, str] = {}
            for line in lines:
                key, _, value = line.partition(": ")
                fields[key] = value
            if "event" in fields:
                data = json.loads(fields["data"])
                self.events.append(Event(fields["event"], fields.get("id"), data))
        self.arrived.set()


@asynccontextmanager
async def listening(
    client: Client, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Listener]:
    """Open ``path`` as an event stream and read it until the block ends. It is
    yielded once the worker counts it among the resource's subscribers and
    follows the resource's changes: every change written after is its to see."""
    listener = Listener()
    feeds: ChangeFeeds = client.app.extensions[FEEDS_KEY]
    feed = feeds.feeds[path.strip("/").split("/")[0]]
    subscribed = len(feed.subscribers)
    async with client.request(path, method="GET", headers=headers or {}) as connection:
        await connection.send_complete()
        buffer = ""

        async def read() -> None:
            nonlocal buffer
            while True:
                chunk = await connection.receive()
                if not listener.status:
                    # Quart's test connection knows the answer's start by now.
                    started: Any = connection
                    listener.status = started.status_code or 0
                    listener.headers = {k.lower(): v for k, v in started.headers.items()}
                buffer += chunk.decode()
                complete, _, buffer = buffer.rpartition("\n\n")
                if complete:
                    listener.feed(complete + "\n\n")

        reader = asyncio.create_task(read())
        try:
            # The first bytes (the retry hint) arrive once the stream is open.
            for _ in range(100):  # bounded: 10 s at most
                if listener.status or reader.done():
                    break
                await asyncio.sleep(0.1)
            assert listener.status == 200, f"the stream answered {listener.status}"
            for _ in range(100):  # bounded: 10 s at most
                if len(feed.subscribers) > subscribed and feed.following:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the stream never subscribed")
            yield listener
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await connection.disconnect()
