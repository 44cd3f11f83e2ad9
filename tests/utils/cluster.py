"""A real Redis Cluster for tests: three masters of Debian's redis-server on
loopback, joined with `redis-cli --cluster create`.

Use the session fixture ``redis_cluster_url`` (registered for the whole suite by
``pytest_plugins`` in tests/conftest.py): a ``redis+cluster://`` URL that Shoal's
``redis.url`` takes as it is. Give each test its own ``key_prefix``, as with the
single Redis. The nodes are started once per session and stopped by their PIDs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.servers import wait_for_port

__all__ = ["RedisCluster", "redis_cluster_url"]

#: A node's cluster bus listens on its port + 10000 (Redis's fixed offset).
BUS_OFFSET = 10_000
#: Seconds the cluster has to agree that every slot is served.
READY_TIMEOUT = 30.0


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` ports that are free, each with its bus port (port + 10000) free too."""
    ports: list[int] = []
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + BUS_OFFSET < 65536 and port not in ports and _free(port + BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("could not find free ports for a Redis Cluster and its bus")


def _binary(name: str) -> str:
    binary = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(binary).exists():
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server)")
    return binary


class RedisCluster:
    """Three (or more) cluster-enabled redis-server processes, no replicas."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.workdir = workdir
        self.masters = masters
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """Shoal's URL for the cluster (any node; the client discovers the rest)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def start(self) -> RedisCluster:
        server, cli = _binary("redis-server"), _binary("redis-cli")
        self.ports = cluster_ports(self.masters)
        try:
            for port in self.ports:
                directory = self.workdir / f"node-{port}"
                directory.mkdir(parents=True, exist_ok=True)
                self._processes.append(
                    subprocess.Popen(
                        [
                            server,
                            "--port", str(port),
                            "--bind", "127.0.0.1",
                            "--cluster-enabled", "yes",
                            "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "5000",
                            "--save", "",
                            "--appendonly", "no",
                            "--dir", str(directory),
                            "--daemonize", "no",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            for port in self.ports:
                wait_for_port("127.0.0.1", port)
            subprocess.run(
                [
                    cli, "--cluster", "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas", "0", "--cluster-yes",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=True,
                timeout=60,
            )  # fmt: skip
            self._wait_ready(cli)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, cli: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout
                for port in self.ports
            ]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.2)
        raise TimeoutError(f"the Redis Cluster on {self.ports} did not become ready")

    def stop(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                process.kill()
        for process in processes:
            process.wait(10)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis+cluster://`` URL of a three-master Redis Cluster for the session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
