"""A run's results as text: the tables printed at the end of a run and written to
docs/benchmarks.md, and the notes about the run.

Pure: it takes ``Result`` and ``Target`` values and returns text, so it is tested
on canned figures (tests/test_benchmarks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shoal.config import AdmissionSettings

from .results import (
    CPU_ROLES,
    DISTANCE_SCENARIOS,
    DISTANCE_SERVERS,
    ENGINES,
    PHASES,
    SCENARIOS,
    SERVERS,
    Result,
    distant,
    find,
    in_phase,
    nearby,
    ratio,
    ratio_per_cpu,
)
from .targets import Target, targets

#: The scenarios compared on each engine.
ENGINE_SCENARIOS = ("item_get", "list_get", "post", "patch")

#: Shoal's default ``admission.max_in_flight``, marked in the admission table.
DEFAULT_MAX_IN_FLIGHT = AdmissionSettings().max_in_flight

# --- text -------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _rss(result: Result) -> str:
    if not result.worker_rss_mb:
        return "-"
    return f"{result.current_rss_mb:.0f}/{result.peak_rss_mb:.0f}"


def _cpu(result: Result) -> str:
    cpu = result.cpu_percent
    return "/".join(f"{cpu.get(role, 0):.0f}" for role in CPU_ROLES) if cpu else "-"


def _db_cpu(result: Result | None) -> str:
    """The database's share of one core during ``result``."""
    if result is None or "db" not in result.cpu_percent:
        return "-"
    return f"{result.cpu_percent['db']:.0f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def spread(result: Result | None) -> float | None:
    """The p99 over the p50 of a result: how far the slowest requests trail the typical."""
    if result is None or result.p50_ms <= 0:
        return None
    return result.p99_ms / result.p50_ms


def results_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for result in results:
        rows.append(
            [
                str(result.workers) if result.server != "driver" else "-",
                SERVERS.get(result.server, result.server),
                SCENARIOS.get(result.scenario, result.scenario),
                str(result.connections),
                _number(result.requests_per_s),
                _number(result.per_app_cpu_s, 0),
                _number(result.p50_ms, 2),
                _number(result.p99_ms, 2),
                str(result.errors),
                _rss(result),
                _cpu(result),
            ]
        )
    return rows


RESULT_HEADER = [
    "workers",
    "server",
    "scenario",
    "conns",
    "req/s",
    "req/CPU-s",
    "p50 ms",
    "p99 ms",
    "errors",
    "RSS MB now/peak",
    "CPU% app/db/wrk/other",
]


def target_rows(found: Sequence[Target]) -> list[list[str]]:
    return [[target.name, target.figure, target.goal, target.status] for target in found]


TARGET_HEADER = ["target", "figure", "goal", "status"]


def distance_rows(results: Sequence[Result]) -> list[list[str]]:
    """The results with the database at a distance, its added round trip first."""
    found = distant(results)
    return [[f"{r.delay_ms:g}", *row] for r, row in zip(found, results_rows(found), strict=True)]


DISTANCE_HEADER = ["db +ms", *RESULT_HEADER]


def distance_ratio_rows(results: Sequence[Result]) -> list[list[str]]:
    """Per added delay and scenario: each server's 2xx/3xx requests/s, and Shoal's ratios."""
    rows = []
    for delay in sorted({r.delay_ms for r in distant(results)}):
        for scenario in DISTANCE_SCENARIOS:
            shoal, eve, gevent = (
                find(results, server, scenario, delay_ms=delay) for server in DISTANCE_SERVERS
            )
            if shoal is None and eve is None and gevent is None:
                continue
            rows.append(
                [
                    f"{delay:g}",
                    SCENARIOS[scenario],
                    *(_number(r.ok_per_s if r else None) for r in (shoal, eve, gevent)),
                    *(
                        "-" if value is None else f"{value:.2f}x"
                        for value in (ratio(shoal, eve), ratio(shoal, gevent))
                    ),
                ]
            )
    return rows


DISTANCE_RATIO_HEADER = [
    "db +ms",
    "scenario",
    "Shoal ok/s",
    "Eve ok/s",
    "Eve gevent ok/s",
    "Shoal / Eve",
    "Shoal / Eve gevent",
]


# --- the phases with tables of their own -----------------------------------------------


