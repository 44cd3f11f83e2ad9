"""A TCP proxy that puts a server at a network distance, run as its own process::

    python -m benchmarks.delay_proxy --listen 127.0.0.1:PORT --target 127.0.0.1:PORT --delay-ms 5

Each chunk one side sends is written to the other side at its arrival time plus
half the delay, so a request and its answer cost the whole delay of added round
trip (this machine's kernel has no ``netem`` to do it). Order is kept per
connection: each direction queues ``(due time, chunk)``, and a timer calls it
back when its first chunk is due to write whatever is due by then, so later
chunks wait alongside earlier ones instead of behind them; the delay adds
latency, not a cap on throughput.
Reading from a side pauses while its direction holds more than ``HIGH_WATER``
bytes or the receiving side cannot keep up.

An end of stream travels like data, with the same delay (a half-closed
connection stays half-open); a connection is closed on both sides once both
directions have ended, and when one side is lost, the other is closed as soon as
the data that side sent has been delivered.

Due times are kept on the monotonic clock and met with a timerfd (``Clock``):
no chunk is delivered before its time, and few are more than a tenth of a
millisecond late on an idle machine (the harness measures the round trip the
proxy actually adds). Linux only, as the rest of the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import heapq
import itertools
import math
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import cast

#: Pause reading a side while its direction holds this many bytes; resume below LOW.
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024

#: Queued after a side's data: its end of stream (written as EOF), or its loss
#: (the receiving side is closed).
EOF = b""
LOST = None

Chunk = bytes | None


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as a (host, port) pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


_CLOCK_MONOTONIC = 1  # time.monotonic()'s clock
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class Clock:
    """Calls back at times of the monotonic clock, to a tenth of a millisecond.

    The event loop's own timers tick in whole milliseconds (uvloop's, and the
    millisecond timeout of epoll under asyncio's), which would add up to a
    millisecond each way to a delay of 0.5 ms. This keeps the due callbacks in a
    heap and one Linux timerfd set to the earliest, watched by the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._due: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._armed_for: float | None = None
        loop.add_reader(self.fd, self._fire)

    def at(self, when: float, callback: Callable[[], object]) -> None:
        """Call ``callback`` once ``time.monotonic()`` has reached ``when``."""
        heapq.heappush(self._due, (when, next(self._order), callback))
        if self._armed_for is None or when < self._armed_for:
            self._arm(when)

    def _arm(self, when: float) -> None:
        seconds = math.floor(when)
        value = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, round((when - seconds) * 1e9)))
        if value.it_value.tv_nsec >= 1_000_000_000:
            value.it_value = _Timespec(seconds + 1, 0)
        if self._libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(value), None):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._armed_for = when

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        self._armed_for = None
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            heapq.heappop(self._due)[2]()
        if self._due:
            self._arm(self._due[0][0])

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


class Side(asyncio.Protocol):
    """One end of a proxied connection: the client's, or the target's."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._pauses: set[str] = set()

    @property
    def writable(self) -> bool:
        return self.transport is not None and not self.closed and not self.transport.is_closing()

    def pause(self, reason: str) -> None:
        """Stop reading from this side (for ``reason``, until it is resumed)."""
        if not self._pauses and self.writable:
            assert self.transport is not None
            self.transport.pause_reading()
        self._pauses.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        if not self._pauses and self.writable:
            assert self.transport is not None
            self.transport.resume_reading()

    def close(self) -> None:
        if self.writable:
            assert self.transport is not None
            self.transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.link.made(self)

    def data_received(self, data: bytes) -> None:
        self.link.pipe_from(self).push(data)

    def eof_received(self) -> bool:
        self.link.pipe_from(self).push(EOF)
        return True  # keep the transport open: data may still flow the other way

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.link.lost(self)

    def pause_writing(self) -> None:
        self.link.pipe_to(self).source.pause("receiver")

    def resume_writing(self) -> None:
        self.link.pipe_to(self).source.resume("receiver")


class Pipe:
    """One direction of a connection: chunks from ``source`` are written to
    ``sink`` ``half_delay`` seconds after they arrived, in order."""

    def __init__(self, proxy: DelayProxy, source: Side, sink: Side) -> None:
        self.loop = proxy.loop
        self.clock = proxy.clock
        self.half_delay = proxy.half_delay
        self.source = source
        self.sink = sink
        self.chunks: deque[tuple[float, Chunk]] = deque()
        self.buffered = 0
        self.armed = False  # a flush is due (timer set, or called soon)
        self.ended = False
        self.bytes = 0

    def push(self, chunk: Chunk) -> None:
        if self.ended or (chunk is not LOST and self.chunks and self.chunks[-1][1] is LOST):
            return
        self.chunks.append((time.monotonic() + self.half_delay, chunk))
        if chunk:
            self.buffered += len(chunk)
            if self.buffered > HIGH_WATER:
                self.source.pause("queue")
        self.schedule()

    def schedule(self) -> None:
        """Set the timer for the first chunk, once the sink is connected."""
        if self.armed or not self.chunks or self.sink.transport is None:
            return
        self.armed = True
        due = self.chunks[0][0]
        if due <= time.monotonic():
            self.loop.call_soon(self.flush)
        else:
            self.clock.at(due, self.flush)

    def flush(self) -> None:
        """Write every chunk that is due; end the direction at its end marker."""
        if not self.armed:
            return  # cancelled meanwhile
        self.armed = False
        now = time.monotonic()
        due: list[bytes] = []
        while self.chunks and self.chunks[0][0] <= now:
            _, chunk = self.chunks.popleft()
            if chunk:
                due.append(chunk)
                continue
            self._write(due)
            self.end(chunk)
            return
        self._write(due)
        self.schedule()

    def _write(self, due: list[bytes]) -> None:
        if not due:
            return
        size = sum(len(chunk) for chunk in due)
        self.buffered -= size
        self.bytes += size
        if self.sink.writable:
            assert self.sink.transport is not None
            self.sink.transport.writelines(due)
        if self.buffered < LOW_WATER:
            self.source.resume("queue")

    def end(self, chunk: Chunk) -> None:
        """The source's end reached the sink: half-close it (EOF) or close it (LOST)."""
        self.cancel()
        if self.sink.writable:
            assert self.sink.transport is not None
            if chunk is EOF and self.sink.transport.can_write_eof():
                self.sink.transport.write_eof()
            else:
                self.sink.transport.close()
        self.source.link.ended()

    def cancel(self) -> None:
        """Drop what is queued: nothing more goes this way."""
        self.ended = True
        self.chunks.clear()
        self.buffered = 0
        self.armed = False


