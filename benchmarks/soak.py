"""A soak run: mixed load at about half of the measured capacity, for a long
time, through two `shoal serve` instances behind nginx::

    python -m benchmarks.soak                    # 20 minutes, after a short capacity run
    python -m benchmarks.soak --minutes 2 --warmup 0.5

It starts its own stack (``LocalStack``: Redis, the MongoDB stand-in, two
one-worker instances of the bookstore's resources, nginx), measures how many
requests a second the mix gets answered with 32 clients sending back to back
(``--capacity-seconds``), then sends the mix at half that rate, open loop (on
a clock, whether or not earlier answers came), plus one login a second and a
change-stream subscriber for the whole run. The mix: anonymous reads of a
book and of a page of books, reads with the login's bearer token, POSTs with
an API key with and without an ``Idempotency-Key``.

Every ``--sample`` seconds it notes each worker's RSS and open file
descriptors (from /proc), each instance's event-loop lag (its /metrics:
``shoal_event_loop_lag_seconds``), and the answers of the interval (errors,
p50, p99). At the end it judges the targets on what came after the warm-up:
RSS grown by at most 5 %, descriptors flat, no errors, no stall of the event
loop over 100 ms; prints the figures, keeps them as JSON in
``benchmarks/results/``, and with ``--docs`` writes them into the soak section
of docs/benchmarks.md, with ``--plot`` a PNG (matplotlib: the bench extras).
Nothing here is a test; ``tests/test_benchmarks.py`` runs it for seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .docs import SOAK_END, SOAK_START
from .local_stack import EXAMPLE_CONFIG, ROOT, LocalStack
from .proc import children, cmdline, cpu_seconds, machine_busy_seconds, rss_mb

RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
#: The soak section of docs/benchmarks.md lies between these lines (which
#: scripts/bench keeps when it writes the rest of the page).
START, END = SOAK_START, SOAK_END
PASSWORD = "a soak run's password"  # noqa: S105 (a user the run makes, on loopback)
METRICS_TOKEN = "soak-metrics-token-0123456789"  # noqa: S105
#: Kinds of request in the mix and their weights (logins come once a second).
MIX = {"item": 10, "list": 3, "bearer": 2, "plain": 2, "keyed": 1}
MIX_NAMES = {
    "item": "anonymous reads of a book",
    "list": "of a page of ten",
    "bearer": "pages read with a bearer token",
    "plain": "POSTs with an API key",
    "keyed": "POSTs with an API key and an `Idempotency-Key`",
}
#: Targets, judged after the warm-up.
RSS_GROWTH = 0.05
STALL = 0.1
#: Open requests at most; a send that would go beyond counts as an error.
MAX_IN_FLIGHT = 256
CAPACITY_CLIENTS = 32
SEEDED = 200


# --- the deployment -----------------------------------------------------------------------


def soak_config(directory: Path) -> Path:
    """The bookstore's resources, books cached and streamed; metrics on a token."""
    resources = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))["resources"]
    resources["books"] = {**resources["books"], "cache_ttl": 60, "streams": True}
    raw = {
        "environment": "production",
        "mongodb": {"database": f"soak_{uuid.uuid4().hex[:8]}"},
        "resources": resources,
        "metrics": {"token": METRICS_TOKEN},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "shoal.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _shoal(stack: LocalStack, arguments: list[str], stdin: str = "") -> str:
    shoal = Path(sys.executable).with_name("shoal")
    env = {**stack.instance_env(0)}
    result = subprocess.run(
        [str(shoal), *arguments, "--config", str(stack.config)],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"shoal {arguments[0]}: {result.stderr}")
    return result.stdout


@dataclass
class Deployment:
    stack: LocalStack
    api_key: str
    books: list[str]  # ids of seeded books, read by the mix

    def workers(self) -> dict[str, int]:
        """Each worker's name and pid (children of the instances, not helpers)."""
        found = {}
        for index in range(self.stack.instance_count):
            pids = [
                pid
                for pid in children(self.stack.instance(index).pid)
                if "resource_tracker" not in cmdline(pid)
            ]
            for number, pid in enumerate(pids):
                found[f"{self.stack.instance_name(index)}/w{number + 1}"] = pid
        return found


def deploy(stack: LocalStack) -> Deployment:
    _shoal(
        stack, ["users", "create", "soak", "--role", "editor", "--password-stdin"], PASSWORD + "\n"
    )
    key = next(
        word for word in _shoal(stack, ["apikeys", "create", "--role", "editor"]).split()
        if word.startswith("shoal_")
    )  # fmt: skip
    books = []
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": key}, timeout=10) as http:
        for start in range(0, SEEDED, 50):
            batch = [{"title": f"Seeded {n}", "year": 1900 + n} for n in range(start, start + 50)]
            response = http.post("/books", json=batch)
            response.raise_for_status()
            books += [item["_id"] for item in response.json()["_items"]]
    return Deployment(stack, key, books)


# --- the load ------------------------------------------------------------------------------


@dataclass
class Window:
    """The answers of one sampling interval."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    events: int = 0


class Load:
    """The mix, sent through nginx, into the current window."""

    def __init__(self, deployment: Deployment, http: httpx.AsyncClient) -> None:
        self.deployment = deployment
        self.http = http
        self.window = Window()
        self.token: str | None = None
        self.in_flight = 0
        self.sent = 0
        self.kinds = list(MIX)
        self.weights = list(MIX.values())

    async def one(self, kind: str) -> None:
        deployment, http = self.deployment, self.http
        key = {"X-API-Key": deployment.api_key}
        started = time.monotonic()
        self.in_flight += 1
        self.sent += 1
        try:
            if kind == "item":
                response = await http.get(f"/books/{random.choice(deployment.books)}")
            elif kind == "list":
                response = await http.get("/books", params={"max_results": 10})
            elif kind == "bearer":
                token = self.token or ""
                headers = {"Authorization": f"Bearer {token}"}
                response = await http.get("/books", params={"max_results": 5}, headers=headers)
            elif kind == "plain":
                response = await http.post("/books", json={"title": "soak"}, headers=key)
            elif kind == "keyed":
                headers = {**key, "Idempotency-Key": str(uuid.uuid4())}
                response = await http.post("/books", json={"title": "soak keyed"}, headers=headers)
            else:
                response = await http.post(
                    "/auth/login", json={"username": "soak", "password": PASSWORD}
                )
                if response.status_code == 200:
                    self.token = response.json()["access_token"]
        except httpx.HTTPError as error:
            self.window.errors.append(f"{kind}: {type(error).__name__}")
            return
        finally:
            self.in_flight -= 1
        if response.status_code >= 300:
            self.window.errors.append(f"{kind}: {response.status_code}")
        else:
            self.window.latencies.append(time.monotonic() - started)

    def pick(self) -> str:
        return random.choices(self.kinds, self.weights)[0]


async def capacity(deployment: Deployment, seconds: float) -> float:
    """Requests a second the mix gets answered with clients sending back to back."""
    async with httpx.AsyncClient(
        base_url=deployment.stack.url,
        timeout=30,
        limits=httpx.Limits(max_connections=CAPACITY_CLIENTS),
    ) as http:
        load = Load(deployment, http)
        await load.one("login")
        ends = time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < ends:
                await load.one(load.pick())

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(CAPACITY_CLIENTS)))
        return len(load.window.latencies) / (time.monotonic() - started)


async def subscribe(url: str, load: Load, ends: float) -> None:
    """One change-stream subscriber for the whole run; it counts the events."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < ends:
            try:
                async with http.stream("GET", "/books/_stream") as response:
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            load.window.events += 1
                        if time.monotonic() >= ends:
                            return
            except httpx.HTTPError as error:
                load.window.errors.append(f"stream: {type(error).__name__}")
                await asyncio.sleep(1)


# --- sampling ---------------------------------------------------------------------------------


@dataclass
class Sample:
    minute: float
    rss_mb: dict[str, float]
    fds: dict[str, int]
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    events: int
    #: Each instance's count of event-loop lags over STALL so far, and the longest.
    stalls: dict[str, float]
    longest_lag_ms: dict[str, float]
    error_kinds: list[str] = field(default_factory=list)
    #: Cores busy, on average since the previous sample, with the stack and this
    #: harness, and with every other process of the machine.
    cpu_stack: float = 0.0
    cpu_other: float = 0.0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def loop_lag(url: str) -> tuple[float, float]:
    """(lags over STALL so far, the longest lag in ms) of an instance's workers."""
    response = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    response.raise_for_status()
    count = under = longest = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "shoal_event_loop_lag_seconds_count":
                count += sample.value
            elif (
                sample.name == "shoal_event_loop_lag_seconds_bucket"
                and float(sample.labels["le"]) == STALL
            ):
                under += sample.value
            elif sample.name == "shoal_event_loop_lag_max_seconds":
                longest = max(longest, sample.value * 1000)
    return count - under, longest


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


@dataclass
class Clock:
    """CPU seconds used so far: by the machine, and by the stack and this harness."""

    at: float
    machine: float
    stack: float

    @classmethod
    def read(cls, deployment: Deployment) -> Clock:
        pids = [os.getpid()]
        for process in deployment.stack.processes.values():
            pids.append(process.pid)
            for child in children(process.pid):
                pids += [child, *children(child)]
        return cls(time.monotonic(), machine_busy_seconds(), cpu_seconds(pids))


def sample(deployment: Deployment, window: Window, started: float, clocks: list[Clock]) -> Sample:
    """The figures now and of the window; ``clocks`` gets this sample's CPU clock."""
    workers = deployment.workers()
    clocks.append(Clock.read(deployment))
    cpu_stack = cpu_other = 0.0
    if len(clocks) > 1:
        before, now = clocks[-2], clocks[-1]
        seconds = max(now.at - before.at, 1e-6)
        cpu_stack = (now.stack - before.stack) / seconds
        cpu_other = max(0.0, (now.machine - before.machine) / seconds - cpu_stack)
    lags = {
        deployment.stack.instance_name(index): loop_lag(deployment.stack.instance_url(index))
        for index in range(deployment.stack.instance_count)
    }
    return Sample(
        minute=(time.monotonic() - started) / 60,
        rss_mb={name: round(rss_mb(pid), 1) for name, pid in workers.items()},
        fds={name: open_fds(pid) for name, pid in workers.items()},
        requests=len(window.latencies) + len(window.errors),
        errors=len(window.errors),
        p50_ms=round(percentile(window.latencies, 0.5), 2),
        p99_ms=round(percentile(window.latencies, 0.99), 2),
        events=window.events,
        stalls={name: lag[0] for name, lag in lags.items()},
        longest_lag_ms={name: round(lag[1], 1) for name, lag in lags.items()},
        error_kinds=sorted(set(window.errors))[:10],
        cpu_stack=round(cpu_stack, 2),
        cpu_other=round(cpu_other, 2),
    )


async def soak(
    deployment: Deployment, rate: float, seconds: float, every: float
) -> tuple[list[Sample], int]:
    """Send the mix at ``rate`` for ``seconds``; a sample every ``every`` seconds.
    Also how many sends found MAX_IN_FLIGHT requests open (counted as errors)."""
    samples: list[Sample] = []
    clocks: list[Clock] = []
    skipped = 0
    started = time.monotonic()
    ends = started + seconds
    async with httpx.AsyncClient(
        base_url=deployment.stack.url,
        timeout=30,
        limits=httpx.Limits(max_connections=MAX_IN_FLIGHT),
    ) as http:
        load = Load(deployment, http)
        await load.one("login")
        tasks: set[asyncio.Task[None]] = set()
        subscriber = asyncio.create_task(subscribe(deployment.stack.url, load, ends))
        samples.append(await asyncio.to_thread(sample, deployment, load.window, started, clocks))
        load.window = Window()
        tick, due, next_sample, next_login = 0.05, 0.0, started + every, started + 1
        while (now := time.monotonic()) < ends:
            due += rate * tick
            while due >= 1:
                due -= 1
                if load.in_flight >= MAX_IN_FLIGHT:
                    skipped += 1
                    load.window.errors.append("not sent: too many open requests")
                    continue
                task = asyncio.create_task(load.one(load.pick()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if now >= next_login:
                next_login += 1
                task = asyncio.create_task(load.one("login"))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if now >= next_sample:
                next_sample += every
                window, load.window = load.window, Window()
                samples.append(await asyncio.to_thread(sample, deployment, window, started, clocks))
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - now)))
        await asyncio.gather(*tasks)
        window, load.window = load.window, Window()
        samples.append(await asyncio.to_thread(sample, deployment, window, started, clocks))
        await subscriber
    return samples, skipped


