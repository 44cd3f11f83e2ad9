"""What OpenTelemetry tracing costs a request, off and on (docs/decisions/0026-opentelemetry.md).

    python benchmarks/tracing_cost.py                  # this checkout: off, on, on unsampled
    python benchmarks/tracing_cost.py --baseline main  # also a git ref's src/ (no tracing)

For each variant it starts redis-server and `shoal serve` (one worker) on
loopback, on the MongoDB stand-in, makes a user with `shoal users create`, logs
in over HTTP, writes one book, and drives ``GET /books/<id>`` with
``Authorization: Bearer <token>`` with wrk (books need the editor role here, so
every request checks the token in Redis and reads MongoDB: with tracing on, a
server span and two client spans). Variants:

- ``off``: tracing off (the default);
- ``on``: ``SHOAL_TRACING_ENABLED=true``, every trace sampled and exported over
  OTLP/HTTP to a receiver process on loopback that discards it (its CPU is not
  counted; the exporter's is, in the worker's own thread);
- ``on, not exported``: ``OTEL_TRACES_EXPORTER=none``: spans are recorded,
  then dropped (what the export itself costs is the difference to ``on``);
- ``on, unsampled``: ``OTEL_TRACES_SAMPLER=always_off``: spans are made but
  neither recorded nor exported;
- with ``--baseline REF``: that ref's ``src/`` (``git archive``), for what off
  costs against a tree without tracing.

It prints, per variant, requests per second and requests per CPU-second of the
Shoal processes (the server and its worker: what a request costs, whatever else
runs on the machine), the CPU microseconds per request, and the difference to
``off``. Runs alternate between the variants and medians are reported.
Self-contained on purpose, like ``auth_cost.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shoal.storage.embedded import EmbeddedStore
from shoal.system import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret-key-0123456789abcdef"  # noqa: S105 - a throwaway server's
USER = ("bench-editor", "a long enough benchmark password")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: An OTLP/HTTP receiver that answers every export with 200 and keeps nothing.
SINK = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


@dataclass(frozen=True)
class Variant:
    name: str
    src: Path
    env: dict[str, str]
    sink: bool = False


@dataclass(frozen=True)
class Run:
    variant: str
    requests: int
    seconds: float
    cpu_seconds: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.cpu_seconds


def config(path: Path, database: str) -> Path:
    example = yaml.safe_load((ROOT / "examples" / "bookstore" / "shoal.yaml").read_text())
    books = example["resources"]["books"]
    books.update(public_methods=[], public_item_methods=[], allowed_roles=["editor"])
    raw = {
        "environment": "production",
        "secret_key": SECRET,
        "log_level": "WARNING",
        "mongodb": {"database": database},
        "resources": {"books": books},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every live descendant, in seconds."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) == pid or _descends(int(entry.name), pid):
                total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL built here
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"shoal serve exited with {process.returncode}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url + "/readyz", timeout=1) as response,  # noqa: S310
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} was not ready in {timeout:g}s")


_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)s", re.MULTILINE)


def wrk(url: str, token: str, seconds: int, connections: int) -> tuple[int, float, int]:
    """(requests, seconds, errors) of one wrk run."""
    result = subprocess.run(
        [
            "wrk", "-t2", f"-c{connections}", f"-d{seconds}s",
            "-H", f"Authorization: Bearer {token}", url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )  # fmt: skip
    match = _REQUESTS.search(result.stdout)
    if match is None:
        raise RuntimeError(f"cannot read wrk's report:\n{result.stdout}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", result.stdout)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", result.stdout)  # fmt: skip
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    return int(match.group(1)), float(match.group(2)), errors


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def helper(command: list[str], port: int) -> Iterator[None]:
    """A helper process (Redis, the sink) listening on ``port``; killed by its PID."""
    started = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not listening(port):
            if started.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start")
            time.sleep(0.05)
        yield
    finally:
        started.kill()
        started.wait()


def measure(variant: Variant, workdir: Path, mongodb_uri: str, args: argparse.Namespace) -> Run:
    database = f"tracing_cost_{os.getpid()}_{time.monotonic_ns()}"
    directory = workdir / f"run-{time.monotonic_ns()}"
    directory.mkdir()
    path = config(directory / "shoal.yaml", database)
    redis_port, sink_port = free_port(), free_port()
    redis_command = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
    with contextlib.ExitStack() as stack:
        stack.enter_context(helper(redis_command, redis_port))
        env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
        env = {key: value for key, value in env.items() if not key.startswith("OTEL_")}
        env.update(
            SHOAL_MONGODB_URI=mongodb_uri,
            SHOAL_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            PYTHONPATH=str(variant.src),
            **variant.env,
        )
        if variant.sink:
            stack.enter_context(helper([sys.executable, "-c", SINK, str(sink_port)], sink_port))
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
        shoal = [str(Path(sys.executable).with_name("shoal"))]
        used = subprocess.run(
            [sys.executable, "-c", "import shoal; print(shoal.__file__)"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not used.startswith(str(variant.src)):
            raise RuntimeError(f"{variant.name}: not the tree imported: {used}")
        subprocess.run(
            [*shoal, "users", "create", USER[0], "--role", "editor", "--password-stdin",
             "--config", str(path)],
            input=USER[1] + "\n", text=True, env=env, check=True, capture_output=True,
            timeout=60,
        )  # fmt: skip
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [*shoal, "serve", "--config", str(path), "--bind", f"127.0.0.1:{port}",
             "--workers", "1"],
            env=env, cwd=directory, stdout=subprocess.DEVNULL,
            stderr=(directory / "serve.stderr").open("wb"),
        )  # fmt: skip
        try:
            try:
                wait_ready(url, server)
            except RuntimeError as error:
                output = (directory / "serve.stderr").read_text(errors="replace")
                raise RuntimeError(f"{error}\n{output[-2000:]}") from None
            login = post(f"{url}/auth/login", {"username": USER[0], "password": USER[1]})
            token = login["access_token"]
            book = post(f"{url}/books", {"title": "Dune"}, {"Authorization": f"Bearer {token}"})
            target = f"{url}/books/{book['_id']}"
            wrk(target, token, 2, args.connections)  # warm up
            cpu_before = cpu_seconds(server.pid)
            requests, seconds, errors = wrk(target, token, args.seconds, args.connections)
            cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return Run(variant.name, requests, seconds, cpu, errors)


def baseline_tree(ref: str, workdir: Path) -> Path:
    """``src/`` of a git ref, unpacked under ``workdir``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"],
        capture_output=True,
        check=True,
    ).stdout
    target = workdir / "baseline"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REF", help="also measure this git ref's src/")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install {tool})")

    with tempfile.TemporaryDirectory(prefix="shoal-tracing-cost-") as scratch:
        workdir = Path(scratch)
        src = ROOT / "src"
        on = {"SHOAL_TRACING_ENABLED": "true"}
        variants = [
            Variant("off", src, {}),
            Variant("on", src, on, sink=True),
            Variant("on, not exported", src, {**on, "OTEL_TRACES_EXPORTER": "none"}),
            Variant("on, unsampled", src, {**on, "OTEL_TRACES_SAMPLER": "always_off"}, sink=True),
        ]
        if args.baseline:
            variants.insert(0, Variant(args.baseline, baseline_tree(args.baseline, workdir), {}))
        runs: list[Run] = []
        with EmbeddedStore(workdir / "mongodb") as store:
            for round_number in range(args.rounds):
                for variant in variants:
                    run = measure(variant, workdir, store.uri, args)
                    runs.append(run)
                    print(
                        f"round {round_number + 1} {variant.name}: {run.per_second:.0f} req/s, "
                        f"{run.per_cpu_second:.0f} req/CPU-s, errors {run.errors}",
                        file=sys.stderr,
                    )

    print(f"GET /books/<id> with a bearer token; 1 worker, wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s; median of {args.rounds} runs")  # fmt: skip
    per_cpu: dict[str, float] = {}
    for variant in variants:
        mine = [run for run in runs if run.variant == variant.name]
        per_cpu[variant.name] = statistics.median(run.per_cpu_second for run in mine)
    for variant in variants:
        mine = [run for run in runs if run.variant == variant.name]
        micros = 1e6 / per_cpu[variant.name]
        extra = micros - 1e6 / per_cpu["off"]
        spread = sorted(run.per_cpu_second for run in mine)
        print(
            f"  {variant.name:>16}: {statistics.median(run.per_second for run in mine):7.0f} "
            f"req/s  {per_cpu[variant.name]:7.0f} req/CPU-s ({spread[0]:.0f} to {spread[-1]:.0f})"
            f"  {micros:6.0f} µs CPU/request ({extra:+5.0f} µs against off)"
            f"  errors {sum(run.errors for run in mine)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