def streams_rows(results: Sequence[Result]) -> list[list[str]]:
    """Change streams: the subscribers held, the writes, the deliveries and whether
    every subscriber received every event, in order."""
    rows = []
    for result in in_phase(results, "streams"):
        extra = result.extra
        complete = extra.get("complete", 0)
        every = (
            "yes"
            if extra.get("all_received")
            else f"no: {complete} of {result.connections} subscribers, "
            f"{extra.get('missed', 0):,} missed"
        )
        rows.append(
            [
                str(result.workers),
                f"{result.connections:,}",
                f"{extra.get('held', 0):,}",
                f"{extra.get('events_written', 0):,}",
                _number(extra.get("write_rate")),
                _number(result.requests_per_s),
                _number(result.p50_ms, 2),
                _number(result.p99_ms, 2),
                every,
                _rss(result),
                _cpu(result),
            ]
        )
    return rows


STREAMS_HEADER = [
    "workers",
    "subscribers",
    "held to the end",
    "events written",
    "writes/s",
    "deliveries/s",
    "latency p50 ms",
    "latency p99 ms",
    "every event to every subscriber, in order",
    "worker RSS MB now/peak",
    "CPU% app/db/client/other",
]


def _keyset_engine(result: Result, own: str) -> str:
    """The engine a keyset result was measured on: the run's own, unless named."""
    key = result.extra.get("engine")
    return own if key is None else ENGINES.get(str(key), str(key))


def keyset_rows(results: Sequence[Result], own: str) -> list[list[str]]:
    """Keyset pagination: each page read by number and by cursor, on each engine."""
    return [
        [
            _keyset_engine(result, own),
            f"{result.extra.get('page', 0):,}",
            str(result.extra.get("by", "")),
            f"{result.extra.get('documents', 0):,}",
            str(result.connections),
            _number(result.requests_per_s),
            _number(result.p50_ms, 2),
            _number(result.p99_ms, 2),
            str(result.errors),
            _cpu(result),
        ]
        for result in in_phase(results, "keyset")
    ]


KEYSET_HEADER = [
    "engine",
    "page",
    "by",
    "documents",
    "conns",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "CPU% app/db/wrk/other",
]


def keyset_lines(results: Sequence[Result], own: str) -> list[str]:
    """On each engine, how each deep page compares with the first page read the
    same way, what the database alone takes, and how long seeding took."""
    engines: dict[str, list[Result]] = {}
    for result in in_phase(results, "keyset"):
        engines.setdefault(_keyset_engine(result, own), []).append(result)
    several = len(engines) > 1
    lines = []
    for label, found in engines.items():
        prefix = f"{label}: " if several else ""
        for by, key in (("page", "skip"), ("cursor", "cursor")):
            first = find(found, "shoal", f"page_first_{key}", phase="keyset")
            deep = find(found, "shoal", f"page_deep_{key}", phase="keyset")
            if first is not None and deep is not None:
                lines.append(
                    f"{prefix}by {by}: page {deep.extra.get('page', 0):,} at "
                    f"{_times(ratio(deep, first))} the requests/s of page 1 "
                    f"(p50 {deep.p50_ms:,.2f} ms vs {first.p50_ms:,.2f} ms)"
                )
        alone = next((r for r in found if r.extra.get("database_ms")), None)
        if alone is not None:
            ms, page = alone.extra["database_ms"], max(r.extra.get("page", 0) for r in found)
            lines.append(
                f"{prefix}the database alone (PyMongo, median of 3 queries): page 1 "
                f"{ms['first']:,.2f} ms, page {page:,} by skip {ms['skip']:,.2f} ms, by cursor "
                f"(the server's filter on _id) {ms['cursor']:,.2f} ms"
            )
        seed = next((r.extra.get("seed") for r in found if r.extra.get("seed")), None)
        if seed:
            lines.append(f"{prefix}{seed}")
    return lines


def balancer_rows(results: Sequence[Result]) -> list[list[str]]:
    """The same item GET straight to one instance and through nginx to several."""
    return [
        [
            "nginx" if result.scenario == "item_get_nginx" else "straight",
            f"{result.extra.get('instances', result.workers)} x 1",
            str(result.connections),
            _number(result.requests_per_s),
            _number(result.per_app_cpu_s, 0),
            _number(result.p50_ms, 2),
            _number(result.p99_ms, 2),
            str(result.errors),
            _rss(result),
            _cpu(result),
        ]
        for result in in_phase(results, "balancer")
        if result.scenario in ("item_get_direct", "item_get_nginx")
    ]