class Link:
    """One client connection and its own connection to the target."""

    def __init__(self, proxy: DelayProxy) -> None:
        self.proxy = proxy
        self.client = Side(self)
        self.target = Side(self)
        self.up = Pipe(proxy, self.client, self.target)
        self.down = Pipe(proxy, self.target, self.client)

    def pipe_from(self, side: Side) -> Pipe:
        return self.up if side is self.client else self.down

    def pipe_to(self, side: Side) -> Pipe:
        return self.down if side is self.client else self.up

    def made(self, side: Side) -> None:
        if side is self.client:
            self.proxy.links.add(self)
            self.proxy.connections += 1
            self.proxy.loop.create_task(self._connect())
        else:
            self.up.schedule()  # what the client sent while the target was connecting

    async def _connect(self) -> None:
        host, port = self.proxy.target
        try:
            await self.proxy.loop.create_connection(lambda: self.target, host, port)
        except OSError as error:
            print(f"delay proxy: cannot reach {host}:{port}: {error}", file=sys.stderr)
            self.abort()
            self.ended()

    def lost(self, side: Side) -> None:
        # Nothing more can reach the lost side; what it sent still goes, then the
        # other side is closed.
        self.pipe_to(side).cancel()
        self.pipe_from(side).push(LOST)
        self.ended()

    def ended(self) -> None:
        if self.up.ended and self.down.ended:
            self.client.close()
            self.target.close()
            if self in self.proxy.links:
                self.proxy.links.remove(self)
                self.proxy.bytes_up += self.up.bytes
                self.proxy.bytes_down += self.down.bytes

    def abort(self) -> None:
        self.up.cancel()
        self.down.cancel()
        self.client.close()
        self.target.close()


class DelayProxy:
    """Listens on ``listen`` and connects each client to ``target`` with ``delay_ms``
    of added round trip."""

    def __init__(self, target: tuple[str, int], delay_ms: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.clock = Clock(self.loop)
        self.target = target
        self.half_delay = delay_ms / 2000.0
        self.links: set[Link] = set()
        self.connections = 0
        self.bytes_up = 0
        self.bytes_down = 0

    async def serve(self, listen: tuple[str, int], stop: asyncio.Event) -> None:
        server = await self.loop.create_server(
            lambda: Link(self).client, listen[0], listen[1], backlog=4096, reuse_address=True
        )
        address = server.sockets[0].getsockname()
        print(f"delay proxy: {address[0]}:{address[1]} -> {self.target[0]}:{self.target[1]}, "
              f"{self.half_delay * 2000:g} ms round trip", flush=True)  # fmt: skip
        async with server:
            await stop.wait()
            server.close()
            open_links = len(self.links)
            for link in list(self.links):
                link.abort()
        self.clock.close()
        print(
            f"delay proxy: {self.connections} connections ({open_links} still open when "
            f"stopped), {self.bytes_up:,} bytes up and {self.bytes_down:,} down on the "
            "connections that ended",
            flush=True,
        )


async def serve(listen: tuple[str, int], target: tuple[str, int], delay_ms: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await DelayProxy(target, delay_ms).serve(listen, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.delay_proxy",
        description="A TCP proxy adding a fixed round-trip delay (half each way).",
    )
    parser.add_argument("--listen", type=parse_address, required=True, help="HOST:PORT")
    parser.add_argument("--target", type=parse_address, required=True, help="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, required=True, help="added round trip, ms")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error("--delay-ms must not be negative")
    import uvloop

    uvloop.run(serve(args.listen, args.target, args.delay_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
