"""Several real `shoal serve` instances behind nginx for tests (``benchmarks.local_stack``),
on the suite's MongoDB and Redis, each stack with its own database and key prefix."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from benchmarks.engine import MongoURI, with_address
from benchmarks.local_stack import INSTANCE_HEADER, ROOT, LocalStack
from benchmarks.services import Service

from shoal.system import free_port
from tests.utils.processes import run_shoal
from tests.utils.settings import TEST_SECRET, example_resources

PASSWORD = "a long enough password"


@contextmanager
def at_a_distance(workdir: Path, mongodb_uri: str, delay_ms: float) -> Iterator[str]:
    """MongoDB ``delay_ms`` of round trip away, through the benchmarks' delay
    proxy (its own process, stopped by its id afterwards); yields the URI
    that goes through it. Requests then stay in flight long enough for a
    test to stop or kill an instance in the middle of them."""
    host, target = MongoURI.parse(mongodb_uri).address()
    port = free_port()
    proxy = Service(
        "delay-proxy",
        [sys.executable, "-m", "benchmarks.delay_proxy", "--listen", f"127.0.0.1:{port}",
         "--target", f"{host}:{target}", "--delay-ms", f"{delay_ms:g}"],
        workdir=workdir,
        port=port,
        cwd=ROOT,
    )  # fmt: skip
    with proxy:
        yield with_address(mongodb_uri, "127.0.0.1", port)


def stack_config(directory: Path, **overrides: Any) -> Path:
    """A config for the stack's instances: the example resources, a fresh
    database and key prefix, ``X-Shoal-Instance`` on."""
    unique = uuid.uuid4().hex[:12]
    raw: dict[str, Any] = {
        "environment": "test",
        "secret_key": TEST_SECRET,
        "mongodb": {"database": f"test_{unique}"},
        "redis": {"key_prefix": f"test:{unique}:"},
        "instance": {"header": True},
        "resources": example_resources(),
        **overrides,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "shoal.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@contextmanager
def running_stack(
    workdir: Path,
    config: Path,
    *,
    mongodb_uri: str,
    redis_url: str,
    instances: int,
    workers: int = 1,
    hypercorn_toml: str | None = None,
) -> Iterator[LocalStack]:
    stack = LocalStack(
        workdir,
        instances=instances,
        workers=workers,
        config=config,
        mongodb_uri=mongodb_uri,
        redis_url=redis_url,
        hypercorn_toml=hypercorn_toml,
    )
    with stack:
        yield stack


def create_user(stack: LocalStack, config: Path, name: str, *roles: str) -> None:
    """A user made with `shoal users create`, as an operator would."""
    arguments = ["users", "create", name, "--password-stdin", "--config", str(config)]
    for role in roles:
        arguments += ["--role", role]
    env = {"SHOAL_MONGODB_URI": stack.mongodb_uri or ""}
    result = run_shoal(arguments, cwd=config.parent, env=env, input=PASSWORD + "\n")
    if result.returncode != 0:
        raise subprocess.SubprocessError(result.stderr)


def instance_of(response: httpx.Response) -> str:
    return response.headers[INSTANCE_HEADER]