BALANCER_HEADER = [
    "to",
    "instances x workers",
    "conns",
    "req/s",
    "req/CPU-s",
    "p50 ms",
    "p99 ms",
    "errors",
    "RSS MB now/peak",
    "CPU% app/db/wrk/other",
]


def balancer_lines(results: Sequence[Result]) -> list[str]:
    """Through nginx against straight: requests/s and per CPU-second (nginx's CPU
    counted as the app's)."""
    found = in_phase(results, "balancer")
    direct = find(found, "shoal", "item_get_direct", phase="balancer")
    nginx = find(found, "shoal", "item_get_nginx", phase="balancer")
    lines = []
    if direct is not None and nginx is not None:
        instances = nginx.extra.get("instances", nginx.workers)
        lines.append(
            f"through nginx to {instances} instances / straight to one: "
            f"{_times(ratio(nginx, direct))} the requests/s, "
            f"{_times(ratio_per_cpu(nginx, direct))} the requests per CPU-second"
        )
    http = find(found, "shoal", "tier_staleness_http", phase="balancer")
    push = find(found, "shoal", "tier_staleness_push", phase="balancer")
    if http is not None:
        lines.append(
            f"worker tier (items_local), {http.requests} writes through one instance, each "
            "read back through another that had it in memory: the first fresh answer "
            f"{http.p50_ms:.2f} ms (p50) / {http.p99_ms:.2f} ms (p99) after the write's "
            f"answer, that read's own round trip included; {http.extra.get('stale', 0)} "
            f"stale answers, {http.errors} writes never seen within 2 s"
        )
    if push is not None:
        lines.append(
            f"Redis's invalidation push alone, {push.requests} INCRs: "
            f"{push.p50_ms:.2f} ms (p50) / {push.p99_ms:.2f} ms (p99) from sending the INCR "
            f"to the push reaching the watch; {push.errors} never arrived"
        )
    return lines


def _engines(results: Sequence[Result], own: str) -> list[tuple[str, list[Result]]]:
    """Each engine's label and results: the run's own (its main phases, one
    worker, on loopback), then each engine of the "engines" phase."""
    engines = [
        (own, [r for r in nearby(results) if r.workers == 1 or r.server == "driver"]),
    ]
    others: dict[str, list[Result]] = {}
    for result in in_phase(results, "engines"):
        key = str(result.extra.get("engine", "?"))
        others.setdefault(ENGINES.get(key, key), []).append(result)
    return [*engines, *others.items()] if others else []


def engines_rows(results: Sequence[Result], own: str) -> list[list[str]]:
    """The headline scenarios on each engine: Shoal and Eve on one worker, their
    ratio per CPU-second, and the driver's ceiling on the same engine."""
    rows = []
    for label, found in _engines(results, own):
        phase = found[0].phase if found else ""
        for scenario in ENGINE_SCENARIOS:
            shoal = find(found, "shoal", scenario, 1, phase=phase)
            eve = find(found, "eve", scenario, 1, phase=phase)
            if shoal is None and eve is None:
                continue
            rows.append(
                [
                    label,
                    SCENARIOS[scenario],
                    *(_number(r.ok_per_s if r else None) for r in (shoal, eve)),
                    *(_number(r.per_app_cpu_s if r else None, 0) for r in (shoal, eve)),
                    _times(ratio_per_cpu(shoal, eve)),
                    _number(shoal.p99_ms if shoal else None, 2),
                    _db_cpu(shoal),
                ]
            )
        driver = find(found, "driver", "find_one", phase=phase)
        if driver is not None:
            rows.append(
                [
                    label,
                    "driver's ceiling: find_one by _id",
                    _number(driver.ok_per_s),
                    "-",
                    _number(driver.per_app_cpu_s, 0),
                    "-",
                    "-",
                    _number(driver.p99_ms, 2),
                    _db_cpu(driver),
                ]
            )
    return rows


ENGINES_HEADER = [
    "engine",
    "scenario",
    "Shoal ok/s",
    "Eve ok/s",
    "Shoal req/CPU-s",
    "Eve req/CPU-s",
    "Shoal / Eve per CPU-s",
    "Shoal p99 ms",
    "db CPU%",
]


