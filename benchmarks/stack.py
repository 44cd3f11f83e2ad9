"""The services every server under test shares: the database and Redis.

``Stack`` starts them once per run, on free loopback ports, and stops them at
the end; between phases it puts Redis back to empty (``flush_redis``). For the
scenarios with the database at a network distance, ``distance`` puts a delay
proxy (``benchmarks/delay_proxy.py``, its own process) in front of the database.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from shoal.system import free_port

from .services import Service

ROOT = Path(__file__).resolve().parents[1]

#: The database every server uses (on the stand-in, the only one there is).
DATABASE = "bench"


class Stack:
    """The MongoDB stand-in and ``redis-server``, with their data in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.database = DATABASE
        self.store: Any = None
        self.redis: Service | None = None
        self.proxy: Service | None = None

    def start(self) -> Stack:
        from shoal.storage.embedded import EmbeddedStore

        self.store = EmbeddedStore(self.workdir / "mongodb")
        self.store.start()
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
    def mongodb_uri(self) -> str:
        return str(self.store.uri)

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def db_pids(self) -> list[int]:
        """The database's processes, whose CPU the results count as "db" (the delay
        proxy's too while it runs: it is the database's network)."""
        pids = [self.store.pid] if self.store is not None and self.store.pid else []
        if self.proxy is not None:
            pids.append(self.proxy.pid)
        return pids

    @contextlib.contextmanager
    def distance(self, delay_ms: float) -> Iterator[str]:
        """The database ``delay_ms`` of round trip away: a delay proxy in front of
        it for as long as the block runs; yields the URI that goes through it."""
        port = free_port()
        target = f"{self.store.host}:{self.store.port}"
        proxy = Service(
            f"delay-proxy-{delay_ms:g}ms",
            [sys.executable, "-m", "benchmarks.delay_proxy", "--listen", f"127.0.0.1:{port}",
             "--target", target, "--delay-ms", f"{delay_ms:g}"],
            workdir=self.workdir,
            port=port,
            cwd=ROOT,
        )  # fmt: skip
        with proxy:
            self.proxy = proxy
            try:
                yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
            finally:
                self.proxy = None

    def flush_redis(self) -> None:
        assert self.redis is not None
        import redis

        with redis.Redis(port=self.redis.port) as client:
            client.flushall()
