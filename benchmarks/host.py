"""The machine a run is on: its CPU, memory, tools and package versions, and the
open-files limit that many connections need."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        line = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = int(line.split()[1]) / 1024 / 1024
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].split(" [")[0]
        if wrk.stdout or wrk.stderr
        else "unknown",
    }


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "shoal",
        "quart",
        "hypercorn",
        "uvloop",
        "pymongo",
        "redis",
        "orjson",
        "nx-27017",
        "eve",
        "flask",
        "gunicorn",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def raise_open_files_limit() -> int:
    """1,000 connections need more descriptors than a default soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