def engines_lines(results: Sequence[Result], own: str) -> list[str]:
    """Per engine: Shoal's uncached item GET as a share of the driver's ceiling."""
    lines = []
    for label, found in _engines(results, own):
        phase = found[0].phase if found else ""
        shoal = find(found, "shoal", "item_get", 1, phase=phase)
        driver = find(found, "driver", "find_one", phase=phase)
        share = ratio(shoal, driver)
        if share is not None:
            lines.append(
                f"{label}: Shoal's item GET on one worker answers {share:.0%} of the "
                "requests/s the driver's ceiling reaches from one process "
                f"({_times(ratio_per_cpu(shoal, driver))} its finds per CPU-second)"
            )
    return lines


def admission_rows(results: Sequence[Result]) -> list[list[str]]:
    """Item GET at many connections for each ``admission.max_in_flight``, and off."""
    rows = []
    for result in in_phase(results, "admission"):
        limit = result.extra.get("max_in_flight")
        default = limit == DEFAULT_MAX_IN_FLIGHT
        label = "off" if limit is None else f"{limit}" + (" (default)" if default else "")
        busy = result.error_detail.get("non_2xx_3xx", 0)
        rows.append(
            [
                label,
                f"{result.connections:,}",
                _number(result.ok_per_s),
                _number(result.p50_ms, 2),
                _number(result.p99_ms, 2),
                _times(spread(result)),
                str(result.errors),
                str(busy),
                _rss(result),
                _cpu(result),
            ]
        )
    return rows


ADMISSION_HEADER = [
    "max_in_flight",
    "conns",
    "ok/s",
    "p50 ms",
    "p99 ms",
    "p99 / p50",
    "errors",
    "of them 503s",
    "RSS MB now/peak",
    "CPU% app/db/wrk/other",
]


def loops_rows(results: Sequence[Result]) -> list[list[str]]:
    """The bare app and Shoal at many connections under each event loop."""
    return [
        [
            SERVERS.get(result.server, result.server),
            str(result.extra.get("loop", "?")),
            f"{result.connections:,}",
            _number(result.ok_per_s),
            _number(result.per_app_cpu_s, 0),
            _number(result.p50_ms, 2),
            _number(result.p99_ms, 2),
            _times(spread(result)),
            str(result.errors),
            _cpu(result),
        ]
        for result in in_phase(results, "loops")
    ]


LOOPS_HEADER = [
    "server",
    "event loop",
    "conns",
    "ok/s",
    "req/CPU-s",
    "p50 ms",
    "p99 ms",
    "p99 / p50",
    "errors",
    "CPU% app/db/wrk/other",
]


def loops_lines(results: Sequence[Result]) -> list[str]:
    """Per server and connection count: asyncio's figures over uvloop's."""
    found = in_phase(results, "loops")
    lines = []
    kinds = dict.fromkeys((r.server, r.connections) for r in found)
    for server, connections in kinds:
        by_loop = {
            r.extra.get("loop"): r
            for r in found
            if r.server == server and r.connections == connections
        }
        uvloop, asyncio = by_loop.get("uvloop"), by_loop.get("asyncio")
        if uvloop is None or asyncio is None:
            continue
        lines.append(
            f"{SERVERS[server]} at {connections:,} connections, asyncio / uvloop: "
            f"{_times(ratio(asyncio, uvloop))} the requests/s, "
            f"{_times(ratio_per_cpu(asyncio, uvloop))} the requests per CPU-second; "
            f"p99 / p50 {_times(spread(asyncio))} against {_times(spread(uvloop))}"
        )
    return lines


def many_connections_lines(results: Sequence[Result]) -> list[str]:
    """The p99/p50 of the main phases' many-connections item GET, per worker count."""
    lines = []
    for result in nearby(results):
        if result.server == "shoal" and result.scenario == "item_get_1000c":
            lines.append(
                f"the main phases' item GET at {result.connections:,} connections, "
                f"{result.workers} worker(s): p99 / p50 = {_times(spread(result))} "
                f"(p50 {result.p50_ms:,.2f} ms, p99 {result.p99_ms:,.2f} ms)"
            )
    return lines


