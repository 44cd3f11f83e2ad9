"""Toxiproxy between Shoal and its services, for fault tests.

``Toxiproxy`` runs ``toxiproxy-server`` (built by ``scripts/toxiproxy``) on a
free loopback port, stopped by its PID; ``proxy`` puts a loopback port in front
of a service (Shoal is then given that port instead of the service's), and
``Proxy`` adds and removes toxics, or cuts the link, through the server's HTTP
API::

    with Toxiproxy(workdir) as toxiproxy:
        redis = toxiproxy.proxy("redis", "127.0.0.1:6379")   # Shoal uses redis.listen
        with redis.toxic("timeout", timeout=0):              # a blackhole, both ways
            ...

A toxic acts on one direction of each connection: ``upstream`` (what Shoal
sends) or ``downstream`` (what the service answers); ``toxic`` adds it to
both unless told otherwise. Toxics act on open connections as well as new ones.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from shoal.system import die_with_parent, free_port, stop_process
from tests.utils.servers import wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "toxiproxy"

BOTH = ("upstream", "downstream")


def toxiproxy_binary() -> Path:
    """toxiproxy-server, built by ``scripts/toxiproxy`` on first use."""
    result = subprocess.run(
        [str(SCRIPT), "path"], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/toxiproxy path failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class Proxy:
    """One proxy of a running Toxiproxy: ``listen`` forwards to ``upstream``."""

    def __init__(self, api: httpx.Client, name: str, listen: str, upstream: str) -> None:
        self.api = api
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self._count = 0

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def add(self, kind: str, *, stream: str = "downstream", **attributes: Any) -> str:
        """Add a toxic of ``kind`` on one direction; its name."""
        self._count += 1
        name = f"{kind}_{stream}_{self._count}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0,
                "attributes": attributes}  # fmt: skip
        _ok(self.api.post(f"/proxies/{self.name}/toxics", json=body))
        return name

    def remove(self, name: str) -> None:
        _ok(self.api.delete(f"/proxies/{self.name}/toxics/{name}"))

    def clear(self) -> None:
        """Remove every toxic and enable the proxy again."""
        for toxic in _ok(self.api.get(f"/proxies/{self.name}/toxics")).json():
            self.remove(toxic["name"])
        self.enable(True)

    @contextmanager
    def toxic(
        self, kind: str, *, streams: Sequence[str] = BOTH, **attributes: Any
    ) -> Iterator[None]:
        """The toxic on each of ``streams`` while the block runs."""
        names = [self.add(kind, stream=stream, **attributes) for stream in streams]
        try:
            yield
        finally:
            for name in names:
                self.remove(name)

    def enable(self, enabled: bool) -> None:
        """Cut the link (False: open connections are closed and new ones refused)
        or restore it."""
        _ok(self.api.post(f"/proxies/{self.name}", json={"enabled": enabled}))


class Toxiproxy:
    """toxiproxy-server on a free loopback port, its log in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._api: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> httpx.Client:
        if self._api is None:
            raise RuntimeError("toxiproxy is not started")
        return self._api

    def start(self) -> Toxiproxy:
        binary = toxiproxy_binary()  # built outside the start-up deadline
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "toxiproxy.log").open("ab") as log:
            self._process = subprocess.Popen(
                [str(binary), "-host", "127.0.0.1", "-port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        try:
            wait_for_port("127.0.0.1", self.port)
            self._api = httpx.Client(base_url=self.url, timeout=10)
            _ok(self.api.get("/version"))
        except BaseException:
            self.stop()
            raise
        return self

    def proxy(self, name: str, upstream: str) -> Proxy:
        """A proxy on a free loopback port in front of ``upstream`` (host:port)."""
        listen = f"127.0.0.1:{free_port()}"
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        _ok(self.api.post("/proxies", json=body))
        deadline = time.monotonic() + 10
        while not _ok(self.api.get(f"/proxies/{name}")).json()["enabled"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"toxiproxy did not enable {name}")
            time.sleep(0.05)
        return Proxy(self.api, name, listen, upstream)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL)."""
        api, self._api = self._api, None
        if api is not None:
            api.close()
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=5)

    def __enter__(self) -> Toxiproxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _ok(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise RuntimeError(
            f"toxiproxy {response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text}"
        )
    return response
