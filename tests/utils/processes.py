"""Run the real `shoal` command and watch the processes it starts, through /proc.

Every wait here has a deadline, and ``ServeProcess.cleanup`` kills whatever the
test started (the `shoal serve` process and every descendant it was seen with),
so a failing test leaks nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "ProcessInfo",
    "ServeProcess",
    "alive",
    "children",
    "clean_env",
    "descendants",
    "process_info",
    "processes_mentioning",
    "run_shoal",
    "shoal_command",
    "wait_until",
]


def shoal_command() -> str:
    """The `shoal` console script installed next to this interpreter."""
    script = Path(sys.executable).with_name("shoal")
    if not script.is_file():
        raise RuntimeError(f"no `shoal` script beside {sys.executable}; pip install -e .")
    return str(script)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any SHOAL_* variable, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SHOAL_")}
    env.update(extra or {})
    return env


def run_shoal(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `shoal ARGS` to completion (killed after ``timeout`` seconds);
    ``input`` is its stdin, else it reads an empty one."""
    return subprocess.run(
        [shoal_command(), *args],
        cwd=cwd,
        env=clean_env(env),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- /proc ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """One process, identified by pid *and* start time (pids are reused)."""

    pid: int
    ppid: int
    start_time: int
    cmdline: str

    def alive(self) -> bool:
        """Whether this very process still runs (a zombie counts as gone)."""
        current = process_info(self.pid)
        return current is not None and current.start_time == self.start_time

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait_gone(self, timeout: float) -> None:
        """Wait until this process has exited (a kill is not instant: a server
        started next on the same files must not find it still running)."""
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not self.alive(), f"process {self.pid} ({self.cmdline}) outlived SIGKILL"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may itself hold spaces or ")".
    return text[text.rindex(")") + 2 :].split()


def process_info(pid: int) -> ProcessInfo | None:
    """The live process ``pid``, or None if there is none (or only a zombie)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in {"Z", "X", "x"}:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # fields[0] is field 3 of stat (state): ppid is field 4, starttime field 22.
    return ProcessInfo(
        pid=pid,
        ppid=int(fields[1]),
        start_time=int(fields[19]),
        cmdline=raw.replace(b"\0", b" ").decode(errors="replace").strip(),
    )


def _all_processes() -> list[ProcessInfo]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = process_info(int(entry.name))
            if info is not None:
                found.append(info)
    return found


def alive(processes: Iterable[ProcessInfo]) -> list[ProcessInfo]:
    """Those of ``processes`` that still run."""
    return [info for info in processes if info.alive()]


def processes_mentioning(text: str) -> list[ProcessInfo]:
    """The live processes whose command line contains ``text`` (e.g. a temp dir)."""
    return [info for info in _all_processes() if text in info.cmdline]


def children(pid: int) -> list[ProcessInfo]:
    """The live processes whose parent is ``pid``."""
    return [info for info in _all_processes() if info.ppid == pid]


def descendants(pid: int) -> list[ProcessInfo]:
    """Children, grandchildren, ... of ``pid``."""
    everything = _all_processes()
    found: list[ProcessInfo] = []
    parents = {pid}
    while parents:
        level = [info for info in everything if info.ppid in parents]
        found.extend(level)
        parents = {info.pid for info in level}
    return found


# --- `shoal serve` ----------------------------------------------------------------


class ServeProcess:
    """`shoal serve` as a subprocess, its output kept in files under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        config: str | None,
        bind: str,
        workers: int | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.workdir = workdir
        self.bind = bind
        self.args = ["serve", "--bind", bind]
        if config is not None:
            self.args += ["--config", config]
        if workers is not None:
            self.args += ["--workers", str(workers)]
        self.env = clean_env(env)
        self.new_session = new_session
        self.stdout_path = workdir / "serve.stdout"
        self.stderr_path = workdir / "serve.stderr"
        self._process: subprocess.Popen[bytes] | None = None
        self._seen: dict[tuple[int, int], ProcessInfo] = {}

    @property
    def url(self) -> str:
        return f"http://{self.bind}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("not started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> ServeProcess:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._process = subprocess.Popen(
                [shoal_command(), *self.args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=self.new_session,
            )
        return self

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """Both streams, for assertion messages."""
        return f"--- stdout\n{self.stdout()}\n--- stderr\n{self.stderr()}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """One GET; (status, body), or (0, b"") when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:  # noqa: S310
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())
        except (urllib.error.URLError, OSError):
            return 0, b""

    def wait_ready(self, path: str = "/readyz", timeout: float = 30.0) -> None:
        """Wait until ``path`` answers 200; fail with the output if it never does,
        or at once when MongoDB refused an index (Shoal does not ask again)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"`shoal serve` exited with {self.process.returncode}\n{self.output()}"
                )
            status, body = self.get(path, timeout=1.0)
            if status == 200:
                self.remember_descendants()
                return
            if b"indexes refused" in body:  # never retried: waiting longer is no use
                raise AssertionError(f"{self.url}{path}: {body.decode(errors='replace')}")
            time.sleep(0.1)
        raise AssertionError(
            f"{self.url}{path} did not answer 200 in {timeout:g}s\n{self.output()}"
        )

    def remember_descendants(self) -> list[ProcessInfo]:
        """The descendants now, also remembered so ``cleanup`` can kill them."""
        found = descendants(self.pid)
        for info in found:
            self._seen[(info.pid, info.start_time)] = info
        return found

    def children(self) -> list[ProcessInfo]:
        found = children(self.pid)
        for info in found:
            self._seen[(info.pid, info.start_time)] = info
        return found

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def cleanup(self) -> None:
        """Kill `shoal serve` and every process it was seen with; nothing may leak."""
        if self._process is not None:
            if self._process.poll() is None:
                self.remember_descendants()
                self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
        for info in self._seen.values():
            info.kill()
        for info in self._seen.values():
            info.wait_gone(10)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()
