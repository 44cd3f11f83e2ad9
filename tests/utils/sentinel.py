"""Redis Sentinel for tests: one master, one replica and three sentinels of
Debian's redis-server on loopback, each sentinel with a config file of its own
(Sentinel rewrites it as the topology changes).

``RedisSentinel(workdir).start()`` returns when the replica has synced and
every sentinel knows the replica and the two other sentinels, so a failover
can be voted at once. ``url`` is Shoal's ``redis+sentinel://`` URL. Every
process is stopped by its PID (``stop``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.utils.cluster import _binary
from tests.utils.servers import free_port, wait_for_port

__all__ = ["RedisSentinel"]

#: The monitored service's name, as the URL names it.
SERVICE = "shoal"
#: Milliseconds of silence after which a sentinel holds the master down.
DOWN_AFTER_MS = 1000
READY_TIMEOUT = 30.0


class RedisSentinel:
    """A master, a replica of it, and three sentinels watching them."""

    def __init__(self, workdir: Path, sentinels: int = 3) -> None:
        self.workdir = workdir
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._servers: dict[int, subprocess.Popen[bytes]] = {}
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> RedisSentinel:
        try:
            self._servers[self.master_port] = self._server(self.master_port)
            self._servers[self.replica_port] = self._server(
                self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port)
            )
            self._wait(self._replica_synced, "the replica did not sync")
            for port in self.sentinel_ports:
                self._sentinels.append(self._sentinel(port))
            for port in self.sentinel_ports:
                wait_for_port("127.0.0.1", port)
            self._wait(self._sentinels_agree, "the sentinels did not find each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _server(self, port: int, *extra: str) -> subprocess.Popen[bytes]:
        directory = self.workdir / f"redis-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [
                _binary("redis-server"),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
                "--daemonize", "no",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port("127.0.0.1", port)
        return process

    def _sentinel(self, port: int) -> subprocess.Popen[bytes]:
        directory = self.workdir / f"sentinel-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"dir {directory}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {SERVICE} 10000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        return subprocess.Popen(
            [_binary("redis-server"), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait(self, condition: Callable[[], bool], message: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.2)
        raise TimeoutError(message)

    def _replica_synced(self) -> bool:
        with redis.Redis(port=self.replica_port, socket_timeout=2) as client:
            info = client.info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
                state = client.sentinel_master(SERVICE)
            others = len(self.sentinel_ports) - 1
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < others:
                return False
        return True

    def current_master(self) -> int:
        """The master's port, as the first sentinel that answers says."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=2) as client:
                    _, master = client.sentinel_get_master_addr_by_name(SERVICE)
                return int(master)
            except redis.RedisError:
                continue
        raise AssertionError("no sentinel answers")

    def kill_master(self) -> int:
        """SIGKILL the current master; its port."""
        port = self.current_master()
        process = self._servers[port]
        process.kill()
        process.wait(10)
        return port

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in [*self._servers.values(), *self._sentinels]]

    def stop(self) -> None:
        processes = [*self._sentinels, *self._servers.values()]
        self._sentinels, self._servers = [], {}
        for process in processes:
            if process.poll() is None:
                process.kill()
        for process in processes:
            process.wait(10)
