"""`shoal serve`: the app's workers under hypercorn, with the settings of
``hypercorn.toml``, run by Shoal's supervisor (``supervisor.py``).

The defaults below are the ones the repository's ``hypercorn.toml`` holds (a
test keeps the two equal); a ``hypercorn.toml`` in the working directory, or
the file named by ``SHOAL_HYPERCORN_CONFIG``, replaces them, and the command's
flags override both. One key of the file is Shoal's, not hypercorn's:
``drain_delay``, the seconds a stopping server keeps serving with ``/readyz``
answering 503 before it closes its listener.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.config import Config as HypercornConfig

from ..app import create_app
from ..config import ConfigError, Settings, load_settings
from ..logs import configure_logging
from ..storage.embedded import EmbeddedStore, EmbeddedStoreError, development_store
from ..system import SERVE_PID_VARIABLE
from .metrics import start_metrics
from .output import warn
from .supervisor import Supervisor
from .worker import WORKER_CLASSES

#: What `shoal serve` uses when no hypercorn.toml is found.
HYPERCORN_DEFAULTS: dict[str, Any] = {
    "bind": ["127.0.0.1:8000"],
    "workers": 1,
    "worker_class": "uvloop",
    "graceful_timeout": 10,
    "backlog": 2048,
    "keep_alive_timeout": 5,
    "drain_delay": 0,
}


class ServeError(Exception):
    """`shoal serve` cannot start; the message says why.

    ``status`` is the exit status: 2 for a bad config or invocation, 1 when the
    environment refused (port taken, store would not start).
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeOptions:
    config: str | None = None
    bind: str | None = None
    workers: int | None = None
    #: Let a development config listen on an address other machines can reach.
    allow_non_loopback: bool = False


@dataclass(frozen=True)
class ServeConfig:
    """What `shoal serve` runs with: hypercorn's config and Shoal's own keys."""

    hypercorn: HypercornConfig
    #: Seconds between SIGTERM and closing the listener, serving with /readyz 503.
    drain_delay: float


