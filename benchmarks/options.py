"""The run's options: scenario durations, connections, worker counts, what to skip.

``parse_options`` reads them from the command line of ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from .results import ENGINES, PHASES

#: What ``--skip`` and ``--only`` name: the main phases (with the database on
#: loopback, and at a distance), then the phases with tables of their own.
ALL_PHASES = ("loopback", "distance", *PHASES)


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


@dataclass
class Options:
    """What a run measures and for how long.

    The defaults keep the whole of ``scripts/bench`` to about 15 minutes on 2
    cores: about 70 scenarios of ``warmup`` + ``duration`` seconds (``side_duration``
    in the phases no target reads) and about a second of settling each, some 25
    server starts, the profiles, the seeds (the keyset
    phase's 50,000 documents take 10 to 15 s on the stand-in, under 10 on
    DocumentDB) and at most ``quiet_budget`` seconds of waiting for a busy
    machine. ``run`` prints each phase's time; ``--skip`` and ``--only`` leave
    phases out.
    """

    duration: float = 5.0
    #: Seconds of measurement in the phases no target reads (the other engines'
    #: headline, keyset pagination, the database at a distance other than the
    #: targets' 5 ms): figures to compare, not to hold a goal to.
    side_duration: float = 3.0
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
    quiet_budget: float = 30.0
    busy_percent: float = 25.0
    profile: bool = True
    profile_duration: float = 5.0
    eve: bool = True
    #: The hand-written peer on Starlette and Quart (``benchmarks/apps/peer.py``).
    peers: bool = True
    write_docs: bool = True
    #: Round trips (ms) the delay proxy adds between the servers and the database,
    #: one phase each; the connections wrk opens in those phases.
    delays: list[float] = field(default_factory=lambda: [1.0, 5.0, 20.0])
    distance_connections: int = 64
    #: Shoal and Eve's gevent workers per core in those phases (Eve's sync workers:
    #: 2 x cores + 1, gunicorn's advice).
    cores: int = field(default_factory=available_cores)
    #: The engine the run starts and runs every scenario against (``results.ENGINES``)...
    engine: str = "standin"
    #: ...unless this names a MongoDB-compatible server of someone else's.
    mongodb_uri: str | None = None
    #: The engines the "engines" phase starts, one after the other, for the headline
    #: scenarios (Shoal and Eve on one worker, the driver's ceiling); the run's own
    #: engine is left out.
    other_engines: list[str] = field(default_factory=lambda: ["ferretdb", "documentdb"])
    #: The phases with tables of their own that run (``results.PHASES``).
    phases: list[str] = field(default_factory=lambda: list(PHASES))
    #: Change streams: SSE subscribers held on one worker while a writer POSTs for
    #: ``duration`` seconds; then up to ``stream_drain`` seconds for the last events.
    subscribers: int = 500
    stream_drain: float = 10.0
    #: Keyset pagination: the collection's documents, the deep page (the last one
    #: by default), the page size and wrk's connections.
    keyset_documents: int = 50_000
    keyset_page: int = 2000
    keyset_max_results: int = 25
    keyset_connections: int = 4
    #: The engines the keyset phase also starts, one after the other, for the same
    #: pages (the run's own engine is left out): DocumentDB finds a cursor's range
    #: on ``_id`` with an index, which the stand-in cannot.
    keyset_engines: list[str] = field(default_factory=lambda: ["documentdb"])
    #: The load balancer's cost: this many instances of one worker behind nginx.
    balancer_instances: int = 2
    #: The worker tier's staleness: writes through one of those instances, each
    #: read back through another (and as many INCRs for Redis's push alone).
    staleness_rounds: int = 200
    #: Admission control: ``max_in_flight`` values measured at ``many_connections``
    #: with one worker, then admission off.
    admission_limits: list[int] = field(default_factory=lambda: [16, 64, 256])


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
        "--engine",
        choices=ENGINES,
        default=defaults.engine,
        help="the engine the run starts for every scenario: the stand-in, FerretDB or "
        "DocumentDB (built by scripts/ferretdb or scripts/documentdb the first time) "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--other-engines",
        nargs="*",
        choices=ENGINES,
        default=defaults.other_engines,
        help="engines the engines phase measures the headline scenarios on "
        "(default: %(default)s; the run's own engine is left out)",
    )
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("SHOAL_BENCH_MONGODB_URI") or None,
        help="run against this MongoDB-compatible server instead of --engine, in a "
        "database of the run's own, dropped at the end (default: $SHOAL_BENCH_MONGODB_URI)",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        choices=ALL_PHASES,
        default=[],
        help="phases not to run (loopback: the same as --workers with none; distance: "
        "--delays with none)",
    )
    parser.add_argument("--only", nargs="*", choices=ALL_PHASES, help="run only these phases")
    parser.add_argument(
        "--subscribers",
        type=int,
        default=defaults.subscribers,
        help="SSE subscribers on one worker in the change-stream phase",
    )
    parser.add_argument(
        "--keyset-documents",
        type=int,
        default=defaults.keyset_documents,
        help="documents in the keyset-pagination phase's collection",
    )
    parser.add_argument(
        "--keyset-page",
        type=int,
        default=defaults.keyset_page,
        help="the deep page of the keyset-pagination phase (pages of 25)",
    )
    parser.add_argument(
        "--keyset-engines",
        nargs="*",
        choices=ENGINES,
        default=defaults.keyset_engines,
        help="engines the keyset phase measures the same pages on too "
        "(default: %(default)s; the run's own engine is left out)",
    )
    parser.add_argument(
        "--admission-limits",
        type=int,
        nargs="*",
        default=defaults.admission_limits,
        help="admission.max_in_flight values measured at --many-connections (and off)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--no-eve", action="store_true", help="skip the Eve baseline")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the hand-written Starlette and Quart apps"
    )
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
        engine=args.engine,
        other_engines=args.other_engines,
        mongodb_uri=args.mongodb_uri,
        profile=not args.no_profile,
        eve=not args.no_eve,
        peers=not args.no_peers,
        write_docs=not args.no_docs,
        subscribers=args.subscribers,
        keyset_documents=args.keyset_documents,
        keyset_page=args.keyset_page,
        keyset_engines=args.keyset_engines,
        admission_limits=args.admission_limits,
    )
    if args.quick:
        options.duration, options.warmup, options.workers = 2.0, 0.0, options.workers[:1]
        options.side_duration = 2.0
        options.profile, options.patch_pool = False, 2000
        options.delays = options.delays[-1:]
        options.keyset_documents, options.keyset_page = 5000, 200
        limits = options.admission_limits
        options.admission_limits = [64] if 64 in limits else limits[:1]
    chosen = set(args.only if args.only is not None else ALL_PHASES) - set(args.skip)
    if "loopback" not in chosen:
        options.workers = []
    if "distance" not in chosen:
        options.delays = []
    options.phases = [phase for phase in PHASES if phase in chosen]
    deepest = options.keyset_documents // options.keyset_max_results
    if "keyset" in options.phases and not 1 < options.keyset_page <= deepest:
        parser.error(
            f"--keyset-page must be 2 to {deepest} (pages of {options.keyset_max_results} "
            f"in {options.keyset_documents} documents)"
        )
    return options, args.docs_only
