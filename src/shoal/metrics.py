"""Prometheus metrics: what Shoal counts, and how a scrape reads every worker.

The metrics are module-level objects, as prometheus-client expects: one set per
process, which the layers that measure import from here (HTTP in
``http/metrics.py``, the cache, rate limits, MongoDB, Redis). Standard names for
HTTP (``http_requests_total``, ``http_request_duration_seconds``), ``shoal_``
for the rest; docs/how-to/operations.md lists them all.

**Several workers.** `shoal serve` runs hypercorn workers as separate processes,
each with its own counters. Before it starts them, ``prepare_multiprocess_dir``
gives them one directory (``PROMETHEUS_MULTIPROC_DIR``) where each writes its
values to files of its own (prometheus-client's multiprocess mode, chosen when
the client is first imported, so the variable must be set before the workers
start). A scrape reads every file there (``instance_registry``), so any worker,
or the exporter on ``metrics.bind``, answers with the sums for the whole
instance. Files of workers that are gone are marked dead (``mark_process_dead``)
before each scrape, so a live-worker gauge never counts them.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

#: The variable prometheus-client reads to choose its multiprocess mode.
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds; from a cache hit (a fraction of a millisecond) to a slow write.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Seconds; a Redis round trip on a local network is a fraction of a millisecond.
STORE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

HTTP_LABELS = ("method", "route", "status")

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status.",
    HTTP_LABELS,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method, route template and status.",
    HTTP_LABELS,
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "shoal_cache_requests",
    "Reads of cached resources, by resource, result (hit: from Redis, local_hit: from the "
    "worker's memory, miss, bypass: shared state unreachable) and path (fast_path: answered "
    "before the app; app).",
    ("resource", "result", "path"),
)
RATE_LIMIT_REJECTIONS = Counter(
    "shoal_rate_limit_rejections",
    "Requests refused with 429 by a rate limit, by method class (read, write).",
    ("method_class",),
)
IDEMPOTENT_REPLAYS = Counter(
    "shoal_idempotent_replays",
    "Requests with an Idempotency-Key answered with the kept first answer, by method.",
    ("method",),
)
MONGODB_DURATION = Histogram(
    "shoal_mongodb_command_duration_seconds",
    "MongoDB commands as the driver timed them, by command name.",
    ("command",),
    buckets=LATENCY_BUCKETS,
)
MONGODB_ERRORS = Counter(
    "shoal_mongodb_errors",
    "MongoDB operations that failed, by error: unreachable (503), timeout (503), failed (500).",
    ("error",),
)
REDIS_DURATION = Histogram(
    "shoal_redis_command_duration_seconds",
    "Shared-state calls to Redis, failed ones included, by command.",
    ("command",),
    buckets=STORE_BUCKETS,
)
REDIS_ERRORS = Counter(
    "shoal_redis_errors",
    "Shared-state calls to Redis that failed (connection, timeout, cluster errors), by command.",
    ("command",),
)
#: Seconds; a loop that runs on time is late by well under a millisecond.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
EVENT_LOOP_LAG = Histogram(
    "shoal_event_loop_lag_seconds",
    "How late each worker's event loop ran a timer it sets every 0.1 s: the time it "
    "spent on other work without yielding.",
    buckets=LAG_BUCKETS,
)
EVENT_LOOP_LAG_MAX = Gauge(
    "shoal_event_loop_lag_max_seconds",
    "The longest lag of the event loop a serving worker has seen since it started.",
    multiprocess_mode="livemax",
)
SLOW_CLIENTS = Counter(
    "shoal_slow_clients",
    "Requests cut off at a slow-client deadline, by deadline: body (408, the body came "
    "too slowly), send (the connection reset, the answer was not taken in time).",
    ("deadline",),
)
WORKERS = Gauge(
    "shoal_workers",
    "Worker processes of this instance that are serving.",
    multiprocess_mode="livesum",
)
KEY_WATCHES_OPEN = Gauge(
    "shoal_key_watches_open",
    "Workers whose key watch (Redis's pushes of changed keys: cache_tier: worker, "
    "auth.revocation_cache) is open.",
    multiprocess_mode="livesum",
)


def multiprocess_dir() -> Path | None:
    """The workers' shared directory, when `shoal serve` (or the operator) set one."""
    directory = os.environ.get(MULTIPROCESS_VARIABLE)
    return Path(directory) if directory else None


