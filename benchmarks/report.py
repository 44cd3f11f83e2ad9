"""Results of a run, the ratios that matter, and the targets they meet.

Everything here is pure: it takes ``Result`` values and returns text or
``Target`` values, so it is tested on canned figures (tests/test_benchmarks.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: Scenario keys, in the order they are reported, with their labels.
SCENARIOS: dict[str, str] = {
    "item_get": "item GET uncached",
    "item_get_cached": "item GET cached",
    "list_get": "list GET (25 items)",
    "post": "POST insert",
    "patch": "PATCH with If-Match",
    "item_get_1000c": "item GET, 1,000 conns",
    "bare_get": "item GET paths, fixed JSON",
    "minimal": "minimal JSON app",
    "find_one": "find_one by _id",
}
#: The Shoal scenarios every target about Eve covers.
SHOAL_SCENARIOS = ("item_get", "item_get_cached", "list_get", "post", "patch", "item_get_1000c")
#: Eve has no response cache: Shoal's cached item GET is compared with Eve's item GET.
EVE_COUNTERPART = {"item_get_cached": "item_get"}
CPU_ROLES = ("app", "db", "wrk", "other")
SERVERS = {
    "shoal": "Shoal",
    "bare": "bare ASGI",
    "quart": "Quart minimal",
    "driver": "driver",
    "eve": "Eve",
    "eve_gevent": "Eve gevent",
}
#: The scenarios measured with the database at a distance, and the servers compared.
DISTANCE_SCENARIOS = ("item_get", "post", "patch")
DISTANCE_SERVERS = ("shoal", "eve", "eve_gevent")

CACHED_VS_MINIMAL = 0.85
UNCACHED_VS_DRIVER = 0.8
VS_EVE = 2.0
MANY_CONNECTIONS_P99_MS = 500.0
RSS_PER_WORKER_MB = 100.0


@dataclass
class Result:
    """One scenario on one server with one worker count."""

    server: str
    scenario: str
    workers: int
    connections: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx_3xx: int = 0
    #: The errors by kind: non_2xx_3xx, connect, read, write, timeout.
    error_detail: dict[str, int] = field(default_factory=dict)
    #: Peak RSS (VmHWM) of each worker process, MiB, read after the scenario.
    worker_rss_mb: list[float] = field(default_factory=list)
    #: RSS (VmRSS) of each worker process right after the scenario, MiB.
    worker_current_rss_mb: list[float] = field(default_factory=list)
    #: CPU used during the scenario, in % of one core, by role: the app's processes,
    #: the database, wrk, and everything else on the machine ("other").
    cpu_percent: dict[str, float] = field(default_factory=dict)
    note: str = ""
    #: Round trip added between the server and the database (the delay proxy), ms.
    delay_ms: float = 0.0

    @property
    def peak_rss_mb(self) -> float:
        return max(self.worker_rss_mb, default=0.0)

    @property
    def current_rss_mb(self) -> float:
        return max(self.worker_current_rss_mb, default=0.0)

    @property
    def ok_per_s(self) -> float:
        """Requests/s that got a 2xx or 3xx answer (what the ratios compare)."""
        if self.seconds <= 0:
            return 0.0
        return max(0, self.requests - self.non_2xx_3xx) / self.seconds

    @property
    def per_app_cpu_s(self) -> float | None:
        """2xx/3xx requests per second of CPU the app itself used: steadier than
        requests/s when other processes share the machine (the database excluded)."""
        app = self.cpu_percent.get("app", 0.0)
        return None if app <= 0 else self.ok_per_s / (app / 100.0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_app_cpu_s"] = self.per_app_cpu_s
        data["peak_rss_mb"] = self.peak_rss_mb
        data["current_rss_mb"] = self.current_rss_mb
        data["ok_per_s"] = self.ok_per_s
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class Target:
    """One target, for one worker count."""

    name: str
    workers: int
    value: float | None  # the measured ratio or figure; None when not measured
    goal: str
    met: bool | None  # None: could not be measured in this run
    detail: str = ""
    kind: str = "ratio"  # "ratio", "latency" or "memory": how ``value`` reads
    #: For ratios: the same ratio of requests per second of the app's own CPU.
    per_cpu: float | None = None

    @property
    def status(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else "not yet met"


def find(
    results: Iterable[Result],
    server: str,
    scenario: str,
    workers: int | None = None,
    *,
    delay_ms: float = 0.0,
) -> Result | None:
    """The result of ``server`` in ``scenario`` (with the database ``delay_ms`` away)."""
    for result in results:
        if (
            result.server == server
            and result.scenario == scenario
            and (workers is None or result.workers == workers)
            and result.delay_ms == delay_ms
        ):
            return result
    return None


def nearby(results: Iterable[Result]) -> list[Result]:
    """The results with the database on loopback (no added delay)."""
    return [result for result in results if not result.delay_ms]


def distant(results: Iterable[Result]) -> list[Result]:
    """The results with the database behind the delay proxy."""
    return [result for result in results if result.delay_ms]


def ratio(numerator: Result | None, denominator: Result | None) -> float | None:
    if numerator is None or denominator is None or denominator.ok_per_s <= 0:
        return None
    return numerator.ok_per_s / denominator.ok_per_s


def ratio_per_cpu(numerator: Result | None, denominator: Result | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    top, bottom = numerator.per_app_cpu_s, denominator.per_app_cpu_s
    return None if top is None or not bottom else top / bottom


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def targets(results: Sequence[Result]) -> list[Target]:
    """Every target, for each worker count Shoal ran with."""
    found: list[Target] = []
    results = nearby(results)
    worker_counts = sorted({r.workers for r in results if r.server == "shoal"})
    driver = find(results, "driver", "find_one")
    for workers in worker_counts:
        cached = find(results, "shoal", "item_get_cached", workers)
        minimal = find(results, "quart", "minimal", workers)
        value = ratio(cached, minimal)
        found.append(
            Target(
                "Shoal cached item GET / Quart minimal app",
                workers,
                value,
                f">= {CACHED_VS_MINIMAL:g}x",
                _at_least(value, CACHED_VS_MINIMAL),
                per_cpu=ratio_per_cpu(cached, minimal),
            )
        )
        uncached = find(results, "shoal", "item_get", workers)
        value = ratio(uncached, driver)
        found.append(
            Target(
                "Shoal uncached item GET / driver ceiling",
                workers,
                value,
                f">= {UNCACHED_VS_DRIVER:g}x",
                _at_least(value, UNCACHED_VS_DRIVER),
                per_cpu=ratio_per_cpu(uncached, driver),
            )
        )
        for scenario in SHOAL_SCENARIOS:
            shoal = find(results, "shoal", scenario, workers)
            eve = find(results, "eve", EVE_COUNTERPART.get(scenario, scenario), workers)
            value = ratio(shoal, eve)
            found.append(
                Target(
                    f"Shoal / Eve, {SCENARIOS[scenario]}",
                    workers,
                    value,
                    f">= {VS_EVE:g}x",
                    _at_least(value, VS_EVE),
                    per_cpu=ratio_per_cpu(shoal, eve),
                )
            )
        many = find(results, "shoal", "item_get_1000c", workers)
        found.append(
            Target(
                "1,000 connections: zero errors, p99 < 500 ms",
                workers,
                None if many is None else many.p99_ms,
                f"0 errors, p99 < {MANY_CONNECTIONS_P99_MS:g} ms",
                None
                if many is None
                else many.errors == 0 and many.p99_ms < MANY_CONNECTIONS_P99_MS,
                "" if many is None else f"{many.errors} errors, p99 {many.p99_ms:.0f} ms",
                kind="latency",
            )
        )
        peaks = [r.peak_rss_mb for r in results if r.server == "shoal" and r.workers == workers]
        peak = max(peaks, default=None)
        found.append(
            Target(
                "peak RSS per Shoal worker",
                workers,
                peak,
                f"< {RSS_PER_WORKER_MB:g} MB",
                None if peak is None or peak == 0 else peak < RSS_PER_WORKER_MB,
                kind="memory",
            )
        )
    return found


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
    rows = []
    for target in found:
        if target.value is None:
            value = "-"
        elif target.kind == "memory":
            value = f"{target.value:.1f} MB"
        elif target.kind == "latency":
            value = target.detail
        else:
            value = f"{target.value:.2f}x"
        per_cpu = "-" if target.per_cpu is None else f"{target.per_cpu:.2f}x"
        rows.append([str(target.workers), target.name, value, per_cpu, target.goal, target.status])
    return rows


TARGET_HEADER = ["workers", "target", "measured", "per app CPU", "goal", "status"]


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
    lines += [
        "Ratios and targets (ratios compare 2xx/3xx requests per second)",
        text_table(TARGET_HEADER, target_rows(found)),
    ]
    for note in data.get("notes", []):
        lines.append(f"note: {note}")
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
