"""Slow clients against one worker: do other requests still get served, and is
each slow connection cut off within its deadline? ::

    python -m benchmarks.slow_clients [--senders 200] [--readers 200] [--seconds 15]

Starts the MongoDB stand-in and ``redis-server`` (``stack.py``) and ``shoal
serve --workers 1`` with ``benchmarks/shoal.yaml`` plus a resource of large
documents (``blobs``), with the default ``slow_clients`` deadlines. Then:

1. **baseline**: ``wrk`` GETs uncached items (``/items/<id>``) for ``--seconds``;
2. **slow clients**: ``--senders`` connections announce a 100,000-byte POST body
   and send it slowly (half stop after the first bytes, half keep twice
   ``body_min_rate`` for ever), and ``--readers`` connections ask for a list of
   about 5 MB (``/blobs``) and read none of it (a 4 KiB receive window). Each
   reconnects once it has been cut off. Once all are open (every reader's answer
   has started), ``wrk`` runs again as in 1;
3. the clients stop reconnecting, and the run waits until the last is cut off.

It prints, for both ``wrk`` runs, requests/s, p50, p99 and errors (non-2xx answers
and socket errors); for each kind of slow client, how many times one was cut off
and how long after its deadline (a sender's: the minimum rate's, or
``body_timeout``; a reader's: ``send_timeout`` after its answer started); and the
worker's RSS before, at its peak while they were held, and after. Nothing here is
a test: the figures are one run's, on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shoal.config import SlowClientSettings

from . import servers
from .data import Dataset, make_documents, post_documents, write_docs_file
from .proc import cpu_seconds, machine_busy_seconds, rss_mb, sampling_rss
from .services import Service
from .stack import Stack
from .wrk import WrkResult, run_wrk, wrk_command

#: A resource of large documents: its list answer is far larger than loopback's
#: kernel buffers (a few MB), so most of it waits in the worker for the reader.
BLOBS = {
    "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET"],
    "public_methods": ["GET", "POST"],
    "public_item_methods": ["GET"],
    "pagination_limit": 50,
}
BLOB_BYTES = 200_000
BLOB_COUNT = 25
#: The body a slow sender announces.
DECLARED_BODY = 100_000
#: Seconds a cut-off may come after its deadline and still count as on time.
ON_TIME = 1.0


@dataclass
class Cuts:
    """How long after its deadline each slow connection of one kind was cut off."""

    #: (when it opened, seconds after its deadline it was cut off), per connection.
    late: list[tuple[float, float]] = field(default_factory=list)
    #: Answers other than the expected one (a sender's 408, a reader's reset).
    unexpected: list[str] = field(default_factory=list)

    def add(self, opened: float, seconds_after_deadline: float) -> None:
        self.late.append((opened, seconds_after_deadline))

    def summary(self, since: float = 0.0) -> str:
        """The cut-offs of the connections opened at ``since`` or later."""
        ordered = sorted(late for opened, late in self.late if opened >= since)
        if not ordered:
            return "none cut off"
        on_time = sum(1 for late in ordered if late <= ON_TIME)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return (
            f"{len(ordered)} cut off, {on_time} within {ON_TIME:g} s of the deadline; "
            f"after it: median {statistics.median(ordered):+.2f} s, p99 {p99:+.2f} s, "
            f"max {ordered[-1]:+.2f} s; unexpected answers: {len(self.unexpected)}"
            + (f" ({', '.join(sorted(set(self.unexpected))[:3])})" if self.unexpected else "")
        )


# -- slow senders (asyncio) --------------------------------------------------------


async def _send_slowly(
    port: int, deadlines: SlowClientSettings, stalls: bool, cuts: Cuts, opened: set[int], key: int
) -> None:
    """One slow POST: its answer and when it came, against its deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = b'{"title": "' + b"s" * 100
    started = time.monotonic()
    writer.write(
        b"POST /items HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {DECLARED_BODY}\r\n\r\n".encode()
        + first
    )
    opened.add(key)
    sent = len(first)

    async def trickle() -> None:
        nonlocal sent
        step = max(1, deadlines.body_min_rate // 5)  # twice the minimum rate, 10 times a second
        while not stalls and sent + step < DECLARED_BODY:
            await asyncio.sleep(0.1)
            writer.write(b"s" * step)
            sent += step

    feeding = asyncio.create_task(trickle())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
        answered = time.monotonic() - started
    except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
        cuts.unexpected.append(type(error).__name__)
        return
    finally:
        feeding.cancel()
        writer.close()
        opened.discard(key)
    if stalls:
        deadline = deadlines.body_grace + len(first) / deadlines.body_min_rate
    else:
        deadline = deadlines.body_timeout
    status = head.split(b" ", 2)[1].decode()
    if status != "408":
        cuts.unexpected.append(status)
    cuts.add(started, answered - deadline)


async def _senders(
    port: int, count: int, deadlines: SlowClientSettings, cuts: Cuts, opened: set[int],
    stop: threading.Event,
) -> None:  # fmt: skip
    async def one(key: int) -> None:
        while not stop.is_set():
            try:
                await _send_slowly(port, deadlines, key % 2 == 0, cuts, opened, key)
            except OSError as error:
                cuts.unexpected.append(type(error).__name__)
                await asyncio.sleep(0.1)

    await asyncio.gather(*(one(key) for key in range(count)))


# -- slow readers (one thread, one poll) ----------------------------------------------


class Readers:
    """``count`` connections that ask for a large list and never read it, each
    opened again once the server has reset it."""

    def __init__(self, port: int, count: int, send_timeout: float, path: str) -> None:
        self.port = port
        self.count = count
        self.send_timeout = send_timeout
        self.request = f"GET {path} HTTP/1.1\r\nHost: shoal\r\n\r\n".encode()
        self.cuts = Cuts()
        self.started: dict[int, float] = {}  # fd -> when its answer started
        self.opened: dict[int, float] = {}  # fd -> when it connected
        self.cut_at: list[float] = []  # when each reader was cut off
        self.sockets: dict[int, socket.socket] = {}
        self.stop = threading.Event()
        self.poller = select.poll()

    @property
    def held(self) -> int:
        """Readers whose answer has started and waits for them."""
        return len(self.started)

    def _open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", self.port))
        sock.sendall(self.request)
        self.sockets[sock.fileno()] = sock
        self.opened[sock.fileno()] = time.monotonic()
        self.poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)

    def _closed(self, fd: int) -> None:
        sock = self.sockets.pop(fd)
        self.poller.unregister(fd)
        started = self.started.pop(fd, None)
        opened = self.opened.pop(fd)
        if started is None:
            self.cuts.unexpected.append("closed before its answer")
        else:
            self.cut_at.append(time.monotonic())
            self.cuts.add(opened, time.monotonic() - started - self.send_timeout)
        sock.close()

    def run(self) -> None:
        for _ in range(self.count):
            self._open()
        while self.sockets:
            for fd, events in self.poller.poll(100):
                if events & (select.POLLERR | select.POLLHUP):
                    self._closed(fd)
                    if not self.stop.is_set():
                        self._open()
                elif fd not in self.started:
                    status = self.sockets[fd].recv(12, socket.MSG_PEEK)  # read, not taken
                    if len(status) < 12:
                        continue
                    if status != b"HTTP/1.1 200":
                        # Refused (a 503 of the admission queue while the crowd
                        # arrives): not a reader held, so try again.
                        self.cuts.unexpected.append(status.decode(errors="replace"))
                        self.poller.unregister(fd)
                        self.opened.pop(fd)
                        self.sockets.pop(fd).close()
                        if not self.stop.is_set():
                            self._open()
                        continue
                    # Its answer has started: from now on only its end matters.
                    self.started[fd] = time.monotonic()
                    self.poller.modify(fd, select.POLLERR | select.POLLHUP)