# --- the verdict ------------------------------------------------------------------------------


@dataclass
class Report:
    minutes: float
    warmup_minutes: float
    capacity: float
    rate: float
    workers: list[str]
    samples: list[Sample]
    machine: str
    verdicts: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def judge(self) -> None:
        after = [s for s in self.samples if s.minute >= self.warmup_minutes] or self.samples[-1:]
        first, last = after[0], after[-1]
        growth = {
            name: (last.rss_mb[name] - first.rss_mb[name]) / first.rss_mb[name]
            for name in self.workers
            if first.rss_mb.get(name) and name in last.rss_mb
        }
        worst = max(growth.values(), default=0.0)
        each = ", ".join(f"{n} {g * 100:+.1f} %" for n, g in growth.items())
        self.verdicts["rss"] = (
            worst <= RSS_GROWTH,
            f"RSS after the warm-up grew by at most {worst * 100:.1f} % ({each})",
        )
        spread = {
            name: (min(s.fds[name] for s in after), max(s.fds[name] for s in after))
            for name in self.workers
        }
        self.verdicts["fds"] = (
            all(low == high for low, high in spread.values()),
            "open descriptors after the warm-up: "
            + ", ".join(
                f"{n} {lo} to {hi}" if lo != hi else f"{n} {lo}" for n, (lo, hi) in spread.items()
            ),
        )
        errors = sum(s.errors for s in self.samples)
        requests = sum(s.requests for s in self.samples)
        kinds = sorted({kind for s in self.samples for kind in s.error_kinds})
        self.verdicts["errors"] = (
            errors == 0,
            f"{errors} errors in {requests} requests" + (f" ({', '.join(kinds)})" if kinds else ""),
        )
        stalls = {name: last.stalls[name] - first.stalls[name] for name in first.stalls}
        longest = max((max(s.longest_lag_ms.values()) for s in self.samples), default=0.0)
        self.verdicts["stalls"] = (
            not any(stalls.values()),
            f"event-loop lags over {STALL * 1000:.0f} ms after the warm-up: "
            + ", ".join(f"{n} {int(c)}" for n, c in stalls.items())
            + f"; the longest lag of the whole run (start-up included): {longest:.1f} ms",
        )

    def lines(self) -> list[str]:
        after = [s for s in self.samples if s.minute >= self.warmup_minutes] or self.samples
        p99 = [s.p99_ms for s in after if s.requests]
        out = [
            f"Soak: {self.minutes:g} min of mixed load at {self.rate:.0f} requests/s "
            f"(half of the {self.capacity:.0f} requests/s measured), "
            f"warm-up {self.warmup_minutes:g} min; {self.machine}",
            f"p50 {statistics.median(s.p50_ms for s in after if s.requests):.1f} ms, "
            f"p99 per {len(after)} intervals after the warm-up: median "
            f"{statistics.median(p99) if p99 else 0:.1f} ms, worst {max(p99, default=0):.1f} ms; "
            f"{sum(s.events for s in self.samples)} stream events received",
        ]
        out.append(self.cpu_line(after))
        for name, (met, text) in self.verdicts.items():
            out.append(f"{'met' if met else 'MISSED':>6}  {name}: {text}")
        return out

    def cpu_line(self, after: list[Sample]) -> str:
        """What else the machine ran: the cores other processes kept busy, overall
        and in the intervals in which an event loop lagged over STALL."""
        stalled: list[float] = []
        calm: list[float] = []
        for previous, current in itertools.pairwise(self.samples):
            if current.minute < self.warmup_minutes:
                continue
            new = sum(current.stalls.values()) - sum(previous.stalls.values())
            (stalled if new > 0 else calm).append(current.cpu_other)
        stack = [s.cpu_stack for s in after]
        line = (
            f"CPU after the warm-up: the stack and the harness {statistics.fmean(stack):.2f} "
            f"cores on average; other processes {statistics.fmean(stalled + calm or [0.0]):.2f} "
            f"(at most {max(stalled + calm, default=0.0):.2f})"
        )
        if stalled:
            line += (
                f"; in the {len(stalled)} intervals with a lag over {STALL * 1000:.0f} ms, "
                f"other processes {statistics.fmean(stalled):.2f} cores, in the others "
                f"{statistics.fmean(calm or [0.0]):.2f}"
            )
        return line


