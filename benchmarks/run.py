"""Benchmark Shoal against the stack's ceiling and against Eve, in one run.

One command (``scripts/bench``, or ``python -m benchmarks.run`` in the
project's virtualenv) starts, on free loopback ports:

- the MongoDB stand-in (``shoal.storage.embedded.EmbeddedStore``, in a temp dir) and
  ``redis-server``;
- for each worker count (1, then 2): the minimal Quart app under hypercorn
  (the stack's ceiling), ``shoal serve`` with ``benchmarks/shoal.yaml``, and
  Eve 2.3 under gunicorn, one after the other, on the same data;
- once, the driver's ceiling (``benchmarks/driver.py``);

drives each with ``wrk`` for a fixed time, prints requests/s, p50/p99, errors
and peak RSS per worker, the ratios and the targets they meet, samples a Shoal
worker with py-spy on the hot read paths, and writes
``benchmarks/results/latest.json``, ``docs/benchmarks.md`` and
``docs/benchmarks.png``.

``--docs-only`` re-renders the docs from ``latest.json`` without measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from shoal.system import free_port

from . import docs
from .data import POOL_TITLE, Dataset, make_documents, post_documents, write_docs_file
from .profile import format_profile, record
from .report import (
    RESULT_HEADER,
    SCENARIOS,
    TARGET_HEADER,
    Result,
    find,
    results_rows,
    target_rows,
    targets,
    text_table,
)
from .services import (
    Service,
    cpu_seconds,
    machine_busy_seconds,
    peak_rss_mb,
    rss_mb,
)
from .wrk import WrkError, WrkResult, run_wrk, wrk_command

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "benchmarks" / "shoal.yaml"
HYPERCORN_TOML = ROOT / "hypercorn.toml"
DATABASE = "bench"
COMMAND = "scripts/bench"


@dataclass
class Options:
    duration: float = 10.0
    warmup: float = 2.0
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
    quiet_budget: float = 60.0
    busy_percent: float = 25.0
    profile: bool = True
    profile_duration: float = 8.0
    eve: bool = True
    write_docs: bool = True


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
    parser.add_argument("--workers", type=int, nargs="+", default=defaults.workers)
    parser.add_argument("--documents", type=int, default=defaults.documents)
    parser.add_argument(
        "--patch-pool",
        type=int,
        default=defaults.patch_pool,
        help="fresh documents for the PATCH scenario (Eve can patch each once)",
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
        help="a smoke run: 2 s per scenario, no warm-up, 1 worker, no profile",
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
        profile=not args.no_profile,
        eve=not args.no_eve,
        write_docs=not args.no_docs,
    )
    if args.quick:
        options.duration, options.warmup, options.workers = 2.0, 0.0, [1]
        options.profile, options.patch_pool = False, 2000
    return options, args.docs_only


# --- the machine --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        line = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = int(line.split()[1]) / 1024 / 1024
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].split(" [")[0]
        if wrk.stdout or wrk.stderr
        else "unknown",
    }


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "shoal",
        "quart",
        "hypercorn",
        "uvloop",
        "pymongo",
        "redis",
        "orjson",
        "nx-27017",
        "eve",
        "flask",
        "gunicorn",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def raise_open_files_limit() -> int:
    """1,000 connections need more descriptors than a default soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the run ---------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    """One benchmark run: the shared services, the data, the results."""

    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.results: list[Result] = []
        self.profiles: dict[str, Any] = {}
        self.notes: list[str] = []
        self.store: Any = None
        self.redis: Service | None = None
        self.dataset: Dataset | None = None
        self.ids_file = workdir / "ids.txt"
        self.pool: list[Any] = []  # documents for PATCH, inserted before each PATCH run
        self.pool_etags: dict[Any, str] = {}
        self.quiet_budget = options.quiet_budget
        self.pool_size = 0  # documents in the last PATCH pool file

    # -- services --------------------------------------------------------------

    def start_shared(self) -> None:
        from shoal.storage.embedded import EmbeddedStore

        self.store = EmbeddedStore(self.workdir / "mongodb")
        self.store.start()
        port = free_port()
        self.redis = Service(
            "redis",
            [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
            ],
            workdir=self.workdir,
            port=port,
        ).start()  # fmt: skip
        self.dataset = Dataset(self.store.uri, DATABASE)

    def stop_shared(self) -> None:
        if self.dataset is not None:
            self.dataset.close()
        if self.redis is not None:
            self.redis.stop()
        if self.store is not None:
            self.store.stop()

    @property
    def mongodb_uri(self) -> str:
        return str(self.store.uri)

    def _env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
        env.update(extra)
        return env

    def shoal(self, workers: int) -> Service:
        assert self.redis is not None
        port = free_port()
        shoal = Path(sys.executable).with_name("shoal")
        command = [str(shoal)] if shoal.is_file() else [sys.executable, "-m", "shoal.cli"]
        return Service(
            f"shoal-w{workers}",
            [*command, "serve", "--config", str(CONFIG), "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers)],
            workdir=self.workdir,
            port=port,
            cwd=ROOT,
            ready_path="/readyz",
            env=self._env(
                SHOAL_MONGODB_URI=self.mongodb_uri,
                SHOAL_MONGODB_DATABASE=DATABASE,
                SHOAL_REDIS_URL=f"redis://127.0.0.1:{self.redis.port}/0",
                SHOAL_SECRET_KEY=secrets.token_hex(24),
                SHOAL_HYPERCORN_CONFIG=str(HYPERCORN_TOML),
            ),
        )  # fmt: skip

    def quart(self, workers: int) -> Service:
        port = free_port()
        return Service(
            f"quart-w{workers}",
            [sys.executable, "-m", "hypercorn", "--config", str(HYPERCORN_TOML),
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "benchmarks.apps.minimal:app"],
            workdir=self.workdir,
            port=port,
            cwd=ROOT,
            ready_path="/",
            env=self._env(),
        )  # fmt: skip

    def eve(self, workers: int) -> Service:
        port = free_port()
        host_port = self.mongodb_uri.split("//", 1)[1].split("/", 1)[0]
        return Service(
            f"eve-w{workers}",
            [sys.executable, "-m", "gunicorn", "--workers", str(workers),
             "--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--graceful-timeout", "10",
             "--no-control-socket",
             "benchmarks.apps.eve_app:app"],
            workdir=self.workdir,
            port=port,
            cwd=ROOT,
            ready_path="/items?max_results=1",
            env=self._env(
                BENCH_EVE_MONGO_URI=f"mongodb://{host_port}/{DATABASE}?directConnection=true"
            ),
        )  # fmt: skip

    # -- data ----------------------------------------------------------------------

    def seed(self, shoal: Service) -> None:
        """Insert the documents through Shoal once, and keep them as the snapshot."""
        assert self.dataset is not None
        started = time.monotonic()
        post_documents(shoal.url, make_documents(self.options.documents))
        seeds = self.dataset.take_snapshot()
        write_docs_file(self.ids_file, [(d["_id"], d["_etag"]) for d in seeds])
        post_documents(
            shoal.url, make_documents(self.options.patch_pool, seed=11, title=POOL_TITLE)
        )
        self.pool = list(self.dataset.collection.find({"title": POOL_TITLE}).sort("_id", 1))
        self.pool_etags = {d["_id"]: d["_etag"] for d in self.pool}
        self.dataset.reset()
        print(
            f"seeded {len(seeds)} documents and a PATCH pool of {len(self.pool)} through "
            f"Shoal's bulk POST in {time.monotonic() - started:.1f}s",
            flush=True,
        )

    def reset(self) -> None:
        assert self.dataset is not None
        assert self.redis is not None
        self.dataset.reset()
        import redis

        with redis.Redis(port=self.redis.port) as client:
            client.flushall()

    def insert_pool(self) -> None:
        assert self.dataset is not None
        self.dataset.collection.delete_many({"title": POOL_TITLE})
        self.dataset.collection.insert_many([dict(d) for d in self.pool])

    def pool_file(self, *, fresh_only: bool) -> Path:
        """The PATCH pool as it is now: untouched documents first, then the others
        (with their current ETags) unless ``fresh_only``."""
        assert self.dataset is not None
        current = self.dataset.current([d["_id"] for d in self.pool])
        fresh = [(i, etag) for i, etag in current if self.pool_etags.get(i) == etag]
        patched = [(i, etag) for i, etag in current if self.pool_etags.get(i) != etag]
        chosen = fresh if fresh_only else fresh + patched
        self.pool_size = len(chosen)
        return write_docs_file(self.workdir / "pool.txt", chosen)

    # -- measuring --------------------------------------------------------------

    def _wrk(
        self,
        url: str,
        duration: float,
        connections: int,
        script: str | None,
        script_args: tuple[str, ...],
    ) -> WrkResult:
        return run_wrk(
            wrk_command(
                url,
                duration=duration,
                connections=connections,
                threads=self.options.threads,
                script=script,
                script_args=script_args,
                timeout=self.options.timeout,
            )
        )

    def measure(
        self,
        service: Service,
        server: str,
        scenario: str,
        workers: int,
        path: str = "",
        *,
        script: str | None = None,
        script_args: Callable[[], tuple[str, ...]] = tuple,
        connections: int | None = None,
        warmup: bool = True,
        before: Callable[[], object] | None = None,
        note: str = "",
    ) -> Result | None:
        connections = connections or self.options.connections
        url = service.url + path
        try:
            self._settle(service, f"before {server} {scenario}")
            if warmup and self.options.warmup > 0:
                self._wrk(url, self.options.warmup, connections, script, script_args())
                self._settle(service, f"after the warm-up of {server} {scenario}")
            if before is not None:
                before()
            self._wait_quiet()
            app_pids = service.all_pids()
            start = self._cpu(app_pids)
            clock = time.monotonic()
            wrk = self._wrk(url, self.options.duration, connections, script, script_args())
            cpu = self._cpu_percent(start, self._cpu(app_pids), time.monotonic() - clock)
        except (WrkError, subprocess.TimeoutExpired) as error:
            self.notes.append(f"{server} {scenario} (workers {workers}) failed: {error}")
            print(f"  {server} {scenario}: FAILED: {error}", file=sys.stderr, flush=True)
            return None
        workers_now = service.workers()
        result = Result(
            server=server,
            scenario=scenario,
            workers=workers,
            connections=connections,
            requests=wrk.requests,
            seconds=wrk.seconds,
            requests_per_s=wrk.requests_per_s,
            p50_ms=wrk.p50_ms,
            p99_ms=wrk.p99_ms,
            errors=wrk.errors,
            non_2xx_3xx=wrk.non_2xx_3xx,
            error_detail={
                key: value
                for key, value in (
                    ("non_2xx_3xx", wrk.non_2xx_3xx),
                    ("connect", wrk.connect_errors),
                    ("read", wrk.read_errors),
                    ("write", wrk.write_errors),
                    ("timeout", wrk.timeouts),
                )
                if value
            },
            worker_rss_mb=[round(peak_rss_mb(pid), 1) for pid in workers_now],
            worker_current_rss_mb=[round(rss_mb(pid), 1) for pid in workers_now],
            cpu_percent=cpu,
            note=note,
        )
        self.results.append(result)
        print("  " + "  ".join(results_rows([result])[0][1:]), flush=True)
        return result

    def _wait_quiet(self) -> None:
        """Wait (within the run's budget) while others' processes keep the machine busy."""
        limit = min(self.options.quiet_wait, self.quiet_budget)
        started = time.monotonic()
        while time.monotonic() - started < limit:
            before = machine_busy_seconds()
            time.sleep(0.5)
            if (machine_busy_seconds() - before) * 200 < self.options.busy_percent:
                break
        self.quiet_budget -= time.monotonic() - started

    def _settle(self, service: Service, when: str) -> None:
        waited = service.wait_idle()
        if waited > 5:
            self.notes.append(f"{service.name} was still busy {when}: waited {waited:.0f}s")

    def _cpu(self, app_pids: Sequence[int]) -> tuple[float, float, float, float]:
        """CPU seconds so far: the app, the database, reaped children (wrk), the machine."""
        db_pids = [self.store.pid] if self.store is not None and self.store.pid else []
        return (
            cpu_seconds(app_pids),
            cpu_seconds(db_pids),
            _children_cpu(),
            machine_busy_seconds(),
        )

    @staticmethod
    def _cpu_percent(
        start: tuple[float, float, float, float],
        end: tuple[float, float, float, float],
        elapsed: float,
    ) -> dict[str, float]:
        app, db, wrk, busy = (100.0 * (b - a) / elapsed for a, b in zip(start, end, strict=True))
        return {
            "app": round(app, 1),
            "db": round(db, 1),
            "wrk": round(wrk, 1),
            "other": round(max(0.0, busy - app - db - wrk), 1),
        }

    def driver_ceiling(self) -> None:
        concurrency = self.options.connections
        command = [
            sys.executable, "-m", "benchmarks.driver", "--uri", self.mongodb_uri,
            "--database", DATABASE, "--ids-file", str(self.ids_file),
            "--concurrency", str(concurrency), "--duration", str(self.options.duration),
            "--warmup", str(self.options.warmup),
        ]  # fmt: skip
        self._wait_quiet()
        start, clock = self._cpu([]), time.monotonic()
        completed = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=self.options.duration + self.options.warmup + 60,
        )
        elapsed = time.monotonic() - clock
        cpu = self._cpu_percent(start, self._cpu([]), elapsed)
        # The driver is a reaped child: its CPU is counted as "wrk"; it is the app here.
        cpu["app"], cpu["wrk"] = cpu["wrk"], 0.0
        if completed.returncode != 0:
            self.notes.append(f"driver ceiling failed: {completed.stderr.strip()[-500:]}")
            print(f"  driver: FAILED\n{completed.stderr}", file=sys.stderr, flush=True)
            return
        data = json.loads(completed.stdout.strip().splitlines()[-1])
        measured = self.options.duration / elapsed  # the run also covers warm-up
        result = Result(
            server="driver",
            scenario="find_one",
            workers=1,
            connections=concurrency,
            requests=data["requests"],
            seconds=data["seconds"],
            requests_per_s=data["requests_per_s"],
            p50_ms=data["p50_ms"],
            p99_ms=data["p99_ms"],
            errors=data["errors"],
            non_2xx_3xx=data["errors"],
            worker_rss_mb=[round(data["peak_rss_mb"], 1)],
            worker_current_rss_mb=[round(data["rss_mb"], 1)],
            cpu_percent=cpu,
            note=f"{concurrency} concurrent find_one tasks, one process, uvloop "
            f"(CPU shares averaged over warm-up too; measured share {measured:.0%})",
        )
        self.results.append(result)
        print("  " + "  ".join(results_rows([result])[0][1:]), flush=True)

    def profile(self, shoal: Service) -> None:
        """Sample the (single) Shoal worker under the uncached item GET and list GET."""
        duration = self.options.profile_duration
        for scenario, path, script, args in (
            ("item_get", "", "get.lua", self._get_args("/items/")),
            ("list_get", "/items", None, ()),
        ):
            command = wrk_command(
                shoal.url + path,
                duration=duration + 2,
                connections=self.options.connections,
                threads=self.options.threads,
                script=script,
                script_args=args,
            )
            wrk = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1.0)
                raw = RESULTS_DIR / f"profile-{scenario}.txt"
                summary = record(shoal.workers()[0], raw, duration=duration)
            finally:
                wrk.wait(duration + 30)
            if summary is None:
                self.notes.append(f"py-spy could not sample Shoal's {scenario}")
                continue
            self.profiles[scenario] = summary.to_json()
            print(format_profile(f"py-spy, Shoal {SCENARIOS[scenario]}", summary), flush=True)

    def _get_args(self, prefix: str) -> tuple[str, ...]:
        return (str(self.ids_file), prefix, str(self.options.threads))

    # -- the phases --------------------------------------------------------------

    def run_quart(self, workers: int) -> None:
        with self.quart(workers) as quart:
            self.measure(quart, "quart", "minimal", workers, "/")

    def run_shoal(self, workers: int) -> None:
        assert self.dataset is not None
        with self.shoal(workers) as shoal:
            if not self.pool:
                self.seed(shoal)
            self.reset()
            get = self._get_args("/items/")
            self.measure(
                shoal, "shoal", "item_get", workers, script="get.lua", script_args=lambda: get
            )
            cached = self._get_args("/items_cached/")
            self.measure(
                shoal,
                "shoal",
                "item_get_cached",
                workers,
                script="get.lua",
                script_args=lambda: cached,
                note="items_cached (cache_ttl 60) on the same collection",
            )
            self.measure(shoal, "shoal", "list_get", workers, "/items")
            self.measure(
                shoal,
                "shoal",
                "item_get_1000c",
                workers,
                script="get.lua",
                script_args=lambda: get,
                connections=self.options.many_connections,
            )
            if self.options.profile and workers == 1:
                self.profile(shoal)
            self.measure(
                shoal,
                "shoal",
                "post",
                workers,
                script="post.lua",
                script_args=lambda: ("/items",),
                before=self.dataset.remove_posted,
            )
            self.dataset.remove_posted()
            self.insert_pool()
            self.measure(
                shoal,
                "shoal",
                "patch",
                workers,
                script="patch.lua",
                script_args=lambda: (
                    str(self.pool_file(fresh_only=False)),
                    "/items/",
                    str(self.options.threads),
                ),
            )
        self.reset()  # fmt: skip

    def run_eve(self, workers: int) -> None:
        assert self.dataset is not None
        self.reset()
        with self.eve(workers) as eve:
            get = self._get_args("/items/")
            self.measure(eve, "eve", "item_get", workers, script="get.lua", script_args=lambda: get)
            self.measure(eve, "eve", "list_get", workers, "/items")
            self.measure(
                eve,
                "eve",
                "item_get_1000c",
                workers,
                script="get.lua",
                script_args=lambda: get,
                connections=self.options.many_connections,
            )
            self.measure(
                eve,
                "eve",
                "post",
                workers,
                script="post.lua",
                script_args=lambda: ("/items",),
                before=self.dataset.remove_posted,
            )
            self.dataset.remove_posted()
            # Last, and on documents nothing reads afterwards: once Eve has patched a
            # document on the stand-in, its `_updated` is a string (the stand-in's
            # `$set` datetime gap) and Eve fails on it, so each pool document is
            # patched at most once (the pool is sized for that).
            self.insert_pool()
            result = self.measure(
                eve, "eve", "patch", workers, script="patch.lua",
                script_args=lambda: (str(self.pool_file(fresh_only=True)),
                                     "/items/", str(self.options.threads)),
                note="each pool document patched once (stand-in gap)",
            )  # fmt: skip
            if result is not None and result.requests >= self.pool_size:
                self.notes.append(
                    f"Eve's PATCH run (workers {workers}) used up its pool of "
                    f"{self.pool_size} unpatched documents (its errors are the stand-in "
                    "gap, not Eve's): raise --patch-pool"
                )
        self.reset()

    def run(self) -> None:
        self.start_shared()
        try:
            for index, workers in enumerate(self.options.workers):
                print(f"\n== {workers} worker(s)", flush=True)
                self.run_quart(workers)
                self.run_shoal(workers)
                if index == 0:
                    self.driver_ceiling()
                if self.options.eve:
                    self.run_eve(workers)
        finally:
            self.stop_shared()