def serve_config(options: ServeOptions) -> ServeConfig:
    """The toml file (or the defaults), then the flags."""
    named = os.environ.get("SHOAL_HYPERCORN_CONFIG")
    toml = Path(named or "hypercorn.toml")
    settings = dict(HYPERCORN_DEFAULTS)
    if toml.is_file():
        # The file's keys override Shoal's defaults; keys it omits keep them.
        try:
            settings.update(tomllib.loads(toml.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ServeError(f"{toml}: not a readable TOML file: {error}") from error
    elif named:
        raise ServeError(f"SHOAL_HYPERCORN_CONFIG names {named}, which is not a file")
    drain_delay = settings.pop("drain_delay")
    if isinstance(drain_delay, bool) or not isinstance(drain_delay, int | float) or drain_delay < 0:
        raise ServeError(f"{toml}: drain_delay must be a number of seconds, 0 or more")
    config = HypercornConfig.from_mapping(settings)
    if options.bind is not None:
        config.bind = [options.bind]
    if options.workers is not None:
        config.workers = options.workers
    if isinstance(config.workers, bool) or not isinstance(config.workers, int):
        raise ServeError(f"{toml}: workers must be a whole number")
    if config.workers < 1:
        raise ServeError("--workers must be at least 1")
    if config.worker_class not in WORKER_CLASSES:
        raise ServeError(
            f"worker_class {config.worker_class!r} is not supported; "
            f"use one of {', '.join(WORKER_CLASSES)}"
        )
    # hypercorn logs through the "hypercorn.error" logger, which Shoal's JSON
    # handler on the root logger formats; no second plain-text handler.
    config.errorlog = logging.getLogger("hypercorn.error")
    return ServeConfig(config, float(drain_delay))


def _urls(config: HypercornConfig) -> list[str]:
    return [f"http://{bind}" for bind in config.bind if not bind.startswith(("unix:", "fd:"))]


def serve(options: ServeOptions) -> int:
    """Validate, bind, start the embedded store if needed, and run the workers."""
    try:
        settings = load_settings(options.config)
    except ConfigError as error:
        raise ServeError(str(error)) from error
    configure_logging(settings.log_level)
    served = serve_config(options)
    config = served.hypercorn
    if settings.redis.url is None and config.workers > 1:
        raise ServeError(
            f"--workers {config.workers} needs Redis: without redis.url (SHOAL_REDIS_URL) "
            "shared state lives in one process, and workers would disagree on sessions, "
            "rate limits and the cache. Set a Redis URL or use --workers 1."
        )
    # Workers are separate processes that rebuild the settings from the environment.
    if settings.source is not None:
        os.environ["SHOAL_CONFIG"] = str(settings.source)

    if settings.environment == "development" and not options.allow_non_loopback:
        _refuse_exposure(config)
    # Each worker builds the app; building it once here first (it connects to
    # nothing) stops a config whose hooks do not load before anything starts.
    try:
        create_app(settings)
    except ConfigError as error:
        raise ServeError(str(error)) from error

    def announce() -> None:
        for url in _urls(config):
            print(f"Shoal is serving {url} (workers: {config.workers})", flush=True)

    supervisor = Supervisor(
        config, workers=config.workers, drain_delay=served.drain_delay, on_serving=announce
    )
    # Bound before anything is announced or started: a taken address fails here.
    try:
        supervisor.bind()
    except OSError as error:
        message = f"cannot listen on {', '.join(config.bind)}: {error.strerror}"
        raise ServeError(message, status=1) from None
    # Workers die with this process, even if it is killed outright (shoal.system).
    os.environ[SERVE_PID_VARIABLE] = str(os.getpid())
    start_metrics(settings)  # before the workers start: they inherit its directory

    store: EmbeddedStore | None = None
    try:
        # Started after the sockets exist, it does not inherit them (subprocess
        # closes inherited descriptors), so it cannot keep the port open.
        if settings.mongodb.uri is None:
            store = _start_embedded(settings)
        for message in start_up_warnings(settings):
            warn(message)
        # "Shoal is serving" once a worker accepts connections (announce).
        return supervisor.run()
    finally:
        supervisor.close()
        # After the workers have closed their MongoDB clients.
        if store is not None:
            store.stop()


def start_up_warnings(settings: Settings) -> list[str]:
    """What `shoal serve` warns of as it starts, besides the embedded store."""
    warnings = []
    if not settings.resources and not settings.data_api.enabled:
        warnings.append(
            f"{settings.source}: no resources and no data_api: the API serves nothing "
            "but /auth, /docs and the health checks (see docs/reference/configuration.md)"
        )
    if settings.redis.url is None:
        warnings.append(
            "no redis.url: sessions, refresh tokens, revocations, rate limits, idempotency "
            "keys and the cache live in this one process (so --workers 1 only, and a "
            "restart ends every session); set redis.url (SHOAL_REDIS_URL) to share them "
            "between workers and instances"
        )
    if settings.generates_secret:
        warnings.append(
            "no secret_key: tokens are signed with a random secret kept in "
            f"{settings.development_secret_file} (development only)"
        )
    return warnings


def _refuse_exposure(config: HypercornConfig) -> None:
    """A development server listens on loopback only, unless told otherwise."""
    exposed = [bind for bind in config.bind if not is_loopback_bind(bind)]
    if exposed:
        raise ServeError(
            f"environment is development, and {', '.join(exposed)} can be reached from "
            "other machines. A development server (embedded store, generated secret, "
            "in-process state) is meant for this machine: bind 127.0.0.1 "
            "(--bind 127.0.0.1:PORT), or pass --allow-non-loopback if you mean to expose it."
        )


def is_loopback_bind(bind: str) -> bool:
    """Whether a hypercorn bind (``host:port``, ``[v6]:port``, ``unix:``, ``fd://``)
    is reachable from this machine only. A name counts when every address it
    resolves to is a loopback one."""
    if bind.startswith(("unix:", "fd://")):
        return True
    host = bind.rsplit(":", 1)[0] if ":" in bind else bind
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback for address in addresses
    )


def _start_embedded(settings: Settings) -> EmbeddedStore:
    try:
        store = development_store(settings)
        uri = store.start()
    except EmbeddedStoreError as error:
        status = 2 if settings.environment != "development" else 1
        raise ServeError(str(error), status=status) from error
    os.environ["SHOAL_MONGODB_URI"] = uri
    warn(
        f"no mongodb.uri: using the embedded store at {uri}, data in {settings.data_dir} "
        "(development only, not MongoDB)"
    )
    return store
