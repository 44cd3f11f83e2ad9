"""Measuring one scenario: wrk's run, the CPU each role used, the workers' memory.

``Meter.measure`` waits for the server and the machine to settle, warms the
server up, runs wrk for the measured seconds while it reads the CPU time of the
app, the database, wrk and the whole machine, and reads each worker's RSS at the
end; it returns a ``Result`` and keeps it (with any note) for the report.
``Meter.driver_ceiling`` does the same for ``benchmarks/driver.py``, and
``Meter.fan_out`` for ``benchmarks/sse_client.py`` (change streams).
"""

from __future__ import annotations

import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from .options import Options
from .proc import cpu_seconds, machine_busy_seconds, peak_rss_mb, rss_mb
from .report import results_rows
from .results import Result
from .services import IDLE_SAMPLE, Measurable
from .wrk import WrkError, WrkResult, run_wrk, wrk_command

ROOT = Path(__file__).resolve().parents[1]

#: What the change-stream client reports besides the common figures (``Result.extra``).
STREAM_FIGURES = (
    "connected", "refused", "ready", "held", "ended", "events_written", "write_errors",
    "write_rate", "expected", "missed", "complete", "all_received", "connect_seconds",
    "client_peak_rss_mb",
)  # fmt: skip

#: CPU seconds so far of: the app, the database, reaped children (wrk), the machine.
CpuClock = tuple[float, float, float, float]


@dataclass(frozen=True)
class Load:
    """What wrk sends in one scenario: a path, or a Lua script and its arguments."""

    scenario: str
    path: str = ""
    script: str | None = None
    #: Called before each wrk run (warm-up and measured), so files can be rewritten.
    script_args: Callable[[], tuple[str, ...]] = tuple
    #: None: the run's ``--connections``.
    connections: int | None = None
    #: Called after the warm-up, right before the measured run.
    before: Callable[[], object] | None = None
    note: str = ""
    #: Header lines every request carries ("Name: value").
    headers: tuple[str, ...] = ()


def children_cpu() -> float:
    """CPU seconds of the children this process has reaped (wrk, the driver)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_percent(start: CpuClock, end: CpuClock, elapsed: float) -> dict[str, float]:
    """CPU used between two readings, in % of one core, by role."""
    app, db, wrk, busy = (100.0 * (b - a) / elapsed for a, b in zip(start, end, strict=True))
    return {
        "app": round(app, 1),
        "db": round(db, 1),
        "wrk": round(wrk, 1),
        "other": round(max(0.0, busy - app - db - wrk), 1),
    }


def ping_ms(mongodb_uri: str, count: int = 50) -> float:
    """The median time of a MongoDB ``ping`` (one round trip) over ``mongodb_uri``, ms."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10000)
    try:
        client.admin.command("ping")  # connected, authenticated
        times = []
        for _ in range(count):
            started = time.perf_counter()
            client.admin.command("ping")
            times.append(time.perf_counter() - started)
    finally:
        client.close()
    return 1000 * statistics.median(times)


def print_result(result: Result) -> None:
    print("  " + "  ".join(results_rows([result])[0][1:]), flush=True)


