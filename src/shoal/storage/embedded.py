"""The embedded store: a MongoDB-wire-protocol server (nx-27017, SQLite
underneath) run as a child process, for development without a MongoDB server.

It is the same server the test suite uses as its MongoDB stand-in. It listens
on a free loopback port and is stopped with its parent: on a clean exit, on
Ctrl-C or SIGTERM, and (through the kernel's parent-death signal) even when the
parent is killed outright, so no orphan is left behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from ..config import MongoDBSettings, Settings
from ..system import die_with_parent, free_port, kill_process, stop_process


class EmbeddedStoreError(RuntimeError):
    """The embedded store could not be started."""


def _answers(host: str, port: int) -> bool:
    """Whether a MongoDB-protocol server answers ``ping`` on host:port."""
    client: MongoClient[dict[str, object]] = MongoClient(
        host, port, serverSelectionTimeoutMS=300, connectTimeoutMS=300, directConnection=True
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


class EmbeddedStore:
    """Run nx-27017 on a loopback port with its data in ``data_dir``::

    with EmbeddedStore(Path(".shoal")) as store:
        print(store.uri)
    """

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @staticmethod
    def available() -> bool:
        """Whether the ``embedded`` extra (nx-27017) is installed."""
        return importlib.util.find_spec("nx_27017") is not None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "nx_27017.nx_27017",
            "--data-dir",
            str(self.data_dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-file",
            str(self.data_dir / "nx-27017.log"),
            "--pid-file",
            str(self.data_dir / "nx-27017.pid"),
        ]

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait until it answers; returns its URI."""
        if not self.available():
            raise EmbeddedStoreError(
                "the embedded store needs the `embedded` extra: pip install 'shoal[embedded]' "
                "(or set mongodb.uri / SHOAL_MONGODB_URI)"
            )
        running = running_store(self.data_dir)
        if running is not None:
            raise EmbeddedStoreError(
                f"an embedded store is already running on {self.data_dir} ({running.uri}, "
                f"pid {running.pid}): another `shoal serve` on this config is probably "
                "running; stop it first, or use that one (the `shoal` commands find it by "
                "themselves)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_pid_file(self.data_dir / "nx-27017.pid")
        output = self.data_dir / "nx-27017.out"
        start = output.stat().st_size if output.exists() else 0
        log = output.open("ab")
        try:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a terminal's Ctrl-C reaches only Shoal, which
                # drains its requests first and then stops the store itself.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                reason = _last_error(output, start)
                raise EmbeddedStoreError(
                    f"the embedded store exited with status {self._process.returncode}"
                    + (f": {reason}" if reason else "")
                    + f" (its output: {output})"
                )
            if _answers(self.host, self.port):
                self._announce()
                return self.uri
            time.sleep(0.1)
        self.stop()
        raise EmbeddedStoreError(f"the embedded store did not answer within {timeout:g}s")

    @property
    def announcement(self) -> Path:
        """Where a running store tells other commands its address."""
        return self.data_dir / "running.json"

    def _announce(self) -> None:
        record = {"uri": self.uri, "pid": self.pid, "host": self.host, "port": self.port}
        self.announcement.write_text(json.dumps(record), encoding="utf-8")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if self._process is not None:
            with contextlib.suppress(OSError):
                self.announcement.unlink()
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout)

    def kill(self) -> None:
        """Stop the server at once, as a crash would (for fault tests)."""
        if self._process is not None:
            kill_process(self._process)

    def __enter__(self) -> EmbeddedStore:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def development_store(settings: Settings) -> EmbeddedStore:
    """The embedded store for a config with no MongoDB URI; refused outside
    development (the store is not MongoDB and keeps its data in one file)."""
    if settings.environment != "development":
        raise EmbeddedStoreError(
            "mongodb.uri is not set (SHOAL_MONGODB_URI). The embedded store is for "
            "development only: set a MongoDB URI, or environment: development."
        )
    return EmbeddedStore(settings.data_dir)


@dataclass(frozen=True)
class RunningStore:
    uri: str
    pid: int | None


def running_store(data_dir: Path) -> RunningStore | None:
    """The embedded store already serving ``data_dir`` (say, the one `shoal
    serve` started), if it still answers."""
    try:
        record = json.loads((data_dir / "running.json").read_text(encoding="utf-8"))
        host, port, uri = str(record["host"]), int(record["port"]), str(record["uri"])
        pid = int(record["pid"]) if record.get("pid") is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return RunningStore(uri, pid) if _answers(host, port) else None


def running_store_uri(data_dir: Path) -> str | None:
    """The URI of an embedded store already serving ``data_dir``, if any."""
    running = running_store(data_dir)
    return running.uri if running is not None else None


def _remove_stale_pid_file(pid_file: Path) -> None:
    """Remove a pid file that no live store wrote. nx-27017 refuses to start
    while its pid file names a process that signal 0 reaches, and a store that
    was killed leaves its file behind: its process may linger as a zombie until
    it is reaped, or its number may go to an unrelated process. No store answers
    for this data (checked before), so a file naming a process that is not a
    running nx-27017 is stale. Without /proc (not Linux) the file is kept."""
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return
    proc = Path("/proc")
    if not proc.is_dir():
        return
    try:
        stat = (proc / str(pid) / "stat").read_text()
        command = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        stat, command = "", b""
    state = stat[stat.rindex(")") + 2 :][:1] if ")" in stat else ""
    if state in {"", "Z", "X", "x"} or b"nx_27017" not in command:
        with contextlib.suppress(OSError):
            pid_file.unlink()


def _last_error(output: Path, start: int) -> str:
    """The last ERROR line the store wrote since ``start`` (its message only)."""
    try:
        with output.open("rb") as file:
            file.seek(start)
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if " - ERROR - " in line]
    return errors[-1].rsplit(" - ", 1)[-1].strip() if errors else ""


@contextlib.contextmanager
def mongodb_for_command(settings: Settings) -> Iterator[MongoDBSettings]:
    """The MongoDB a one-off command (import, users, apikeys) should use: the
    configured one; else the embedded store `shoal serve` is running on the same
    data; else an embedded store of its own for as long as the command runs."""
    if settings.mongodb.uri is not None:
        yield settings.mongodb
        return
    running = (
        running_store_uri(settings.data_dir) if settings.environment == "development" else None
    )
    if running is not None:
        yield settings.mongodb.model_copy(update={"uri": running})
        return
    with development_store(settings) as store:
        print(
            f"WARNING: no mongodb.uri: using the embedded store, data in {settings.data_dir}",
            file=sys.stderr,
            flush=True,
        )
        yield settings.mongodb.model_copy(update={"uri": store.uri})
