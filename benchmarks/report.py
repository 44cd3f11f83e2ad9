"""A run's results as text: the tables printed at the end of a run and written to
docs/benchmarks.md, and the notes about the run.

Pure: it takes ``Result`` and ``Target`` values and returns text, so it is tested
on canned figures (tests/test_benchmarks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .results import (
    CPU_ROLES,
    DISTANCE_SCENARIOS,
    DISTANCE_SERVERS,
    SCENARIOS,
    SERVERS,
    Result,
    distant,
    find,
    nearby,
    ratio,
)
from .targets import Target, targets

# --- text -------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def results_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for result in results:
        cpu = result.cpu_percent
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
                f"{result.current_rss_mb:.0f}/{result.peak_rss_mb:.0f}"
                if result.worker_rss_mb
                else "-",
                "/".join(f"{cpu.get(role, 0):.0f}" for role in CPU_ROLES) if cpu else "-",
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
    for note in data.get("notes", []):
        lines.append(f"note: {note}")
    met = sum(target.met is True for target in found)
    lines += [
        "",
        f"Targets: {met} of {len(found)} met (ratios compare 2xx/3xx requests per second)",
        text_table(TARGET_HEADER, target_rows(found)),
    ]
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
