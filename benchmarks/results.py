"""A run's results: one ``Result`` per scenario, server and worker count, how to
find one, and the ratios between two.

Pure: tested on canned figures (tests/test_benchmarks.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Scenario keys, in the order they are reported, with their labels.
SCENARIOS: dict[str, str] = {
    "item_get": "item GET uncached",
    "item_get_bearer": "item GET uncached, bearer token",
    "item_get_rules": "item GET uncached, bearer token, rules",
    "item_get_cached": "item GET cached",
    "item_get_cached_worker": "item GET cached, worker tier",
    "list_get": "list GET (25 items)",
    "post": "POST insert",
    "patch": "PATCH with If-Match",
    "item_get_1000c": "item GET, 1,000 conns",
    "bare_get": "item GET paths, fixed JSON",
    "minimal": "minimal JSON app",
    "find_one": "find_one by _id",
    "item_get_direct": "item GET, straight to one instance",
    "item_get_nginx": "item GET, through nginx",
    "stream_fanout": "change events to every subscriber",
    "page_first_skip": "first page, by page",
    "page_deep_skip": "deep page, by page",
    "page_first_cursor": "first page, by cursor",
    "page_deep_cursor": "deep page, by cursor",
}
#: The phases with tables of their own, in the order they run and are reported
#: (results of the main phases, on loopback or at a distance, have no phase).
PHASES: dict[str, str] = {
    "engines": "the other engines",
    "streams": "change streams",
    "keyset": "keyset pagination",
    "balancer": "load balancer",
    "admission": "admission control",
    "loops": "event loops",
}
#: The engines a run can start (``stack.py``), with the names the report uses.
ENGINES: dict[str, str] = {
    "standin": "stand-in",
    "ferretdb": "FerretDB",
    "documentdb": "DocumentDB",
}
CPU_ROLES = ("app", "db", "wrk", "other")
SERVERS = {
    "shoal": "Shoal",
    "bare": "bare ASGI",
    "quart": "Quart minimal",
    "driver": "driver",
    "eve": "Eve",
    "eve_gevent": "Eve gevent",
    "peer_starlette": "hand-written Starlette",
    "peer_quart": "hand-written Quart",
}
#: The scenarios measured with the database at a distance, and the servers compared.
DISTANCE_SCENARIOS = ("item_get", "post", "patch")
DISTANCE_SERVERS = ("shoal", "eve", "eve_gevent")


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
    #: The phase with a table of its own this result belongs to (``PHASES``), or
    #: "" for the main phases (the results table, the distance tables, the targets).
    phase: str = ""
    #: What that phase's table shows besides the common figures (JSON values).
    extra: dict[str, Any] = field(default_factory=dict)

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


def find(
    results: Iterable[Result],
    server: str,
    scenario: str,
    workers: int | None = None,
    *,
    delay_ms: float = 0.0,
    phase: str = "",
) -> Result | None:
    """The result of ``server`` in ``scenario`` (with the database ``delay_ms`` away),
    in the main phases or in ``phase``."""
    for result in results:
        if (
            result.server == server
            and result.scenario == scenario
            and (workers is None or result.workers == workers)
            and result.delay_ms == delay_ms
            and result.phase == phase
        ):
            return result
    return None


def nearby(results: Iterable[Result]) -> list[Result]:
    """The results of the main phases with the database on loopback (no added delay)."""
    return [result for result in results if not result.delay_ms and not result.phase]


def distant(results: Iterable[Result]) -> list[Result]:
    """The results with the database behind the delay proxy."""
    return [result for result in results if result.delay_ms and not result.phase]


def main_phases(results: Iterable[Result]) -> list[Result]:
    """The results of the main phases (on loopback and at a distance), which the
    targets judge."""
    return [result for result in results if not result.phase]


def in_phase(results: Iterable[Result], phase: str) -> list[Result]:
    """The results of one of ``PHASES``, in the order they were measured."""
    return [result for result in results if result.phase == phase]


def ratio(numerator: Result | None, denominator: Result | None) -> float | None:
    if numerator is None or denominator is None or denominator.ok_per_s <= 0:
        return None
    return numerator.ok_per_s / denominator.ok_per_s


def ratio_per_cpu(numerator: Result | None, denominator: Result | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    top, bottom = numerator.per_app_cpu_s, denominator.per_app_cpu_s
    return None if top is None or not bottom else top / bottom