# -- the run -------------------------------------------------------------------------


def _config(workdir: Path) -> Path:
    config = yaml.safe_load(servers.CONFIG.read_text())
    return servers.derived_config(
        workdir, "slow-clients", resources={**config["resources"], "blobs": BLOBS}
    )


def _wrk(url: str, ids_file: Path, seconds: float, connections: int) -> WrkResult:
    command = wrk_command(
        url,
        duration=seconds,
        connections=connections,
        threads=2,
        script="get.lua",
        script_args=(str(ids_file), "/items/", "2"),
    )
    return run_wrk(command)


def _describe(name: str, result: WrkResult, cpu: dict[str, float]) -> str:
    return (
        f"{name}: {result.requests_per_s:,.0f} requests/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, errors {result.errors} of {result.requests}; CPU "
        f"(% of a core): worker {cpu['worker']:.0f}, slow clients {cpu['clients']:.0f}, "
        f"whole machine {cpu['machine']:.0f}"
    )


@contextlib.contextmanager
def _cpu(worker: int) -> Iterator[dict[str, float]]:
    """The CPU the worker, this process (the slow clients) and the machine used
    in the block, in % of one core."""
    used: dict[str, float] = {}
    mine = os.getpid()
    start = (cpu_seconds([worker]), cpu_seconds([mine]), machine_busy_seconds())
    began = time.monotonic()
    yield used
    elapsed = time.monotonic() - began
    end = (cpu_seconds([worker]), cpu_seconds([mine]), machine_busy_seconds())
    for name, before, after in zip(("worker", "clients", "machine"), start, end, strict=True):
        used[name] = 100 * (after - before) / elapsed


