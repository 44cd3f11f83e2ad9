"""The services every server under test shares: the database and Redis.

``Stack`` starts them once per run, on free loopback ports, and stops them at
the end; between phases it puts Redis back to empty (``flush_redis``). The
database is an engine it starts (``ENGINES``: the MongoDB stand-in, FerretDB built
by ``scripts/ferretdb``, or DocumentDB built by ``scripts/documentdb``), or the
MongoDB-compatible server of ``mongodb_uri`` (``engine.py``), in a database of the
run's own that is dropped at the end. For the scenarios with the database at a network distance,
``distance`` puts a delay proxy (``benchmarks/delay_proxy.py``, its own process)
in front of it.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from pymongo import MongoClient

from shoal.system import free_port

from .engine import Engine, MongoURI, identify, with_address
from .results import ENGINES
from .services import Service

ROOT = Path(__file__).resolve().parents[1]

#: The database every server uses on an engine the run started.
DATABASE = "bench"
#: The engines a script builds and runs (``scripts/<engine>``), and the URI of
#: one on a port: FerretDB needs no credentials, DocumentDB's gateway always does.
SCRIPTED = {
    "ferretdb": "mongodb://127.0.0.1:{port}/?directConnection=true",
    "documentdb": (
        "mongodb://shoal:shoal@127.0.0.1:{port}/?authMechanism=SCRAM-SHA-256&directConnection=true"
    ),
}
#: The first build takes minutes (FerretDB one or two, DocumentDB about four);
#: then it is reused.
BUILD_TIMEOUT = 1800.0


class Stack:
    """The database engine and ``redis-server``, with their files in ``workdir``:
    ``mongodb_uri``'s server if given, else the engine ``engine`` names (``ENGINES``)."""

    def __init__(
        self, workdir: Path, mongodb_uri: str | None = None, *, engine: str = "standin"
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
        self.workdir = workdir
        self.given_uri = mongodb_uri
        self.engine_key = engine
        # On a server of someone else's, a database no one else uses.
        self.database = DATABASE if mongodb_uri is None else f"shoal_bench_{secrets.token_hex(4)}"
        self.store: Any = None
        #: The engine's ``scripts/<engine> run``, for an engine a script runs.
        self.scripted: Service | None = None
        self.engine: Engine | None = None
        self.redis: Service | None = None
        self.proxy: Service | None = None

    def start(self) -> Stack:
        if self.given_uri is None and self.engine_key in SCRIPTED:
            self.scripted = start_scripted(self.engine_key, self.workdir)
            self.engine = identify(SCRIPTED[self.engine_key].format(port=self.scripted.port))
            self.engine.pids = self.scripted.all_pids()
            if self.engine_key == "documentdb":  # its buildInfo names a MongoDB version only
                self.engine.name = f"DocumentDB ({self.engine.name} compatible)"
        elif self.given_uri is None:
            from shoal.storage.embedded import EmbeddedStore

            self.store = EmbeddedStore(self.workdir / "mongodb")
            self.store.start()
            self.engine = identify(self.store.uri)
            self.engine.pids = [self.store.pid]
        else:
            self.engine = identify(self.given_uri)
            self.engine.given = True
        port = free_port()
        self.redis = Service(
            "redis",
            [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
            ],
            workdir=self.workdir,
            port=port,
        ).start()  # fmt: skip
        return self

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.store is not None:
            self.store.stop()
        elif self.scripted is not None:
            self.scripted.stop()
        elif self.engine is not None:
            self._drop_database()

    def _drop_database(self) -> None:
        assert self.engine is not None
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.engine.uri, serverSelectionTimeoutMS=10000
        )
        try:
            client.drop_database(self.database)
        finally:
            client.close()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def started_by_run(self) -> str | None:
        """The key (``ENGINES``) of the engine the run started, None for a given URI."""
        return None if self.given_uri is not None else self.engine_key

    @property
    def mongodb_uri(self) -> str:
        assert self.engine is not None
        return self.engine.uri

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def db_pids(self) -> list[int]:
        """The database's processes, whose CPU the results count as "db" (the delay
        proxy's too while it runs: it is the database's network). For an engine a
        script runs, the script's processes and theirs, found afresh (PostgreSQL
        starts a process for each connection)."""
        if self.scripted is not None:
            pids = self.scripted.all_pids()
        else:
            pids = list(self.engine.pids) if self.engine is not None else []
        if self.proxy is not None:
            pids.append(self.proxy.pid)
        return pids

    def flush_redis(self) -> None:
        assert self.redis is not None
        import redis

        with redis.Redis(port=self.redis.port) as client:
            client.flushall()

    def database_address(self) -> tuple[str, int]:
        """The database server's host and port; ValueError if the URI names no single
        server (then the delay proxy cannot stand in front of it)."""
        return MongoURI.parse(self.mongodb_uri).address()

    @contextlib.contextmanager
    def distance(self, delay_ms: float) -> Iterator[str]:
        """The database ``delay_ms`` of round trip away: a delay proxy in front of
        it for as long as the block runs; yields the URI that goes through it."""
        host, target_port = self.database_address()
        port = free_port()
        proxy = Service(
            f"delay-proxy-{delay_ms:g}ms",
            [sys.executable, "-m", "benchmarks.delay_proxy", "--listen", f"127.0.0.1:{port}",
             "--target", f"{host}:{target_port}", "--delay-ms", f"{delay_ms:g}"],
            workdir=self.workdir,
            port=port,
            cwd=ROOT,
        )  # fmt: skip
        with proxy:
            self.proxy = proxy
            try:
                yield with_address(self.mongodb_uri, "127.0.0.1", port)
            finally:
                self.proxy = None


def start_scripted(key: str, workdir: Path) -> Service:
    """``scripts/<key> run`` (FerretDB on its SQLite backend, or DocumentDB) on a
    free loopback port, its data in ``workdir``; built first if this checkout has
    none yet."""
    script = ROOT / "scripts" / key
    built = subprocess.run(
        [str(script), "build"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT,
    )
    if built.returncode != 0:
        raise RuntimeError(f"scripts/{key} build failed: {built.stderr.strip()[-500:]}")
    port = free_port()
    data_dir = workdir / f"{key}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    return Service(
        key,
        [str(script), "run", "--port", str(port), "--data-dir", str(data_dir)],
        workdir=workdir,
        port=port,
        cwd=ROOT,
    ).start(timeout=120.0)