class Meter:
    """Runs the measurements of one benchmark run and keeps their results and notes.

    ``db_pids`` names the database's processes at the time of a measurement;
    ``elsewhere`` measures on another database for a while, in a phase of its own.
    """

    def __init__(self, options: Options, db_pids: Callable[[], Sequence[int]]) -> None:
        self.options = options
        self.db_pids = db_pids
        self.results: list[Result] = []
        self.notes: list[str] = []
        self.quiet_budget = options.quiet_budget
        #: The phase and figures every result gets unless its call names its own.
        self.phase = ""
        self.extra: dict[str, Any] = {}
        #: Seconds each scenario is measured for (``briefly`` shortens it).
        self.duration = options.duration

    @contextlib.contextmanager
    def briefly(self) -> Iterator[None]:
        """Within the block, scenarios are measured for ``side_duration``."""
        saved = self.duration
        self.duration = min(self.options.side_duration, saved)
        try:
            yield
        finally:
            self.duration = saved

    @contextlib.contextmanager
    def elsewhere(
        self, db_pids: Callable[[], Sequence[int]], *, phase: str, extra: dict[str, Any]
    ) -> Iterator[None]:
        """Within the block, the database is ``db_pids``' and each result is of
        ``phase``, with ``extra`` among its figures."""
        saved = self.db_pids, self.phase, self.extra
        self.db_pids, self.phase, self.extra = db_pids, phase, extra
        try:
            yield
        finally:
            self.db_pids, self.phase, self.extra = saved

    def _wrk(self, url: str, duration: float, connections: int, load: Load) -> WrkResult:
        return run_wrk(
            wrk_command(
                url,
                duration=duration,
                connections=connections,
                threads=self.options.threads,
                script=load.script,
                script_args=load.script_args(),
                timeout=self.options.timeout,
                headers=load.headers,
            )
        )

    def measure(
        self,
        service: Measurable,
        server: str,
        workers: int,
        load: Load,
        *,
        delay_ms: float = 0.0,
        warmup: bool = True,
        phase: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Result | None:
        connections = load.connections or self.options.connections
        url = service.url + load.path
        scenario = load.scenario
        try:
            self._settle(service, f"before {server} {scenario}")
            if warmup and self.options.warmup > 0:
                self._wrk(url, self.options.warmup, connections, load)
                self._settle(service, f"after the warm-up of {server} {scenario}")
            if load.before is not None:
                load.before()
            self.wait_quiet()
            app_pids = service.all_pids()
            start = self._cpu(app_pids)
            clock = time.monotonic()
            wrk = self._wrk(url, self.duration, connections, load)
            cpu = cpu_percent(start, self._cpu(app_pids), time.monotonic() - clock)
        except (WrkError, subprocess.TimeoutExpired) as error:
            where = f", database +{delay_ms:g} ms" if delay_ms else ""
            where += f", {phase} phase" if phase else ""
            self.notes.append(f"{server} {scenario} (workers {workers}{where}) failed: {error}")
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
            note=load.note,
            delay_ms=delay_ms,
            phase=phase or self.phase,
            extra={**self.extra, **(extra or {})},
        )
        self.results.append(result)
        print_result(result)
        return result

    def fan_out(
        self, service: Measurable, resource: str, subscribers: int, *, drain: float
    ) -> Result | None:
        """``benchmarks/sse_client.py`` against ``service``: ``subscribers`` SSE
        streams of ``resource`` while one writer POSTs for the run's duration."""
        self._settle(service, f"before the {subscribers} subscribers")
        self.wait_quiet()
        command = [
            sys.executable, "-m", "benchmarks.sse_client", "--url", service.url,
            "--resource", resource, "--subscribers", str(subscribers),
            "--duration", str(self.options.duration), "--drain", str(drain),
            "--app-pids", ",".join(map(str, service.all_pids())),
            "--db-pids", ",".join(map(str, self.db_pids())),
        ]  # fmt: skip
        try:
            completed = subprocess.run(
                command,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
                timeout=self.options.duration + drain + 120,
            )
        except subprocess.TimeoutExpired as error:
            completed = subprocess.CompletedProcess(command, -1, "", f"timed out: {error}")
        if completed.returncode != 0:
            self.notes.append(f"change streams failed: {completed.stderr.strip()[-500:]}")
            print(f"  sse_client: FAILED\n{completed.stderr}", file=sys.stderr, flush=True)
            return None
        data = json.loads(completed.stdout.strip().splitlines()[-1])
        if not data["all_received"]:
            self.notes.append(
                f"change streams: {data['held']} of {subscribers} subscribers held to the end "
                f"(refused: {data['refused'] or 'none'}; ended: {data['ended'] or 'none'}), "
                f"{data['complete']} received every event in order, "
                f"{data['missed']:,} deliveries missed, {data['write_errors']} writes failed"
            )
        workers_now = service.workers()
        result = Result(
            server="shoal",
            scenario="stream_fanout",
            workers=len(workers_now),
            connections=subscribers,
            requests=data["deliveries"],
            seconds=data["seconds"],
            requests_per_s=data["deliveries_per_s"],
            p50_ms=data["p50_ms"],
            p99_ms=data["p99_ms"],
            errors=data["missed"] + data["write_errors"] + subscribers - data["held"],
            worker_rss_mb=[round(peak_rss_mb(pid), 1) for pid in workers_now],
            worker_current_rss_mb=[round(rss_mb(pid), 1) for pid in workers_now],
            cpu_percent=data["cpu_percent"],
            note=f"{subscribers} SSE subscribers of /{resource}/_stream, one writer",
            phase="streams",
            extra={key: data[key] for key in STREAM_FIGURES},
        )
        self.results.append(result)
        print_result(result)
        return result

    def driver_ceiling(self, mongodb_uri: str, database: str, ids_file: Path) -> Result | None:
        """``benchmarks/driver.py``: concurrent ``find_one`` from one process."""
        concurrency = self.options.connections
        command = [
            sys.executable, "-m", "benchmarks.driver", "--uri", mongodb_uri,
            "--database", database, "--ids-file", str(ids_file),
            "--concurrency", str(concurrency), "--duration", str(self.options.duration),
            "--warmup", str(self.options.warmup),
        ]  # fmt: skip
        self.wait_quiet()
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
        cpu = cpu_percent(start, self._cpu([]), elapsed)
        # The driver is a reaped child: its CPU is counted as "wrk"; it is the app here.
        cpu["app"], cpu["wrk"] = cpu["wrk"], 0.0
        if completed.returncode != 0:
            self.notes.append(f"driver ceiling failed: {completed.stderr.strip()[-500:]}")
            print(f"  driver: FAILED\n{completed.stderr}", file=sys.stderr, flush=True)
            return None
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
            phase=self.phase,
            extra=dict(self.extra),
        )
        self.results.append(result)
        print_result(result)
        return result

    def wait_quiet(self) -> None:
        """Wait (within the run's budget) while others' processes keep the machine busy."""
        limit = min(self.options.quiet_wait, self.quiet_budget)
        started = time.monotonic()
        while time.monotonic() - started < limit:
            before = machine_busy_seconds()
            time.sleep(IDLE_SAMPLE)
            busy = (machine_busy_seconds() - before) * 100 / IDLE_SAMPLE
            if busy < self.options.busy_percent:
                break
        self.quiet_budget -= time.monotonic() - started

    def _settle(self, service: Measurable, when: str) -> None:
        waited = service.wait_idle()
        if waited > 5:
            self.notes.append(f"{service.name} was still busy {when}: waited {waited:.0f}s")

    def _cpu(self, app_pids: Sequence[int]) -> CpuClock:
        return (
            cpu_seconds(app_pids),
            cpu_seconds(self.db_pids()),
            children_cpu(),
            machine_busy_seconds(),
        )