def prepare_multiprocess_dir() -> Path:
    """Give the workers about to start a clean directory for their metric files.

    Called once by `shoal serve` before its supervisor starts the workers (they
    inherit the variable). The operator's ``PROMETHEUS_MULTIPROC_DIR`` if set
    (one directory per instance), emptied of metric files so that counts start
    at zero with the instance; else a new temporary directory, removed when
    this process exits.
    """
    directory = multiprocess_dir()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="shoal-metrics-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ[MULTIPROCESS_VARIABLE] = str(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return directory


def mark_dead_workers(directory: Path) -> list[int]:
    """Mark dead the workers whose live-gauge files remain but whose process is
    gone (killed, or restarted by the supervisor); the pids marked."""
    dead: list[int] = []
    for path in directory.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if pid not in dead and not _alive(pid):
            mark_process_dead(pid, str(directory))
            dead.append(pid)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Instance(Collector):
    """Every worker's files in the multiprocess directory, dead workers marked first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterable[Metric]:
        mark_dead_workers(self.directory)
        metrics: Iterable[Metric] = self.files.collect()
        return metrics


def instance_registry() -> CollectorRegistry:
    """What a scrape reads: every worker of the instance in multiprocess mode,
    else this process's own registry."""
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Instance(directory))
    return registry


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The body and content type of a scrape, in the format ``accept`` asks for
    (Prometheus text, or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(instance_registry()), content_type


def start_exporter(host: str, port: int) -> None:
    """Serve the instance's metrics on ``host:port`` from a thread of this
    process (prometheus-client's own HTTP server; every path answers them).

    Raises OSError when the address cannot be bound.
    """
    start_http_server(port, addr=host, registry=instance_registry())


def worker_started() -> None:
    """This process serves requests (counted by ``shoal_workers``)."""
    WORKERS.set(1)


#: Seconds between two looks at the event loop's lag.
LAG_INTERVAL = 0.1


async def probe_event_loop_lag() -> None:
    """Measure, until cancelled, how late the event loop wakes a timer set
    ``LAG_INTERVAL`` ahead: the longest stretch it ran other work without
    yielding (``shoal_event_loop_lag_seconds``, ``..._max_seconds``)."""
    loop = asyncio.get_running_loop()
    longest = 0.0
    while True:
        started = loop.time()
        await asyncio.sleep(LAG_INTERVAL)
        lag = max(0.0, loop.time() - started - LAG_INTERVAL)
        EVENT_LOOP_LAG.observe(lag)
        if lag > longest:
            longest = lag
            EVENT_LOOP_LAG_MAX.set(lag)


def worker_stopped() -> None:
    """This process no longer serves: its live values leave the sums."""
    WORKERS.set(0)
    directory = multiprocess_dir()
    if directory is not None:
        mark_process_dead(os.getpid(), str(directory))


# Labelled children, looked up once: ``labels()`` takes a lock and builds a
# tuple on every call, too slow for the request path. Every label set here is
# bounded (methods, route templates, statuses, resources, command names).


@cache
def http_request(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The request counter and latency histogram of one (method, route, status)."""
    labels = (method, route, str(status))
    return HTTP_REQUESTS.labels(*labels), HTTP_DURATION.labels(*labels)


@cache
def cache_lookup(resource: str, result: str, path: str) -> Counter:
    """The cache counter of one resource, result (hit, local_hit, miss, bypass) and path
    (fast_path, app)."""
    return CACHE_REQUESTS.labels(resource, result, path)


@cache
def redis_command(command: str) -> tuple[Histogram, Counter]:
    """The latency histogram and error counter of one Redis command."""
    return REDIS_DURATION.labels(command), REDIS_ERRORS.labels(command)


@cache
def mongodb_command(command: str) -> Histogram:
    """The latency histogram of one MongoDB command."""
    return MONGODB_DURATION.labels(command)