def run(senders: int, readers: int, seconds: float, connections: int) -> dict[str, Any]:
    deadlines = SlowClientSettings()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shoal-slow-") as name, Stack(Path(name)) as stack:
        workdir = Path(name)
        shoal: Service = servers.shoal(
            workdir, 1, mongodb_uri=stack.mongodb_uri, database=stack.database,
            redis_url=stack.redis_url, config=_config(workdir),
        )  # fmt: skip
        with shoal:
            dataset = Dataset(stack.mongodb_uri, stack.database)
            try:
                post_documents(shoal.url, make_documents(2000))
                ids = [(d["_id"], d["_etag"]) for d in dataset.take_snapshot()]
            finally:
                dataset.close()
            ids_file = write_docs_file(workdir / "ids.txt", ids)
            blob = [{"text": "b" * BLOB_BYTES}] * 4
            for _ in range(0, BLOB_COUNT, 4):
                post_documents(shoal.url, blob, resource="blobs")
            [worker] = shoal.workers()
            port = shoal.port

            figures["rss_idle_mb"] = rss_mb(worker)
            with _cpu(worker) as alone:
                baseline = _wrk(shoal.url, ids_file, seconds, connections)
            print(_describe("item GET, alone", baseline, alone), flush=True)

            stop = threading.Event()
            sender_cuts = Cuts()
            opened: set[int] = set()
            crowd = Readers(port, readers, deadlines.send_timeout, "/blobs?max_results=50")
            crowd.stop = stop
            loop = asyncio.new_event_loop()
            sending = threading.Thread(
                target=loop.run_until_complete,
                args=(_senders(port, senders, deadlines, sender_cuts, opened, stop),),
                daemon=True,
            )
            reading = threading.Thread(target=crowd.run, daemon=True)
            with sampling_rss(worker, 0.25) as samples:
                began = time.monotonic()
                sending.start()
                reading.start()
                while crowd.held < readers or len(opened) < senders:
                    if time.monotonic() - began > 120:
                        raise RuntimeError(
                            f"only {crowd.held} readers and {len(opened)} senders open after 120 s"
                        )
                    time.sleep(0.1)
                ramp = time.monotonic() - began
                print(
                    f"{senders} slow senders and {readers} slow readers open after {ramp:.1f} s "
                    f"(worker RSS {rss_mb(worker):.0f} MB)",
                    flush=True,
                )
                window = time.monotonic()
                with _cpu(worker) as crowded:
                    attacked = _wrk(shoal.url, ids_file, seconds, connections)
                print(_describe("item GET, with the slow clients", attacked, crowded), flush=True)
                churn = sum(1 for at in list(crowd.cut_at) if at >= window)
                print(
                    f"  meanwhile {churn} readers were cut off and opened again "
                    "(each again a list answer to make)",
                    flush=True,
                )
                stop.set()
                sending.join(deadlines.body_timeout + 30)
                reading.join(deadlines.send_timeout + 60)
                held = max(samples, default=0.0)
            left = len(opened) + len(crowd.sockets)
            print(f"slow connections never cut off: {left}", flush=True)
            time.sleep(2)
            figures["rss_after_mb"] = rss_mb(worker)
            loop.close()
            steady = began + ramp  # opened once the crowd was complete
            for kind, cuts in (("senders", sender_cuts), ("readers", crowd.cuts)):
                print(f"slow {kind}, all: {cuts.summary()}", flush=True)
                print(f"slow {kind}, opened after the ramp: {cuts.summary(steady)}", flush=True)
            print(
                f"worker RSS: {figures['rss_idle_mb']:.0f} MB idle, {held:.0f} MB at most "
                f"while the slow clients were held, {figures['rss_after_mb']:.0f} MB after",
                flush=True,
            )
            figures.update(
                never_cut=left,
                baseline=vars(baseline),
                baseline_cpu=alone,
                attacked=vars(attacked),
                attacked_cpu=crowded,
                ramp_seconds=ramp,
                readers_cut_while_measured=churn,
                rss_held_peak_mb=held,
                senders=vars(sender_cuts),
                readers=vars(crowd.cuts),
            )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=200, help="slow senders held open")
    parser.add_argument("--readers", type=int, default=200, help="slow readers held open")
    parser.add_argument("--seconds", type=float, default=15.0, help="each wrk run's length")
    parser.add_argument("--connections", type=int, default=8, help="wrk's connections")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = run(args.senders, args.readers, args.seconds, args.connections)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
