"""The processes a benchmark run starts: one ``Service`` per server or helper.

Every process is started in a session of its own and dies with the harness
(parent-death signal), so an interrupted run leaves nothing behind; ``stop``
ends the process group the harness created, by its id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

from shoal.system import die_with_parent

from .proc import children, cmdline, cpu_seconds

#: Seconds between the two CPU readings of an idle check: long enough for
#: /proc's 10 ms ticks to tell a tenth of a core from idle, short enough that
#: the two or three checks before each scenario stay a small part of a run.
IDLE_SAMPLE = 0.25


class Measurable(Protocol):
    """What ``Meter.measure`` needs of a server under load: a ``Service`` is one,
    and so is a view of a local stack (``balancer.py``)."""

    name: str

    @property
    def url(self) -> str: ...

    def workers(self) -> list[int]:
        """The processes that answer requests (their RSS is reported)."""
        ...

    def all_pids(self) -> list[int]:
        """Every process of the server (their CPU is the "app" share)."""
        ...

    def wait_idle(
        self, timeout: float = 60.0, interval: float = IDLE_SAMPLE, busy: float = 0.1
    ) -> float:
        """Wait until the server is idle again; the seconds waited."""
        ...


def wait_idle(
    pids: Sequence[int], timeout: float = 60.0, interval: float = IDLE_SAMPLE, busy: float = 0.1
) -> float:
    """Wait until ``pids`` together use less than ``busy`` of a core (e.g. a sync
    server still answering the queue a load run left behind); the seconds waited."""
    started = time.monotonic()
    used = cpu_seconds(pids)
    while time.monotonic() - started < timeout:
        time.sleep(interval)
        now = cpu_seconds(pids)
        if now - used < busy * interval:
            break
        used = now
    return time.monotonic() - started


class Service:
    """One process the run needs, its output kept in ``workdir/<name>.log``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        workdir: Path,
        port: int,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_path: str | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.workdir = workdir
        self.port = port
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.ready_path = ready_path
        self.log_path = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Service:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.wait_ready(timeout)
        return self

    def _answers(self) -> bool:
        if self.ready_path is None:
            with socket.socket() as sock:
                sock.settimeout(0.2)
                return sock.connect_ex(("127.0.0.1", self.port)) == 0
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as response:  # noqa: S310
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.log_path}")
            if self._answers():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer in {timeout:g}s; see {self.log_path}")

    def workers(self) -> list[int]:
        """The worker processes: children that are not multiprocessing's helpers."""
        return [pid for pid in children(self.pid) if "resource_tracker" not in cmdline(pid)] or [
            self.pid
        ]

    def all_pids(self) -> list[int]:
        pids = [self.pid]
        for pid in children(self.pid):
            pids += [pid, *children(pid)]
        return pids

    def wait_idle(
        self, timeout: float = 60.0, interval: float = IDLE_SAMPLE, busy: float = 0.1
    ) -> float:
        """Wait until the server uses less than ``busy`` of a core (``wait_idle``)."""
        return wait_idle(self.all_pids(), timeout, interval, busy)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group this harness created, then SIGKILL it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
