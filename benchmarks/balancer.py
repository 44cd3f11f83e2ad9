"""The load balancer's cost: Shoal behind nginx, as ``scripts/stack`` runs it.

``balanced_stack`` starts a ``LocalStack`` (``local_stack.py``: N ``shoal
serve`` of one worker each with ``benchmarks/shoal.yaml``, nginx in front with
``deploy/nginx/nginx.conf`` made for loopback) on the run's own database and
Redis. ``Entry`` is one way into it that ``Meter.measure`` can load: straight to
one instance, or through nginx to all of them; its CPU share is the processes
behind that entry (nginx's included), its RSS the Shoal workers'.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from .local_stack import LocalStack
from .proc import children, cmdline
from .servers import CONFIG, HYPERCORN_TOML
from .services import IDLE_SAMPLE, wait_idle


def balanced_stack(
    workdir: Path, instances: int, *, mongodb_uri: str, database: str, redis_url: str
) -> LocalStack:
    """A ``LocalStack`` of ``instances`` one-worker instances, not yet started."""
    return LocalStack(
        workdir,
        instances=instances,
        workers=1,
        config=CONFIG,
        mongodb_uri=mongodb_uri,
        redis_url=redis_url,
        env={"SHOAL_MONGODB_DATABASE": database, "SHOAL_SECRET_KEY": secrets.token_hex(24)},
        hypercorn_toml=HYPERCORN_TOML.read_text(),
    )


class Entry:
    """One instance of a running ``LocalStack`` (``instance``), or nginx in front
    of all of them (None)."""

    def __init__(self, stack: LocalStack, instance: int | None = None) -> None:
        self.stack = stack
        self.instance = instance
        self.name = "nginx" if instance is None else stack.instance_name(instance)

    @property
    def url(self) -> str:
        if self.instance is None:
            return self.stack.url
        return self.stack.instance_url(self.instance)

    def _instances(self) -> list[int]:
        indexes = range(self.stack.instance_count) if self.instance is None else [self.instance]
        return [self.stack.instance(index).pid for index in indexes]

    def workers(self) -> list[int]:
        """The Shoal workers behind this entry (each instance's worker processes)."""
        found = []
        for instance in self._instances():
            found += [
                pid for pid in children(instance) if "resource_tracker" not in cmdline(pid)
            ] or [instance]
        return found

    def all_pids(self) -> list[int]:
        """The instances, their workers, and nginx with its workers when it is the entry."""
        pids = []
        for instance in self._instances():
            pids += [instance, *children(instance)]
        if self.instance is None:
            nginx = self.stack.processes["nginx"].pid
            pids += [nginx, *children(nginx)]
        return pids

    def wait_idle(
        self, timeout: float = 60.0, interval: float = IDLE_SAMPLE, busy: float = 0.1
    ) -> float:
        return wait_idle(self.all_pids(), timeout, interval, busy)
