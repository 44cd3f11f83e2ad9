"""The targets a run is judged on, each met or not met, with its figure.

- The database at 5 ms, item GET and POST: Shoal at least 3x Eve on 2 x cores + 1
  sync workers, and at least 1.5x Eve on gevent workers (requests/s).
- Per second of the app's own CPU: Shoal at least 2x Eve on the uncached item
  GET, POST and PATCH, and at least 0.8x the hand-written Starlette app on the
  item GET and POST (the database on loopback, the same worker count).
- Per second of the app's own CPU: an item GET by a signed-in caller (a bearer
  token) at least 0.9x the anonymous one; the same caller's GET on a resource
  whose rules filter and hide a field at least 0.9x that without rules.
- 1,000 connections: zero errors, p99 at most 2x p50, and throughput at least
  0.9x that at 16 connections.
- Peak RSS at most 80 MB per Shoal worker.
- Shoal's cached item GET (the coherent path: a write on any instance is seen
  at once by every instance) at least 0.6x the bare ASGI app on the same
  hypercorn settings (requests/s); with the worker-memory tier
  (``cache_tier: worker``) at least 0.9x.

Pure: tested on canned figures (tests/test_benchmarks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .results import SCENARIOS, SERVERS, Result, find, main_phases, nearby, ratio, ratio_per_cpu

DISTANCE_DELAY_MS = 5.0
DISTANCE_SCENARIOS = ("item_get", "post")
VS_EVE_SYNC_AT_DISTANCE = 3.0
VS_EVE_GEVENT_AT_DISTANCE = 1.5
PER_CPU_SCENARIOS = ("item_get", "post", "patch")
VS_EVE_PER_CPU = 2.0
PEER_SCENARIOS = ("item_get", "post")
VS_PEER_PER_CPU = 0.8
BEARER_VS_ANONYMOUS = 0.9
RULES_VS_NONE = 0.9
MANY_P99_OVER_P50 = 2.0
MANY_VS_FEW = 0.9
RSS_PER_WORKER_MB = 80.0
CACHED_VS_BARE = 0.6
CACHED_WORKER_VS_BARE = 0.9


@dataclass(frozen=True)
class Target:
    """One target: what it compares, the figure measured, the goal, and whether
    the figure meets it (None: not measured in this run)."""

    name: str
    figure: str
    goal: str
    met: bool | None
    #: The number judged against the goal (a ratio, a count, MB); None if not measured.
    value: float | None = None

    @property
    def status(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else "not met"


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def _at_least(name: str, value: float | None, goal: float, detail: str = "") -> Target:
    figure = "-" if value is None else f"{value:.2f}x" + (f" ({detail})" if detail else "")
    return Target(name, figure, f">= {goal:g}x", None if value is None else value >= goal, value)


def _rate(result: Result) -> str:
    return f"{result.ok_per_s:,.0f}/s"


def distance_targets(results: Sequence[Result]) -> list[Target]:
    """Shoal against Eve's two kinds of workers, the database 5 ms away."""
    found = []
    delay = DISTANCE_DELAY_MS
    for scenario in DISTANCE_SCENARIOS:
        shoal = find(results, "shoal", scenario, delay_ms=delay)
        for server, kind, goal in (
            ("eve", "Eve on 2 x cores + 1 sync workers", VS_EVE_SYNC_AT_DISTANCE),
            ("eve_gevent", "Eve on gevent workers", VS_EVE_GEVENT_AT_DISTANCE),
        ):
            eve = find(results, server, scenario, delay_ms=delay)
            detail = "" if shoal is None or eve is None else f"{_rate(shoal)} vs {_rate(eve)}"
            found.append(
                _at_least(
                    f"db +{delay:g} ms, {SCENARIOS[scenario]}: Shoal / {kind}",
                    ratio(shoal, eve),
                    goal,
                    detail,
                )
            )
    return found


def _per_cpu_ratio(name: str, mine: Result | None, theirs: Result | None, goal: float) -> Target:
    """``mine`` against ``theirs``, per second of the app's own CPU."""
    detail = ""
    if mine is not None and theirs is not None and mine.per_app_cpu_s and theirs.per_app_cpu_s:
        detail = f"{mine.per_app_cpu_s:,.0f} vs {theirs.per_app_cpu_s:,.0f} req/CPU-s"
    return _at_least(name, ratio_per_cpu(mine, theirs), goal, detail)


def _per_cpu(
    results: Sequence[Result], workers: int, scenario: str, other: str, goal: float
) -> Target:
    """Shoal against ``other`` in ``scenario``, per second of the app's own CPU."""
    return _per_cpu_ratio(
        f"per app CPU-second, {SCENARIOS[scenario]}: Shoal / {SERVERS[other]}, {_workers(workers)}",
        find(results, "shoal", scenario, workers),
        find(results, other, scenario, workers),
        goal,
    )


