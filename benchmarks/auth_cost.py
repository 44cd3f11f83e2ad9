"""What a bearer token costs on the authenticated read path, before and after a change.

    python benchmarks/auth_cost.py                  # this checkout only
    python benchmarks/auth_cost.py --baseline main  # also a git ref's src/, for a ratio

For each code tree it starts redis-server, the MongoDB stand-in and `shoal serve`
(one worker) on loopback, makes a user with `shoal users create`, logs in over
HTTP, writes one book, and drives ``GET /books/<id>`` with ``Authorization:
Bearer <token>`` with wrk (books need the editor role to be read here, so every
request checks the token and its revocation). It prints, per tree: requests per
second, requests per CPU-second of the Shoal processes (the server and its worker:
the figure that says what a request costs, whatever else runs on the machine), and
the Redis commands per request (``INFO commandstats``). Runs alternate between the
trees and the medians are reported. Self-contained on purpose: it uses no other
module of ``benchmarks/``.

A baseline tree is ``git archive REF src`` unpacked in a temporary directory and
put first on the server's ``PYTHONPATH``; the tools (wrk, redis-server) and the
installed dependencies are the same for both.
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

import redis
import yaml

from shoal.storage.embedded import EmbeddedStore
from shoal.system import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret-key-0123456789abcdef"  # noqa: S105 - a throwaway server's
USER = ("bench-editor", "a long enough benchmark password")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    tree: str
    requests: int
    seconds: float
    cpu_seconds: float
    redis_calls: dict[str, float]
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


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait()


def commandstats(port: int) -> dict[str, int]:
    info: dict[str, Any] = redis.Redis(port=port).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}


def measure(tree: str, src: Path, workdir: Path, mongodb_uri: str, args: argparse.Namespace) -> Run:
    database = f"auth_cost_{os.getpid()}_{time.monotonic_ns()}"
    directory = workdir / f"{tree}-{time.monotonic_ns()}"
    directory.mkdir()
    path = config(directory / "shoal.yaml", database)
    with redis_server(directory) as redis_port:
        env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
        env.update(
            SHOAL_MONGODB_URI=mongodb_uri, SHOAL_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"
        )
        env["PYTHONPATH"] = str(src)
        shoal = [str(Path(sys.executable).with_name("shoal"))]
        used = subprocess.run(
            [sys.executable, "-c", "import shoal; print(shoal.__file__)"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not used.startswith(str(src)):
            raise RuntimeError(f"the {tree} tree is not the one imported: {used}")
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
            token = post(f"{url}/auth/login", {"username": USER[0], "password": USER[1]})[
                "access_token"
            ]
            book = post(f"{url}/books", {"title": "Dune"}, {"Authorization": f"Bearer {token}"})
            target = f"{url}/books/{book['_id']}"
            wrk(target, token, 2, args.connections)  # warm up
            calls_before, cpu_before = commandstats(redis_port), cpu_seconds(server.pid)
            requests, seconds, errors = wrk(target, token, args.seconds, args.connections)
            cpu = cpu_seconds(server.pid) - cpu_before
            calls_after = commandstats(redis_port)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    per_request = {
        name: (calls_after.get(name, 0) - calls_before.get(name, 0)) / requests
        for name in calls_after
        if calls_after.get(name, 0) != calls_before.get(name, 0)
    }
    return Run(tree, requests, seconds, cpu, per_request, errors)


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
    parser.add_argument("--rounds", type=int, default=3, help="runs per tree (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install {tool})")

    with tempfile.TemporaryDirectory(prefix="shoal-auth-cost-") as scratch:
        workdir = Path(scratch)
        trees: list[tuple[str, Path]] = [("this checkout", ROOT / "src")]
        if args.baseline:
            trees.insert(0, (args.baseline, baseline_tree(args.baseline, workdir)))
        runs: list[Run] = []
        with EmbeddedStore(workdir / "mongodb") as store:
            for round_number in range(args.rounds):
                for tree, src in trees:
                    run = measure(tree, src, workdir, store.uri, args)
                    runs.append(run)
                    print(
                        f"round {round_number + 1} {tree}: {run.per_second:.0f} req/s, "
                        f"{run.per_cpu_second:.0f} req/CPU-s, errors {run.errors}",
                        file=sys.stderr,
                    )

    print(f"GET /books/<id> with a bearer token; 1 worker, wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s; median of {args.rounds} runs")  # fmt: skip
    medians: dict[str, float] = {}
    for tree, _ in trees:
        mine = [run for run in runs if run.tree == tree]
        per_cpu = statistics.median(run.per_cpu_second for run in mine)
        medians[tree] = per_cpu
        calls = ", ".join(
            f"{name} {value:.2f}"
            for name, value in sorted(mine[-1].redis_calls.items())
            if value >= 0.005  # not this script's own INFO
        )
        print(
            f"  {tree:>14}: {statistics.median(run.per_second for run in mine):7.0f} req/s  "
            f"{per_cpu:7.0f} req/CPU-s  errors {sum(run.errors for run in mine)}  "
            f"Redis calls per request: {calls}"
        )
    if args.baseline:
        ratio = medians["this checkout"] / medians[args.baseline]
        print(f"  req/CPU-s, this checkout / {args.baseline}: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