def phase_lines(phase_seconds: dict[str, float]) -> list[str]:
    """How long each phase of the run took."""
    return [f"{name}: {seconds:.0f}s" for name, seconds in phase_seconds.items()]


def own_engine(data: dict[str, Any]) -> str:
    """The run's own engine as the engines table names it."""
    engine = data.get("engine") or {}
    if engine.get("given"):
        return str(engine["name"])
    return ENGINES.get(data["options"].get("engine", "standin"), "stand-in")


def phase_text(results: Sequence[Result], own: str) -> list[str]:
    """The tables of the phases with tables of their own that ran, as text; ``own``
    names the run's engine."""
    sections: tuple[tuple[str, list[str], list[list[str]], list[str]], ...] = (
        ("engines", ENGINES_HEADER, engines_rows(results, own), engines_lines(results, own)),
        ("streams", STREAMS_HEADER, streams_rows(results), []),
        ("keyset", KEYSET_HEADER, keyset_rows(results, own), keyset_lines(results, own)),
        ("balancer", BALANCER_HEADER, balancer_rows(results), balancer_lines(results)),
        ("admission", ADMISSION_HEADER, admission_rows(results), many_connections_lines(results)),
        ("loops", LOOPS_HEADER, loops_rows(results), loops_lines(results)),
    )
    lines: list[str] = []
    for phase, header, table, notes in sections:
        if table:
            lines += [PHASES[phase].capitalize(), text_table(header, table), *notes, ""]
    return lines


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain table; text columns left-aligned, figures right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def numeric(cell: str) -> bool:
        return cell.replace(",", "").replace(".", "").replace("/", "").isdigit()

    lines = []
    for index, row in enumerate([list(header), *rows]):
        cells = [
            cell.rjust(width) if index and numeric(cell) else cell.ljust(width)
            for cell, width in zip(row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- the run's summary ------------------------------------------------------------


def summary_text(data: dict[str, Any]) -> str:
    results = [Result.from_json(item) for item in data["results"]]
    found = targets(results)
    lines = [""]
    engine = data.get("engine")
    if engine:
        lines += [f"Database engine: {engine['name']} ({engine.get('uri', '?')})", ""]
    if nearby(results):
        lines += [
            "Results (wrk on loopback; server, database, Redis and wrk share the machine's "
            f"{data['machine']['cpus']} cores)",
            text_table(RESULT_HEADER, results_rows(nearby(results))),
            "",
        ]
    if distant(results):
        lines += [
            "The database at a distance (the delay proxy adds the round trip of db +ms)",
            text_table(DISTANCE_HEADER, distance_rows(results)),
            "",
            text_table(DISTANCE_RATIO_HEADER, distance_ratio_rows(results)),
            "",
            *(network_lines(data.get("network") or [])),
            "",
        ]
    lines += phase_text(results, own_engine(data))
    for note in data.get("notes", []):
        lines.append(f"note: {note}")
    met = sum(target.met is True for target in found)
    lines += [
        "",
        f"Targets: {met} of {len(found)} met (ratios compare 2xx/3xx requests per second)",
        text_table(TARGET_HEADER, target_rows(found)),
    ]
    if data.get("phase_seconds"):
        lines += ["", "Time per phase: " + ", ".join(phase_lines(data["phase_seconds"]))]
    return "\n".join(lines)


def network_lines(network: Sequence[dict[str, float]]) -> list[str]:
    """What the delay proxy added, as measured: a MongoDB ping, direct and through it."""
    return [
        f"database +{item['delay_ms']:g} ms: a MongoDB ping took {item['ping_ms']:.2f} ms "
        f"direct and {item['proxied_ping_ms']:.2f} ms through the delay proxy (median of 50)"
        for item in network
    ]


def busy_note(results: Sequence[Result], threshold: float) -> str | None:
    """A note naming the scenarios that ran while others' processes used the CPU."""
    busy = [r for r in results if r.cpu_percent.get("other", 0.0) > threshold]
    if not busy:
        return None
    names = ", ".join(
        f"{r.server} {r.scenario} w{r.workers} ({r.cpu_percent['other']:.0f}%)" for r in busy
    )
    return (
        f"{len(busy)} of {len(results)} scenarios ran while processes outside the benchmark "
        f"used more than {threshold:g}% of a core (CPU% other); their figures understate "
        f"what this machine can do: {names}"
    )
