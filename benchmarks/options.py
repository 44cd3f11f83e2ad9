"""The run's options: scenario durations, connections, worker counts, what to skip.

``parse_options`` reads them from the command line of ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


@dataclass
class Options:
    """What a run measures and for how long.

    The defaults keep the whole of ``scripts/bench`` under 12 minutes on 2 cores:
    about 45 scenarios of ``warmup`` + ``duration`` seconds and two or three of
    settling each, 14 server starts, the profiles and at most ``quiet_budget``
    seconds of waiting for a busy machine.
    """

    duration: float = 6.0
    warmup: float = 1.0
    connections: int = 16
    many_connections: int = 1000
    threads: int = 2
    workers: list[int] = field(default_factory=lambda: [1, 2])
    documents: int = 1000
    patch_pool: int = 6000
    timeout: float = 10.0
    #: Seconds to wait, before each scenario, for a busy machine to calm down
    #: (others' processes above ``busy_percent`` of one core), and for the whole run.
    quiet_wait: float = 5.0
    quiet_budget: float = 45.0
    busy_percent: float = 25.0
    profile: bool = True
    profile_duration: float = 5.0
    eve: bool = True
    write_docs: bool = True
    #: Round trips (ms) the delay proxy adds between the servers and the database,
    #: one phase each; the connections wrk opens in those phases.
    delays: list[float] = field(default_factory=lambda: [1.0, 5.0])
    distance_connections: int = 64
    #: Shoal and Eve's gevent workers per core in those phases (Eve's sync workers:
    #: 2 x cores + 1, gunicorn's advice).
    cores: int = field(default_factory=available_cores)
    #: A MongoDB-compatible server to run every scenario against instead of the
    #: stand-in (None: start the stand-in).
    mongodb_uri: str | None = None


def parse_options(argv: Sequence[str] | None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark Shoal against the Quart minimal app, the driver and Eve.",
    )
    defaults = Options()
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        help="seconds of measurement per scenario (default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=defaults.warmup,
        help="seconds of unmeasured load before each scenario",
    )
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        help="wrk's request timeout in seconds (a slower answer is an error)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=defaults.quiet_wait,
        help="seconds to wait before a scenario for a busy machine to calm down",
    )
    parser.add_argument("--many-connections", type=int, default=defaults.many_connections)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=defaults.workers,
        help="worker counts of the phases with the database on loopback (none: skip them)",
    )
    parser.add_argument("--documents", type=int, default=defaults.documents)
    parser.add_argument(
        "--patch-pool",
        type=int,
        default=defaults.patch_pool,
        help="fresh documents for the PATCH scenario (Eve can patch each once)",
    )
    parser.add_argument(
        "--delays",
        type=float,
        nargs="*",
        default=defaults.delays,
        help="added database round trips in ms, a phase each (none: skip those phases)",
    )
    parser.add_argument(
        "--distance-connections",
        type=int,
        default=defaults.distance_connections,
        help="wrk connections with the database at a distance",
    )
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("SHOAL_BENCH_MONGODB_URI") or None,
        help="run against this MongoDB-compatible server instead of the stand-in, in a "
        "database of the run's own, dropped at the end (default: $SHOAL_BENCH_MONGODB_URI)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--no-eve", action="store_true", help="skip the Eve baseline")
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="do not rewrite docs/benchmarks.md and docs/benchmarks.png",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 2 s per scenario, no warm-up, 1 worker, one delay, no profile",
    )
    parser.add_argument(
        "--docs-only",
        action="store_true",
        help="re-render the docs from benchmarks/results/latest.json",
    )
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        timeout=args.timeout,
        quiet_wait=args.quiet_wait,
        many_connections=args.many_connections,
        workers=args.workers,
        documents=args.documents,
        patch_pool=args.patch_pool,
        delays=args.delays,
        distance_connections=args.distance_connections,
        mongodb_uri=args.mongodb_uri,
        profile=not args.no_profile,
        eve=not args.no_eve,
        write_docs=not args.no_docs,
    )
    if args.quick:
        options.duration, options.warmup, options.workers = 2.0, 0.0, options.workers[:1]
        options.profile, options.patch_pool = False, 2000
        options.delays = options.delays[-1:]
    return options, args.docs_only
