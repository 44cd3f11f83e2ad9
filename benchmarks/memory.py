"""Where a worker's memory goes before its first request: the resident memory
each import adds, in the order a worker loads them, then the whole process
split into its own memory and mapped files::

    python -m benchmarks.memory

Each row is measured in this process, after the rows above it, so a package
is charged only for what the packages before it did not already load. The
mapped files (shared libraries) count in every worker's RSS, though the
workers of one machine share them in the page cache.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

#: The worker's heavy dependencies, each before the packages that need it,
#: then Shoal's own layers and the worker. redis is a worker's only with
#: ``redis.url``; the change streams' RE2 (not listed) only with ``streams: true``.
MODULES = (
    "uvloop",
    "orjson",
    "yaml",
    "pydantic",
    "jsonschema_rs",
    "bson",
    "pymongo",
    "redis",
    "hypercorn.asyncio",
    "quart",
    "quart_schema",
    "jwt",
    "argon2",
    "prometheus_client",
    "brotli_asgi",
    "shoal.config",
    "shoal.storage",
    "shoal.state",
    "shoal.resources",
    "shoal.auth",
    "shoal.api",
    "shoal.app",
    "shoal.cli.worker",
)


def status_kib(field: str, path: Path = Path("/proc/self/status")) -> int:
    """One ``kB`` field of a ``/proc`` status file (``VmRSS``, ``Anonymous``...)."""
    for line in path.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise KeyError(field)


def measure(modules: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(module, KiB of RSS it added, modules it loaded) per module, in order."""
    rows = []
    for name in modules:
        before, loaded = status_kib("VmRSS"), len(sys.modules)
        importlib.import_module(name)
        rows.append((name, status_kib("VmRSS") - before, len(sys.modules) - loaded))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    start = status_kib("VmRSS")
    rows = measure(MODULES)
    print(f"{'import':<20} {'+RSS MB':>8} {'modules':>8}")
    print(f"{'(interpreter)':<20} {start / 1024:8.1f}")
    for name, added, count in rows:
        print(f"{name:<20} {added / 1024:8.1f} {count:8d}")
    rollup = Path("/proc/self/smaps_rollup")
    total, anonymous = status_kib("Rss", rollup), status_kib("Anonymous", rollup)
    print(
        f"RSS {total / 1024:.1f} MB: {anonymous / 1024:.1f} MB the process's own "
        f"(objects, module code), {(total - anonymous) / 1024:.1f} MB mapped files"
    )


if __name__ == "__main__":
    main()
