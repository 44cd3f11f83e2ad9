"""The driver's ceiling: concurrent ``find_one`` by ``_id`` from one process.

``concurrency`` tasks on one ``AsyncMongoClient`` (uvloop, as Shoal's workers
run) each look documents up by ``_id`` in a loop for ``duration`` seconds, the
same lookup an uncached item GET makes. No HTTP, no encoding: what the database
and the driver allow one process. Prints one JSON object::

    python -m benchmarks.driver --uri URI --database bench --ids-file ids.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from .proc import peak_rss_mb, rss_mb


def read_ids(path: Path) -> list[ObjectId]:
    return [ObjectId(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def measure(
    uri: str,
    database: str,
    collection: str,
    ids: Sequence[ObjectId],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    target = client[database][collection]
    latencies: list[float] = []
    errors = 0
    recording = False

    async def worker(offset: int, stop_at: float) -> None:
        nonlocal errors
        position = offset
        while time.perf_counter() < stop_at:
            item = ids[position % len(ids)]
            position += 1
            started = time.perf_counter()
            try:
                found = await target.find_one({"_id": item})
            except Exception:
                found = None
            elapsed = time.perf_counter() - started
            if recording:
                if found is None:
                    errors += 1
                latencies.append(elapsed)

    try:
        step = max(1, len(ids) // concurrency)
        if warmup > 0:
            stop_at = time.perf_counter() + warmup
            await asyncio.gather(*(worker(n * step, stop_at) for n in range(concurrency)))
        recording = True
        started = time.perf_counter()
        stop_at = started + duration
        await asyncio.gather(*(worker(n * step, stop_at) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
        "errors": errors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--collection", default="items")
    parser.add_argument("--ids-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    import uvloop

    result = uvloop.run(
        measure(
            args.uri,
            args.database,
            args.collection,
            read_ids(args.ids_file),
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
        )
    )
    result["peak_rss_mb"] = peak_rss_mb(os.getpid())
    result["rss_mb"] = rss_mb(os.getpid())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