def per_cpu_targets(results: Sequence[Result], workers: int) -> list[Target]:
    """Shoal against Eve and against the hand-written Starlette app, per second of
    the app's own CPU, the database on loopback."""
    against_eve = [
        _per_cpu(results, workers, scenario, "eve", VS_EVE_PER_CPU)
        for scenario in PER_CPU_SCENARIOS
    ]
    against_peer = [
        _per_cpu(results, workers, scenario, "peer_starlette", VS_PEER_PER_CPU)
        for scenario in PEER_SCENARIOS
    ]
    return against_eve + against_peer


def bearer_target(results: Sequence[Result], workers: int) -> Target:
    """The item GET by a signed-in caller against the anonymous one, per CPU-second."""
    return _per_cpu_ratio(
        f"per app CPU-second, item GET: bearer token / anonymous, {_workers(workers)}",
        find(results, "shoal", "item_get_bearer", workers),
        find(results, "shoal", "item_get", workers),
        BEARER_VS_ANONYMOUS,
    )


def rules_target(results: Sequence[Result], workers: int) -> Target:
    """The signed-in item GET with rules that filter and mask, against the same
    caller's GET without rules, per CPU-second."""
    return _per_cpu_ratio(
        f"per app CPU-second, item GET: with rules / without, {_workers(workers)}",
        find(results, "shoal", "item_get_rules", workers),
        find(results, "shoal", "item_get_bearer", workers),
        RULES_VS_NONE,
    )


def many_connections_targets(results: Sequence[Result], workers: int) -> list[Target]:
    """At many connections: no errors, a p99 close to the p50, no loss of throughput."""
    many = find(results, "shoal", "item_get_1000c", workers)
    few = find(results, "shoal", "item_get", workers)
    name = f"{many.connections if many else 1000:,} conns, {_workers(workers)}"
    if many is None:
        errors = Target(f"{name}: errors", "-", "0", None)
    else:
        detail = ", ".join(f"{kind} {count}" for kind, count in many.error_detail.items())
        errors = Target(
            f"{name}: errors",
            f"{many.errors}" + (f" ({detail})" if detail else ""),
            "0",
            many.errors == 0,
            float(many.errors),
        )
    spread = None if many is None or many.p50_ms <= 0 else many.p99_ms / many.p50_ms
    spread_target = Target(
        f"{name}: p99 / p50",
        "-"
        if spread is None or many is None
        else f"{spread:.2f}x (p50 {many.p50_ms:,.0f} ms, p99 {many.p99_ms:,.0f} ms)",
        f"<= {MANY_P99_OVER_P50:g}x",
        None if spread is None else spread <= MANY_P99_OVER_P50,
        spread,
    )
    few_name = f"{few.connections if few else 16} conns"
    throughput = _at_least(
        f"{name}: throughput / at {few_name}",
        ratio(many, few),
        MANY_VS_FEW,
        "" if many is None or few is None else f"{_rate(many)} vs {_rate(few)}",
    )
    return [errors, spread_target, throughput]


def rss_target(results: Sequence[Result], workers: int) -> Target:
    """The largest peak RSS of any Shoal worker, in any scenario with that many."""
    peaks = [r.peak_rss_mb for r in results if r.server == "shoal" and r.workers == workers]
    peak = max(peaks, default=0.0)
    return Target(
        f"peak RSS per Shoal worker, {_workers(workers)}",
        "-" if not peak else f"{peak:.1f} MB",
        f"<= {RSS_PER_WORKER_MB:g} MB",
        None if not peak else peak <= RSS_PER_WORKER_MB,
        peak or None,
    )


def cached_targets(results: Sequence[Result], workers: int) -> list[Target]:
    """Shoal's cached item GET, the coherent path and the worker-memory tier,
    against the server alone (the bare ASGI app)."""
    bare = find(results, "bare", "bare_get", workers)
    found = []
    for scenario, name, goal in (
        ("item_get_cached", "cached item GET", CACHED_VS_BARE),
        ("item_get_cached_worker", "cached item GET, worker tier", CACHED_WORKER_VS_BARE),
    ):
        cached = find(results, "shoal", scenario, workers)
        found.append(
            _at_least(
                f"{name} / bare ASGI app, {_workers(workers)}",
                ratio(cached, bare),
                goal,
                "" if cached is None or bare is None else f"{_rate(cached)} vs {_rate(bare)}",
            )
        )
    return found


def targets(results: Sequence[Result]) -> list[Target]:
    """Every target, those of the loopback phases for each worker count Shoal ran with.
    The phases with tables of their own (``PHASES``: streams, keyset pages, the load
    balancer, admission control) are not judged here."""
    results = main_phases(results)
    loopback = nearby(results)
    counts = sorted({r.workers for r in loopback if r.server == "shoal"})
    every_count = sorted({r.workers for r in results if r.server == "shoal"})
    found = distance_targets(results)
    for workers in counts:
        found += per_cpu_targets(loopback, workers)
        found.append(bearer_target(loopback, workers))
        found.append(rules_target(loopback, workers))
    for workers in counts:
        found += many_connections_targets(loopback, workers)
    found += [rss_target(results, workers) for workers in every_count]
    for workers in counts:
        found += cached_targets(loopback, workers)
    return found