def markdown(report: Report, plot: str | None) -> str:
    first = next((s for s in report.samples if s.minute >= report.warmup_minutes), None)
    last = report.samples[-1]
    rows = [
        "| worker | RSS at start | RSS after warm-up | RSS at end "
        "| fds after warm-up | fds at end |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in report.workers:
        start = report.samples[0].rss_mb.get(name, 0.0)
        warm = first.rss_mb.get(name, 0.0) if first else 0.0
        rows.append(
            f"| {name} | {start:.1f} MB | {warm:.1f} MB | {last.rss_mb.get(name, 0.0):.1f} MB | "
            f"{first.fds.get(name, 0) if first else 0} | {last.fds.get(name, 0)} |"
        )
    verdicts = [
        f"| {name} | {'met' if met else '**missed**'} | {text} |"
        for name, (met, text) in report.verdicts.items()
    ]
    lines = report.lines()
    total = sum(MIX.values())
    mix = ", ".join(f"{MIX_NAMES[kind]} ({weight} in {total})" for kind, weight in MIX.items())
    parts = [
        START,
        "## Soak",
        "",
        "`python -m benchmarks.soak` (not in CI) runs a stack of its own: Redis, the MongoDB "
        "stand-in, two `shoal serve` instances of one worker each (the bookstore's resources, "
        "books cached and streamed) and nginx in front. It measures how many requests a "
        f"second the mix gets answered with {CAPACITY_CLIENTS} clients sending back to back, "
        f"then sends it at half that rate, on a clock: {mix}; besides, a login a second "
        "and one change-stream subscriber. It samples each worker's RSS and open "
        "descriptors, each instance's event-loop lag (`shoal_event_loop_lag_seconds`), the "
        "answers and the CPU used, and judges after the warm-up: RSS grown by at most "
        f"{RSS_GROWTH * 100:.0f} %, descriptors flat, no errors, no lag over "
        f"{STALL * 1000:.0f} ms.",
        "",
        lines[0].removeprefix("Soak: ") + ".",
        "",
        lines[1] + ".",
        "",
        lines[2] + ". A lag counts the worker's own work and its waits for a CPU: these "
        "figures say how busy other processes kept the machine meanwhile.",
        "",
        *rows,
        "",
        "| target | | figures |",
        "| --- | --- | --- |",
        *verdicts,
        "",
    ]
    if plot:
        parts += [f"![RSS, descriptors, latency and CPU over the soak]({plot})", ""]
    parts.append(END)
    return "\n".join(parts)


def write_docs(report: Report, docs: Path, plot: str | None) -> None:
    text = docs.read_text(encoding="utf-8") if docs.exists() else ""
    section = markdown(report, plot)
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    docs.write_text(text, encoding="utf-8")


def draw(report: Report, path: Path) -> None:
    # matplotlib comes with the bench extras only.
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    minutes = [s.minute for s in report.samples]
    figure, (rss, fds, latency, cpu) = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for name in report.workers:
        rss.plot(minutes, [s.rss_mb.get(name, 0.0) for s in report.samples], label=name)
        fds.plot(minutes, [s.fds.get(name, 0) for s in report.samples], label=name)
    latency.plot(minutes, [s.p99_ms for s in report.samples], label="p99 of the interval")
    latency.plot(minutes, [s.p50_ms for s in report.samples], label="p50 of the interval")
    cpu.plot(minutes, [s.cpu_stack for s in report.samples], label="the stack and the harness")
    cpu.plot(minutes, [s.cpu_other for s in report.samples], label="other processes")
    for axis in (rss, fds, latency, cpu):
        axis.axvline(report.warmup_minutes, color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    rss.set_ylabel("RSS (MB)")
    fds.set_ylabel("open descriptors")
    latency.set_ylabel("latency (ms)")
    cpu.set_ylabel("cores busy")
    cpu.set_xlabel("minutes (dotted: end of the warm-up)")
    rss.set_title(f"Soak: {report.rate:.0f} requests/s through nginx to two instances")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def machine() -> str:
    cpus = os.cpu_count() or 0
    return f"{cpus} CPUs, Python {sys.version.split()[0]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="load time (20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes not judged (2)")
    parser.add_argument("--capacity-seconds", type=float, default=30.0, help="capacity run (30)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples (10)")
    parser.add_argument("--docs", type=Path, help="write the soak section of this file")
    parser.add_argument("--plot", type=Path, help="write a PNG of the run (needs matplotlib)")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where the JSON figures go (benchmarks/results)",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.warmup < 0 or args.warmup >= args.minutes:
        parser.error("--minutes must be positive and longer than --warmup")
    workdir = Path(tempfile.mkdtemp(prefix="shoal-soak-"))
    env = {"SHOAL_SECRET_KEY": secrets.token_hex(32)}
    stack = LocalStack(
        workdir, instances=2, workers=1, config=soak_config(workdir / "config"), env=env
    )
    with stack:
        deployment = deploy(stack)
        measured = asyncio.run(capacity(deployment, args.capacity_seconds))
        rate = measured / 2
        print(f"capacity {measured:.0f} requests/s; soaking at {rate:.0f} for {args.minutes:g} min")
        samples, _ = asyncio.run(soak(deployment, rate, args.minutes * 60, args.sample))
        workers = sorted(deployment.workers())
    report = Report(args.minutes, args.warmup, measured, rate, workers, samples, machine())
    report.judge()
    print("\n".join(report.lines()))
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(asdict(report), indent=1), encoding="utf-8")
    print(f"figures: {out}")
    if args.plot:
        draw(report, args.plot)
    if args.docs:
        relative = os.path.relpath(args.plot, args.docs.parent) if args.plot else None
        write_docs(report, args.docs, relative)
    return 0 if all(met for met, _ in report.verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
