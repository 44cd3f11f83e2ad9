"""Several real `shoal serve` instances behind nginx for tests (``benchmarks.local_stack``),
on the suite's MongoDB and Redis, each stack with its own database and key prefix."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import yaml
from benchmarks.local_stack import INSTANCE_HEADER, Stack

from tests.utils.processes import run_shoal
from tests.utils.settings import TEST_SECRET, example_resources

PASSWORD = "a long enough password"


def via_proxy(uri: str, port: int) -> str:
    """``uri`` pointed at a proxy on 127.0.0.1:``port`` (one host, direct connection)."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    query["directConnection"] = "true"
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc_text = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit((parts.scheme, netloc_text, parts.path or "/", urlencode(query), ""))


def host_and_port(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri)
    host = parts.hostname or "127.0.0.1"
    return host, parts.port or 27017


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
) -> Iterator[Stack]:
    stack = Stack(
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


def create_user(stack: Stack, config: Path, name: str, *roles: str) -> None:
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
