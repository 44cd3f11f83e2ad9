"""What an open connection costs a worker in memory, and whose it is::

    python -m benchmarks.connection_memory [--connections 1000] [--json FILE]

Starts the MongoDB stand-in and ``redis-server`` (``stack.py``), then, one after
the other, ``shoal serve --workers 1`` with ``benchmarks/shoal.yaml`` and the
bare ASGI app (``benchmarks/apps/bare.py``) under the repository's hypercorn
settings, each with one worker. For each: a warm-up of sequential requests,
the worker's RSS, then ``--connections`` connections opened at once, each
sending one keep-alive request and reading its whole answer, then held open
and idle; the worker's RSS while they are held (well within the 5 s
keep-alive), and again once they are closed.

The growth divided by the connections is a connection's cost in the worker's
memory after one request; the bare app's is what hypercorn and the event loop
keep per connection (the transport, the protocol and h11's state, the task
that serves it), and Shoal's minus it is Shoal's own (its middleware's
per-connection records, the request's objects still referenced). The kernel's
socket buffers are not in RSS. Nothing here is a test: the figures are one
run's, on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import servers
from .data import Dataset, make_documents, post_documents
from .proc import rss_mb
from .services import Service
from .stack import Stack

#: Sequential requests before the first reading (imports, caches, pools).
WARM_UP = 300


async def _one(port: int, path: str, held: list[asyncio.StreamWriter]) -> None:
    """Open a connection, send one keep-alive GET of ``path``, read the whole
    answer (its ``Content-Length``), and keep the connection in ``held``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    held.append(writer)


async def _hold(port: int, paths: Sequence[str], worker: int) -> tuple[float, float, int]:
    """Open one connection per path at once; the worker's RSS while all are
    held, the seconds opening them took, and how many were opened."""
    held: list[asyncio.StreamWriter] = []
    started = time.monotonic()
    results = await asyncio.gather(
        *(_one(port, path, held) for path in paths), return_exceptions=True
    )
    opened = time.monotonic() - started
    await asyncio.sleep(0.5)  # let the worker finish each answer's bookkeeping
    during = rss_mb(worker)
    for writer in held:
        writer.close()
    failed = [result for result in results if isinstance(result, BaseException)]
    if failed:
        print(f"  {len(failed)} connections failed, e.g. {failed[0]!r}", flush=True)
    return during, opened, len(held)


def _warm(url: str, paths: Sequence[str]) -> None:
    for path in paths[:WARM_UP]:
        with urllib.request.urlopen(url + path, timeout=30) as response:  # noqa: S310 - loopback
            response.read()


def _measure(name: str, service: Service, paths: Sequence[str]) -> dict[str, Any]:
    """``service``'s worker's RSS before, while ``paths`` connections are held
    (one request each), and after."""
    [worker] = service.workers()
    _warm(service.url, paths)
    time.sleep(1.0)
    before = rss_mb(worker)
    during, opened, held = asyncio.run(_hold(service.port, paths, worker))
    time.sleep(1.0)
    after = rss_mb(worker)
    figures = {
        "connections": held,
        "rss_before_mb": round(before, 1),
        "rss_held_mb": round(during, 1),
        "rss_after_mb": round(after, 1),
        "per_connection_kib": round((during - before) * 1024 / max(held, 1), 1),
        "opening_s": round(opened, 2),
    }
    print(
        f"  {name}: RSS {before:.1f} MB, {during:.1f} MB with {held} connections held "
        f"(opened in {opened:.1f} s), {after:.1f} MB once closed: "
        f"{figures['per_connection_kib']} KiB a connection",
        flush=True,
    )
    return figures


def run(connections: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shoal-conns-") as name, Stack(Path(name)) as stack:
        workdir = Path(name)
        shoal = servers.shoal(
            workdir, 1, mongodb_uri=stack.mongodb_uri, database=stack.database,
            redis_url=stack.redis_url,
        )  # fmt: skip
        with shoal:
            dataset = Dataset(stack.mongodb_uri, stack.database)
            try:
                post_documents(shoal.url, make_documents(1000))
                ids = [document["_id"] for document in dataset.take_snapshot()]
            finally:
                dataset.close()
            paths = [f"/items/{ids[index % len(ids)]}" for index in range(connections)]
            figures["shoal"] = _measure("Shoal, item GET", shoal, paths)
        with servers.bare(workdir, 1) as bare:
            figures["bare"] = _measure("bare ASGI app", bare, ["/"] * connections)
    own = figures["shoal"]["per_connection_kib"] - figures["bare"]["per_connection_kib"]
    figures["shoal_own_kib"] = round(own, 1)
    print(
        f"  of Shoal's {figures['shoal']['per_connection_kib']} KiB a connection, hypercorn "
        f"and the loop's (the bare app's) {figures['bare']['per_connection_kib']} KiB, "
        f"Shoal's own {own:.1f} KiB",
        flush=True,
    )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000, help="connections held open")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = run(args.connections)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
