"""How fairly each of hypercorn's event loops serves a burst of many connections:
the bare ASGI app (``apps/fairness.py``, which counts what it answers per
connection) on one worker under ``worker_class = "uvloop"`` and then
``"asyncio"``, each driven by wrk at ``--connections`` for ``--duration`` seconds::

    python -m benchmarks.loop_fairness --connections 1000 --duration 10 --trace 3

For each loop it prints wrk's figures (requests/s, p50, p99, errors), then what
the server saw: how many connections it served, the requests each got (least,
median, most, and their coefficient of variation), and how long after the first
request each connection's own first request was read. With ``--trace SECONDS``
it also runs strace on the worker for that long in the middle of the run and
counts its epoll waits (how many ready events each returned, and how many
waited at all) and its accepts: how the loop takes its work from the kernel.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import servers
from .wrk import run_wrk, wrk_command

LOOPS = ("uvloop", "asyncio")
_SYSCALL = re.compile(r"^(?:\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+)")


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def served(record: dict[str, Any]) -> dict[str, float]:
    """Per connection: requests answered and the delay to its first request."""
    counts = [int(count) for count in record["counts"].values()]
    firsts = [float(seen) for seen in record["first_seen"].values()]
    start = min(firsts, default=0.0)
    delays = [1000 * (seen - start) for seen in firsts]
    mean = statistics.fmean(counts) if counts else 0.0
    return {
        "connections": len(counts),
        "requests_min": min(counts, default=0),
        "requests_median": statistics.median(counts) if counts else 0,
        "requests_max": max(counts, default=0),
        "requests_cv": statistics.pstdev(counts) / mean if mean else 0.0,
        "first_request_p50_ms": _percentile(delays, 0.5),
        "first_request_p99_ms": _percentile(delays, 0.99),
        "first_request_max_ms": max(delays, default=0.0),
    }


def syscalls(text: str) -> dict[str, float]:
    """Epoll waits and accepts in an strace log (``-e trace=...``)."""
    batches: list[int] = []
    blocking = accepted = refused = 0
    for line in text.splitlines():
        match = _SYSCALL.match(line.strip())
        if match is None:
            continue
        name, arguments, result = match[1], match[2], int(match[3])
        if name.startswith("epoll"):
            batches.append(max(0, result))
            timeout = arguments.rsplit(",", 1)[-1].strip()
            if name == "epoll_pwait":  # epoll_pwait(fd, events, max, timeout, sigmask, size)
                timeout = arguments.split(",")[-3].strip()
            blocking += timeout not in {"0", ""}
        elif name.startswith("accept"):
            if result >= 0:
                accepted += 1
            else:
                refused += 1
    return {
        "epoll_waits": len(batches),
        "epoll_waits_that_could_block": blocking,
        "events_per_wait_mean": statistics.fmean(batches) if batches else 0.0,
        "events_per_wait_p99": _percentile(batches, 0.99),
        "events_per_wait_max": max(batches, default=0),
        "accepted": accepted,
        "accepts_would_block": refused,
    }


def _trace(pid: int, seconds: float, out: Path, delay: float) -> None:
    time.sleep(delay)
    strace = shutil.which("strace")
    if strace is None:
        return
    command = [strace, "-f", "-qq", "-o", str(out), "-p", str(pid),
               "-e", "trace=epoll_wait,epoll_pwait,epoll_pwait2,accept,accept4"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    process.terminate()
    process.wait(10)


def measure(loop: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    toml = servers.derived_toml(workdir, f"fairness-{loop}", worker_class=loop)
    service = servers.hypercorn(
        workdir, f"fairness-{loop}", 1, "benchmarks.apps.fairness:app", toml
    )
    trace_path = workdir / f"strace-{loop}.txt"
    with service:
        worker = service.workers()[0]
        tracer = None
        if args.trace:
            delay = max(0.0, (args.duration - args.trace) / 2)
            tracer = threading.Thread(target=_trace, args=(worker, args.trace, trace_path, delay))
            tracer.start()
        command = wrk_command(
            service.url + "/items/x",
            duration=args.duration,
            connections=args.connections,
            threads=args.threads,
            timeout=args.timeout,
        )
        wrk = run_wrk(command)
        if tracer is not None:
            tracer.join()
        with urllib.request.urlopen(service.url + "/_fairness", timeout=30) as answer:  # noqa: S310
            record = json.loads(answer.read())
    figures: dict[str, Any] = {
        "loop": loop,
        "requests_per_s": wrk.requests_per_s,
        "p50_ms": wrk.p50_ms,
        "p99_ms": wrk.p99_ms,
        "errors": wrk.errors,
    }
    figures.update(served(record))
    if trace_path.exists():
        figures.update(syscalls(trace_path.read_text(encoding="utf-8", errors="replace")))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loop_fairness")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="wrk's timeout, seconds")
    parser.add_argument("--trace", type=float, default=0.0, help="seconds of strace (0: none)")
    parser.add_argument("--loops", default=",".join(LOOPS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shoal-fairness-") as name:
        for loop in args.loops.split(","):
            figures = measure(loop, Path(name), args)
            print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
