"""Drive a server with ``wrk`` and read its report.

``run_wrk`` runs wrk with ``--latency`` and ``parse_wrk`` turns the text wrk
prints into a ``WrkResult``: requests/s, the 50th and 99th latency
percentiles, and the errors (non-2xx/3xx responses plus socket errors).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
)


class WrkError(RuntimeError):
    """wrk failed or printed something this parser does not understand."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx_3xx: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0

    @property
    def errors(self) -> int:
        """Every request that did not get a 2xx/3xx answer in time."""
        return (
            self.non_2xx_3xx
            + self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
        )


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse the report of ``wrk --latency`` (wrk 4.x)."""
    requests = _REQUESTS.search(text)
    rate = _RATE.search(text)
    if requests is None or rate is None:
        raise WrkError(f"not a wrk report:\n{text}")
    percentiles = {int(p): _ms(value, unit) for p, value, unit in _PERCENTILE.findall(text)}
    if 50 not in percentiles or 99 not in percentiles:
        raise WrkError(f"no latency distribution (run wrk with --latency):\n{text}")
    non_2xx = _NON_2XX.search(text)
    socket = _SOCKET.search(text)
    connect, read, write, timeout = (int(n) for n in socket.groups()) if socket else (0, 0, 0, 0)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=_ms(requests.group(2), requests.group(3)) / 1000.0,
        requests_per_s=float(rate.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkError("wrk is not installed (apt-get install wrk)")
    return binary


def wrk_command(
    url: str,
    *,
    duration: float,
    connections: int,
    threads: int,
    script: str | None = None,
    script_args: tuple[str, ...] = (),
    timeout: float = 2.0,
    headers: tuple[str, ...] = (),
) -> list[str]:
    command = [
        wrk_binary(),
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration))}s",
        f"--timeout={timeout:g}s",
        "--latency",
    ]
    command += [f"--header={header}" for header in headers]
    if script is not None:
        command.append(f"--script={LUA_DIR / script}")
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    return command


def run_wrk(command: list[str], *, grace: float = 30.0) -> WrkResult:
    """Run a command built by ``wrk_command`` and parse its report."""
    seconds = next(
        (float(arg.split("=", 1)[1].rstrip("s")) for arg in command if arg.startswith("--dur")),
        10.0,
    )
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + grace,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if completed.returncode != 0:
        raise WrkError(f"wrk exited with {completed.returncode}:\n{completed.stderr}")
    return parse_wrk(completed.stdout)
