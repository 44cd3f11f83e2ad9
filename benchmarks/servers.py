"""The servers under test, each a ``Service`` on a free loopback port.

- ``bare``: a bare ASGI callable answering a fixed JSON body
  (``benchmarks/apps/bare.py``) under hypercorn with the repository's
  ``hypercorn.toml``: the server alone;
- ``quart``: the minimal Quart app (``benchmarks/apps/minimal.py``) under the same
  hypercorn settings;
- ``shoal``: ``shoal serve`` with ``benchmarks/shoal.yaml`` (or a config
  ``derived_config`` wrote from it) and the same toml;
- ``eve``: Eve 2.3 (``benchmarks/apps/eve_app.py``) under gunicorn, with its sync
  workers or (``gevent=True``) its gevent workers;
- ``peer``: the item GET and POST a team would write by hand instead of adopting
  Shoal (``benchmarks/apps/peer.py``), on Starlette or on Quart, under the same
  hypercorn settings as Shoal.

Each factory returns a ``Service`` not yet started: use it as a context manager.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from shoal.system import free_port

from .engine import with_database
from .services import Service

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "shoal.yaml"
HYPERCORN_TOML = ROOT / "hypercorn.toml"


def clean_env(**extra: str) -> dict[str, str]:
    """The harness's environment without SHOAL_* settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    env.update(extra)
    return env


def derived_config(workdir: Path, name: str, **sections: Any) -> Path:
    """``benchmarks/shoal.yaml`` with top-level ``sections`` replaced (e.g.
    ``admission={"max_in_flight": 16}``), written to ``workdir/<name>.yaml``."""
    config = yaml.safe_load(CONFIG.read_text())
    config.update(sections)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def derived_toml(workdir: Path, name: str, **settings: str | int) -> Path:
    """The repository's ``hypercorn.toml`` with the lines of ``settings`` replaced
    (e.g. ``worker_class="asyncio"``), written to ``workdir/<name>.toml``."""
    text = HYPERCORN_TOML.read_text()
    for key, value in settings.items():
        line = f"{key} = {json.dumps(value)}"
        text, found = re.subn(rf"(?m)^{re.escape(key)} = .*$", line, text)
        if not found:
            text += line + "\n"
    path = workdir / f"{name}.toml"
    path.write_text(text)
    return path


def shoal_command() -> list[str]:
    """How to run the ``shoal`` CLI of this environment."""
    beside = Path(sys.executable).with_name("shoal")
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "shoal.cli"]


def bearer_token(service: Service, config: Path = CONFIG) -> str:
    """An access token of a user made for the run (``shoal users create`` on the
    service's database), signed in over HTTP on ``service``."""
    username, password = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    subprocess.run(
        [*shoal_command(), "users", "create", username, "--role", "editor",
         "--password-stdin", "--config", str(config)],
        input=password + "\n", text=True, env=service.env, cwd=ROOT, check=True,
        capture_output=True, timeout=60,
    )  # fmt: skip
    request = urllib.request.Request(  # noqa: S310 - the loopback URL the harness started
        f"{service.url}/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        token: str = json.loads(response.read())["access_token"]
    return token


def shoal(
    workdir: Path,
    workers: int,
    *,
    mongodb_uri: str,
    database: str,
    redis_url: str,
    config: Path = CONFIG,
    secret_key: str | None = None,
    hypercorn_toml: Path = HYPERCORN_TOML,
) -> Service:
    """``shoal serve`` (``secret_key``: the one it signs with; a random one by default;
    ``hypercorn_toml``: its hypercorn settings, the repository's by default)."""
    port = free_port()
    return Service(
        f"shoal-w{workers}",
        [*shoal_command(), "serve", "--config", str(config), "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers)],
        workdir=workdir,
        port=port,
        cwd=ROOT,
        ready_path="/readyz",
        env=clean_env(
            SHOAL_MONGODB_URI=mongodb_uri,
            SHOAL_MONGODB_DATABASE=database,
            SHOAL_REDIS_URL=redis_url,
            SHOAL_SECRET_KEY=secret_key or secrets.token_hex(24),
            SHOAL_HYPERCORN_CONFIG=str(hypercorn_toml),
        ),
    )  # fmt: skip


def hypercorn(
    workdir: Path, name: str, workers: int, application: str, toml: Path = HYPERCORN_TOML
) -> Service:
    """``application`` under hypercorn with ``toml`` (the repository's ``hypercorn.toml``
    by default)."""
    port = free_port()
    return Service(
        f"{name}-w{workers}",
        [sys.executable, "-m", "hypercorn", "--config", str(toml),
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers), application],
        workdir=workdir,
        port=port,
        cwd=ROOT,
        ready_path="/",
        env=clean_env(),
    )  # fmt: skip


def bare(workdir: Path, workers: int, toml: Path = HYPERCORN_TOML) -> Service:
    return hypercorn(workdir, "bare", workers, "benchmarks.apps.bare:app", toml)


def quart(workdir: Path, workers: int) -> Service:
    return hypercorn(workdir, "quart", workers, "benchmarks.apps.minimal:app")


#: The frameworks the hand-written peer is served with (``benchmarks/apps/peer_<name>.py``).
PEER_FRAMEWORKS = ("starlette", "quart")


def peer(
    workdir: Path, workers: int, framework: str, *, mongodb_uri: str, database: str
) -> Service:
    """The hand-written peer on ``framework`` (one of ``PEER_FRAMEWORKS``), reading and
    writing the run's ``items``."""
    application = f"benchmarks.apps.peer_{framework}:app"
    service = hypercorn(workdir, f"peer_{framework}", workers, application)
    service.env["BENCH_PEER_MONGO_URI"] = with_database(mongodb_uri, database)
    return service


def eve(
    workdir: Path,
    workers: int,
    *,
    mongodb_uri: str,
    database: str,
    gevent: bool = False,
    worker_connections: int = 128,
) -> Service:
    """Eve under gunicorn: sync workers (one request at a time each), or gevent
    workers (``worker_connections`` greenlets each; gunicorn's gevent worker
    monkey-patches the standard library before it imports the app, so PyMongo
    runs on gevent's sockets, and the app checks that it does)."""
    port = free_port()
    kind = ["--worker-class", "gevent", "--worker-connections", str(worker_connections)]
    return Service(
        f"eve-{'gevent-' if gevent else ''}w{workers}",
        [sys.executable, "-m", "gunicorn", "--workers", str(workers),
         *(kind if gevent else []),
         "--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--graceful-timeout", "10",
         "--no-control-socket",
         "benchmarks.apps.eve_app:app"],
        workdir=workdir,
        port=port,
        cwd=ROOT,
        ready_path="/items?max_results=1",
        env=clean_env(
            BENCH_EVE_MONGO_URI=with_database(mongodb_uri, database),
            BENCH_EVE_GEVENT="1" if gevent else "",
        ),
    )  # fmt: skip