# --- output ----------------------------------------------------------------------


def summary_text(data: dict[str, Any]) -> str:
    results = [Result.from_json(item) for item in data["results"]]
    found = targets(results)
    lines = [
        "",
        "Results (wrk on loopback; server, database, Redis and wrk share the machine's "
        f"{data['machine']['cpus']} cores)",
        text_table(RESULT_HEADER, results_rows(results)),
        "",
        "Ratios and targets (ratios compare 2xx/3xx requests per second)",
        text_table(TARGET_HEADER, target_rows(found)),
    ]
    for note in data.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


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


def collect(bench: Bench, options: Options, elapsed: float) -> dict[str, Any]:
    results = bench.results
    note = busy_note(results, options.busy_percent)
    if note is not None:
        bench.notes.append(note)
    return {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": COMMAND,
        "elapsed_s": round(elapsed, 1),
        "options": asdict(options),
        "machine": machine(),
        "versions": versions(),
        "results": [result.to_json() for result in results],
        "targets": [{**asdict(target), "status": target.status} for target in targets(results)],
        "profiles": bench.profiles,
        "notes": bench.notes,
    }


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as name:
        yield Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    options, docs_only = parse_options(argv)
    latest = RESULTS_DIR / "latest.json"
    if docs_only:
        data = json.loads(latest.read_text())
        print(summary_text(data))
        docs.write(data, ROOT)
        return 0
    limit = raise_open_files_limit()
    if limit < options.many_connections + 100:
        print(f"warning: open files limit {limit} is low for "
              f"{options.many_connections} connections", file=sys.stderr)  # fmt: skip
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _workdir() as workdir:
        bench = Bench(options, workdir)
        bench.run()
    data = collect(bench, options, time.monotonic() - started)
    latest.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(summary_text(data))
    print(f"\nwrote {latest.relative_to(ROOT)}")
    if options.write_docs:
        for path in docs.write(data, ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
    print(f"total time {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Bench", "Options", "find", "main", "summary_text"]
