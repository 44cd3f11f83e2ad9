"""How long the cyclic garbage collector stops a worker's event loop, with and
without the start-up objects frozen (``gc.freeze()``, which ``shoal serve``'s
workers call once they serve)::

    python -m benchmarks.gc_pauses [--requests 200000]

Each mode runs in a fresh process that builds the app as a worker does
(``create_app`` with ``benchmarks/shoal.yaml``: Quart, the config, the schemas,
the route table; no database is reached), then makes ``--requests`` rounds of
short-lived garbage shaped like a request's (dicts and lists holding each
other, about 200 objects a round, one reference cycle among them),
``IN_FLIGHT`` of them alive at once, the way a worker's requests leave it for
the collector. It records every collection through ``gc.callbacks`` and
prints, for the full (generation 2) collections: how many
ran, and their median and longest pause; and how many objects the collector
tracked after start-up. The garbage is synthetic: the figures say what a full
collection costs over the app's own objects, not what a given request mix does.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from .servers import CONFIG

MODES = ("as started", "frozen")
#: Requests alive at once: what a collection finds still in use survives into
#: the older generations and dies there, as a busy worker's requests do.
IN_FLIGHT = 64


def _garbage(round_number: int) -> list[dict[str, Any]]:
    """One request's worth of short-lived objects, one cycle among them."""
    made = []
    for index in range(20):
        document: dict[str, Any] = {"_id": index, "title": f"t{round_number}", "tags": ["a", "b"]}
        envelope: dict[str, Any] = {"_items": [document], "_meta": {"page": 1}}
        if index == 0:  # one cycle a request, as a framework's objects make
            document["_links"] = {"parent": envelope}
        made.append(envelope)
    return made


def measure(mode: str, requests: int) -> dict[str, Any]:
    """Build the app, then churn; ``mode`` says whether start-up is frozen."""
    from shoal.app import create_app
    from shoal.config import load_settings

    create_app(load_settings(CONFIG, env={"SHOAL_SECRET_KEY": "gc-pauses-" + "x" * 32}))
    gc.collect()
    if mode == "frozen":
        gc.freeze()
    tracked = len(gc.get_objects())
    pauses: list[float] = []
    started: list[float] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses.append((time.perf_counter() - started.pop()) * 1000)

    gc.callbacks.append(record)
    began = time.perf_counter()
    in_flight: collections.deque[list[dict[str, Any]]] = collections.deque(maxlen=IN_FLIGHT)
    for round_number in range(requests):
        in_flight.append(_garbage(round_number))
    seconds = time.perf_counter() - began
    gc.callbacks.remove(record)
    return {
        "mode": mode,
        "tracked_objects": tracked,
        "full_collections": len(pauses),
        "median_ms": statistics.median(pauses) if pauses else 0.0,
        "longest_ms": max(pauses, default=0.0),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000, help="rounds of garbage")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one child's run
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(measure(args.mode, args.requests)))
        return
    for mode in MODES:
        command = [sys.executable, "-m", "benchmarks.gc_pauses", "--mode", mode]
        child = subprocess.run(
            [*command, "--requests", str(args.requests)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"{mode:>10}: {figures['tracked_objects']:,} objects tracked after start-up; "
            f"{figures['full_collections']} full collections in {args.requests:,} rounds, "
            f"pause median {figures['median_ms']:.2f} ms, longest {figures['longest_ms']:.2f} ms "
            f"({figures['seconds']:.1f} s in all)"
        )


if __name__ == "__main__":
    main()
