"""The services every server under test shares: the database and Redis.

``Stack`` starts them once per run, on free loopback ports, and stops them at
the end; between phases it puts Redis back to empty (``flush_redis``).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from shoal.system import free_port

from .services import Service

#: The database every server uses (on the stand-in, the only one there is).
DATABASE = "bench"


class Stack:
    """The MongoDB stand-in and ``redis-server``, with their data in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.database = DATABASE
        self.store: Any = None
        self.redis: Service | None = None

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
        """The database's processes, whose CPU the results count as "db"."""
        return [self.store.pid] if self.store is not None and self.store.pid else []

    def flush_redis(self) -> None:
        assert self.redis is not None
        import redis

        with redis.Redis(port=self.redis.port) as client:
            client.flushall()
