"""Change streams under load: many SSE subscribers on one server while a writer POSTs.

``subscribers`` raw asyncio connections (uvloop, one process) each read
``GET /<resource>/_stream``; once every one of them has received an event (the
writer POSTs a "ready" document every half second until then), one writer
connection POSTs documents one after the other for ``duration`` seconds. Then
the client waits up to ``drain`` seconds for every subscriber to receive every
event, closes every connection and prints one JSON object: the subscribers
held, the events written and delivered, whether every subscriber received
every event in the order written, the delivery latency (from the POST being
sent to the event being read) and the CPU each role used while it measured::

    python -m benchmarks.sse_client --url http://127.0.0.1:8000 --resource events \\
        --subscribers 500 --duration 6 --app-pids 101,102 --db-pids 99

The HTTP it speaks is the little it needs: HTTP/1.1 requests, answers with a
Content-Length or chunked bodies (``ChunkedDecoder``), and Server-Sent Events
(``SseParser``), both pure and tested in tests/test_benchmarks.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import uvloop

from .driver import percentile
from .proc import cpu_seconds, machine_busy_seconds, peak_rss_mb

#: The titles of the documents the writer POSTs: before the measurement, and during it.
READY_TITLE = "stream ready"
EVENT_TITLE = "stream event"
#: Connections opened at once while the subscribers connect.
CONNECT_CONCURRENCY = 50


class ProtocolError(ValueError):
    """The server sent something this client cannot read."""


class ChunkedDecoder:
    """The body of a ``Transfer-Encoding: chunked`` answer, fed as it arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._remaining = 0  # bytes left of the chunk being read
        self._state = "size"  # size, data, crlf
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The body bytes ``data`` completes (possibly none)."""
        self._buffer += data
        out = bytearray()
        while not self.done:
            if self._state == "size":
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    break
                line = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
                del self._buffer[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError(f"not a chunk size: {line!r}") from None
                if size == 0:
                    self.done = True
                    self._buffer.clear()
                    break
                self._remaining, self._state = size, "data"
            elif self._state == "data":
                if not self._buffer:
                    break
                taken = self._buffer[: self._remaining]
                out += taken
                del self._buffer[: len(taken)]
                self._remaining -= len(taken)
                if self._remaining == 0:
                    self._state = "crlf"
            else:
                if len(self._buffer) < 2:
                    break
                if self._buffer[:2] != b"\r\n":
                    raise ProtocolError("a chunk does not end with CRLF")
                del self._buffer[:2]
                self._state = "size"
        return bytes(out)


@dataclass(frozen=True)
class SseMessage:
    """One Server-Sent Events message (``event`` is "message" unless it names one)."""

    event: str
    data: str
    id: str | None = None


class SseParser:
    """Server-Sent Events messages from a stream's bytes, fed as they arrive.

    Lines end with LF or CRLF; comments (``: keep-alive``) and blocks with
    neither data nor an event name (``retry: 2000``) give no message.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[SseMessage]:
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        messages = []
        for block in blocks:
            event, data_lines, event_id = "", [], None
            for line in block.decode().split("\n"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data_lines.append(value)
                elif name == "id":
                    event_id = value
            if event or data_lines:
                messages.append(SseMessage(event or "message", "\n".join(data_lines), event_id))
        return messages


def split_head(buffer: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """The status, headers (lower-case names) and the rest, once ``buffer``
    holds a whole response head; None before."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, buffer[end + 4 :]


# --- the subscribers ---------------------------------------------------------------


class Subscriber(asyncio.Protocol):
    """One SSE connection: its answer's status, and the events it read."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.status: int | None = None
        self.started = asyncio.get_running_loop().create_future()
        self._head = b""
        self._chunked: ChunkedDecoder | None = None
        self._parser = SseParser()
        #: (document _id, the monotonic time it was read) of each event of the writer's.
        self.received: list[tuple[str, float]] = []
        self.ready = False
        #: Why the stream ended before the client closed it (an ``end`` event, EOF).
        self.ended: str | None = None
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.status is None:
            head = split_head(self._head + data)
            if head is None:
                self._head += data
                return
            self.status, headers, data = head
            self._head = b""
            if self.status != 200:
                self._finish(f"answered {self.status}")
                return
            if headers.get("transfer-encoding", "").lower() == "chunked":
                self._chunked = ChunkedDecoder()
            self.started.set_result(True)
        body = self._chunked.feed(data) if self._chunked is not None else data
        for message in self._parser.feed(body):
            if message.event == "end":
                self.ended = f"end event: {message.data}"
                continue
            if not message.data.startswith("{"):
                continue
            payload = orjson.loads(message.data)
            title = (payload.get("document") or {}).get("title")
            if title == EVENT_TITLE:
                self.received.append((str(payload.get("_id")), now))
            elif title == READY_TITLE:
                self.ready = True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            self._finish(f"closed by the server ({exc})" if exc else "closed by the server")

    def close(self) -> None:
        """Close the connection from this side (the end of the run)."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        if not self.started.done():
            self.started.set_result(False)
        if self.transport is not None:
            self.transport.close()

    @property
    def held(self) -> bool:
        return self.status == 200 and self.ended is None


# --- the writer -----------------------------------------------------------------------


class Writer:
    """POSTs one document at a time over one keep-alive connection."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        #: (document _id, the monotonic time its POST was sent) of each measured write.
        self.sent: list[tuple[str, float]] = []
        self.errors = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        assert self.reader is not None
        assert self.writer is not None
        body = orjson.dumps(document)
        self.writer.write(
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        parsed = split_head(head)
        assert parsed is not None
        status, headers, _ = parsed
        if headers.get("transfer-encoding", "").lower() == "chunked":
            decoder, content = ChunkedDecoder(), b""
            while not decoder.done:
                content += decoder.feed(await self.reader.read(65536))
        else:
            content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            # hypercorn closes a keep-alive connection after keep_alive_max_requests.
            self.close()
            await self.connect()
        return status, orjson.loads(content) if content else {}

    async def write(self, title: str, number: int) -> str | None:
        """POST one document; its _id, or None (counted) if it was not created
        (a connection the server closed without an answer is opened again)."""
        try:
            status, answer = await self.post({"title": title, "qty": number})
        except (OSError, asyncio.IncompleteReadError):
            self.errors += 1
            self.close()
            await self.connect()
            return None
        if status != 201 or "_id" not in answer:
            self.errors += 1
            return None
        return str(answer["_id"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- the run ----------------------------------------------------------------------------


@dataclass
class Clock:
    """CPU seconds so far of the app, the database, this client and the machine."""

    app_pids: Sequence[int]
    db_pids: Sequence[int]
    readings: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    def read(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.readings.append(
            (
                time.monotonic(),
                cpu_seconds(self.app_pids),
                cpu_seconds(self.db_pids),
                usage.ru_utime + usage.ru_stime,
                machine_busy_seconds(),
            )
        )

    def percent(self) -> dict[str, float]:
        """CPU used between the first and last reading, in % of one core, by role
        (the client is the "wrk" of this scenario)."""
        (t0, *start), (t1, *end) = self.readings[0], self.readings[-1]
        app, db, client, busy = (
            100.0 * (b - a) / max(t1 - t0, 1e-9) for a, b in zip(start, end, strict=True)
        )
        return {
            "app": round(app, 1),
            "db": round(db, 1),
            "wrk": round(client, 1),
            "other": round(max(0.0, busy - app - db - client), 1),
        }


async def _subscribe(url: str, path: str, count: int, timeout: float) -> list[Subscriber]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    subscribers = [Subscriber(request) for _ in range(count)]

    deadline = loop.time() + timeout  # for them all

    async def connect(subscriber: Subscriber) -> None:
        async with gate:
            try:
                left = max(0.0, deadline - loop.time())
                await asyncio.wait_for(loop.create_connection(lambda: subscriber, host, port), left)
                left = max(0.0, deadline - loop.time())
                await asyncio.wait_for(asyncio.shield(subscriber.started), left)
            except (OSError, TimeoutError) as error:
                subscriber.ended = subscriber.ended or f"could not connect: {error!r}"

    await asyncio.gather(*(connect(subscriber) for subscriber in subscribers))
    return subscribers


async def run(
    url: str,
    resource_name: str,
    *,
    subscribers: int,
    duration: float,
    drain: float,
    app_pids: Sequence[int],
    db_pids: Sequence[int],
    connect_timeout: float = 30.0,
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    started = time.monotonic()
    crowd = await _subscribe(url, f"/{resource_name}/_stream", subscribers, connect_timeout)
    connect_seconds = time.monotonic() - started
    open_ = [s for s in crowd if s.held]
    writer = Writer(host, port, f"/{resource_name}")
    clock = Clock(app_pids, db_pids)
    try:
        await writer.connect()
        # Until every open stream has an event: each subscription is then in place.
        ready_deadline = time.monotonic() + connect_timeout
        number = 0
        while open_ and time.monotonic() < ready_deadline:
            await writer.write(READY_TITLE, number)
            number += 1
            await asyncio.sleep(0.5)
            if all(s.ready or not s.held for s in open_):
                break
        ready = sum(s.ready for s in open_)
        clock.read()
        stop_at = time.monotonic() + duration
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            written = await writer.write(EVENT_TITLE, number)
            number += 1
            if written is not None:
                writer.sent.append((written, sent))
        write_seconds = time.monotonic() - clock.readings[0][0]
        expected = len(writer.sent)
        drain_until = time.monotonic() + drain
        while time.monotonic() < drain_until:
            if all(len(s.received) >= expected or not s.held for s in open_):
                break
            await asyncio.sleep(0.05)
        clock.read()
        held_at_end = sum(s.held for s in open_)
    finally:
        writer.close()
        for subscriber in crowd:
            subscriber.close()
        await asyncio.sleep(0.2)  # let the transports close
    return summarize(
        crowd,
        writer,
        subscribers=subscribers,
        held_at_end=held_at_end,
        ready=ready,
        write_seconds=write_seconds,
        measure_started=clock.readings[0][0],
        cpu=clock.percent(),
        connect_seconds=connect_seconds,
    )


def summarize(
    crowd: Sequence[Subscriber],
    writer: Writer,
    *,
    subscribers: int,
    held_at_end: int,
    ready: int,
    write_seconds: float,
    measure_started: float,
    cpu: dict[str, float],
    connect_seconds: float,
) -> dict[str, Any]:
    """The figures of a run, from what each subscriber read and the writer wrote."""
    written = [item for item, _ in writer.sent]
    sent_at = dict(writer.sent)
    connected = [s for s in crowd if s.status == 200]
    refused: dict[str, int] = {}
    for subscriber in crowd:
        if subscriber.status != 200:
            key = str(subscriber.status) if subscriber.status else "no answer"
            refused[key] = refused.get(key, 0) + 1
    latencies, deliveries, last = [], 0, measure_started
    complete = 0
    for subscriber in connected:
        ids = [item for item, _ in subscriber.received]
        complete += ids == written
        deliveries += len(subscriber.received)
        for item, read_at in subscriber.received:
            last = max(last, read_at)
            if item in sent_at:
                latencies.append(read_at - sent_at[item])
    expected = len(written) * len(connected)
    seconds = max(last - measure_started, 1e-9)
    ended = sorted({s.ended for s in connected if s.ended})
    return {
        "subscribers": subscribers,
        "connected": len(connected),
        "refused": refused,
        "ready": ready,
        "held": held_at_end,
        "ended": ended[:5],
        "connect_seconds": round(connect_seconds, 2),
        "events_written": len(written),
        "write_errors": writer.errors,
        "write_seconds": round(write_seconds, 3),
        "write_rate": len(written) / write_seconds if write_seconds > 0 else 0.0,
        "deliveries": deliveries,
        "expected": expected,
        "missed": max(0, expected - deliveries),
        "complete": complete,
        "all_received": bool(written) and complete == len(connected) == subscribers,
        "seconds": seconds,
        "deliveries_per_s": deliveries / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_percent": cpu,
        "client_peak_rss_mb": round(peak_rss_mb(os.getpid()), 1),
    }


def _pids(text: str) -> list[int]:
    return [int(pid) for pid in text.split(",") if pid]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="the server, http://127.0.0.1:PORT")
    parser.add_argument("--resource", required=True, help="a resource with streams: true")
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of writes")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait for the rest")
    parser.add_argument("--app-pids", default="", help="the server's pids, comma-separated")
    parser.add_argument("--db-pids", default="", help="the database's pids, comma-separated")
    args = parser.parse_args(argv)
    result = uvloop.run(
        run(
            args.url,
            args.resource,
            subscribers=args.subscribers,
            duration=args.duration,
            drain=args.drain,
            app_pids=_pids(args.app_pids),
            db_pids=_pids(args.db_pids),
        )
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
