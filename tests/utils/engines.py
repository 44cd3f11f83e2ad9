"""The MongoDB engines the suite runs on, and the servers it starts for them.

- ``standin``: nx-27017, the embedded store (SQLite underneath); needs nothing
  but the Python packages, so it is the default.
- ``ferretdb``: FerretDB v1 (SQLite backend), built from the Go module proxy
  and run by ``scripts/ferretdb``; written by others to match MongoDB.
- ``documentdb``: DocumentDB (PostgreSQL 15 with the DocumentDB extensions, and
  its gateway), built from pinned sources and run by ``scripts/documentdb``;
  the engine closest to MongoDB that builds here.
- ``mongodb``: a real MongoDB at ``SHOAL_TEST_MONGODB_URI``; the suite cannot
  start or stop it.

Where an engine lacks a MongoDB behaviour a test checks, the test carries a
marker for that engine (see ``tests/conftest.py``) and is a strict expected
failure there only.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from shoal.system import die_with_parent, free_port, kill_process, stop_process
from tests.utils.servers import EmbeddedStore

ROOT = Path(__file__).resolve().parents[2]

#: Every engine name, in the order runs list them.
ENGINES = ("standin", "ferretdb", "documentdb", "mongodb")
#: Engines the suite can start (and kill, for fault tests) itself.
STARTABLE = ("standin", "ferretdb", "documentdb")

ENGINES_VARIABLE = "SHOAL_TEST_ENGINES"
MONGODB_URI_VARIABLE = "SHOAL_TEST_MONGODB_URI"


def selected_engines(option: str | None, env: Mapping[str, str]) -> list[str]:
    """The engines a run covers: ``--engines``, else ``SHOAL_TEST_ENGINES``,
    else a real MongoDB when ``SHOAL_TEST_MONGODB_URI`` is set, else the stand-in."""
    raw = option or env.get(ENGINES_VARIABLE) or ""
    if not raw.strip():
        return ["mongodb"] if env.get(MONGODB_URI_VARIABLE) else ["standin"]
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENGINES]
    if unknown:
        raise ValueError(f"unknown engine {', '.join(unknown)}: choose from {', '.join(ENGINES)}")
    if "mongodb" in names and not env.get(MONGODB_URI_VARIABLE):
        raise ValueError(f"the mongodb engine needs {MONGODB_URI_VARIABLE}=mongodb://...")
    return sorted(set(names), key=ENGINES.index)


def startable_engines(engines: list[str]) -> list[str]:
    """The engines a test that starts its own database runs on: the selected
    ones the suite can start, or the stand-in when only a real MongoDB is selected."""
    return [engine for engine in engines if engine in STARTABLE] or ["standin"]


def _answers(uri: str) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting for its parent to reap it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@functools.cache
def built(script: Path) -> Path:
    """What ``script build`` builds (FerretDB's binary, DocumentDB's gateway),
    built on first use (minutes the first time; instant once built)."""
    result = subprocess.run(
        [str(script), "build"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{script.name} build failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class ScriptedServer:
    """An engine that ``scripts/<name> run --port PORT --data-dir DIR`` serves
    on a free loopback port, with its data in ``data_dir``; the same ``start`` /
    ``stop`` / ``kill`` / ``uri`` as ``EmbeddedStore``."""

    #: The engine's name, as its script is named.
    name = ""
    #: Seconds ``start`` waits for the server to answer.
    start_timeout = 30.0

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def script(self) -> Path:
        return ROOT / "scripts" / self.name

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def log(self) -> Path:
        """The server's own log."""
        return self.data_dir / f"{self.name}.log"

    def start(self, timeout: float | None = None) -> str:
        built(self.script)  # build outside the start-up deadline
        timeout = self.start_timeout if timeout is None else timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.script), "run",
                    "--port", str(self.port),
                    "--data-dir", str(self.data_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self._process.returncode}; see {self.log}"
                )
            if _answers(self.uri):
                return self.uri
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:g}s; see {self.log}")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout)

    def kill(self) -> None:
        """Stop the server at once, as a crash would (for fault tests); returns
        once the script's own processes are gone too (they get SIGKILL when it
        dies: their parent-death signal)."""
        if self._process is not None:
            children = _children(self._process.pid)
            kill_process(self._process)
            deadline = time.monotonic() + 10.0
            while any(_alive(pid) for pid in children):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}'s processes {children} outlived it")
                time.sleep(0.05)

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class FerretDB(ScriptedServer):
    """FerretDB (SQLite backend). ``scripts/ferretdb run`` execs the binary, so
    the process's id is FerretDB's; its log holds every command it refuses."""

    name = "ferretdb"


class DocumentDB(ScriptedServer):
    """DocumentDB: ``scripts/documentdb run`` starts PostgreSQL and the gateway
    and stops both by their ids when it gets SIGTERM; killed, it takes both with
    it (their parent-death signal). Its log is the script's; PostgreSQL's and the
    gateway's own logs are ``postgresql.log`` and ``gateway.log`` beside it."""

    name = "documentdb"
    #: The first start makes the database (initdb, CREATE EXTENSION).
    start_timeout = 120.0

    @property
    def uri(self) -> str:
        return (
            f"mongodb://shoal:shoal@127.0.0.1:{self.port}/"
            "?authMechanism=SCRAM-SHA-256&directConnection=true"
        )


DatabaseServer = EmbeddedStore | ScriptedServer


def database_server(engine: str, data_dir: Path) -> DatabaseServer:
    """A server of ``engine`` (not yet started) keeping its data in ``data_dir``."""
    if engine == "standin":
        return EmbeddedStore(data_dir)
    if engine == "ferretdb":
        return FerretDB(data_dir)
    if engine == "documentdb":
        return DocumentDB(data_dir)
    raise ValueError(f"the suite cannot start a {engine} server")
