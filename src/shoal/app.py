"""The application factory.

``create_app`` builds a Quart app from a config (a ``Settings``, a mapping, a
YAML path, or None for ``SHOAL_CONFIG``) that a developer extends with their own
blueprints and hooks, exactly as a Flask app::

    app = create_app("shoal.yaml")

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from quart import Quart
from quart_schema import QuartSchema

from .api import register_blueprints
from .api.resources import register_resource_routes
from .auth import Auth
from .cache import ResponseCache
from .config import Settings, load_settings
from .edge import install_edge
from .encoding import install_json_provider
from .errors import register_error_handlers
from .hygiene import HttpHygiene
from .idempotency import Idempotency
from .logs import configure_logging
from .openapi import ApiDocs, quart_schema_options
from .ratelimit import SharedRateLimiter
from .resources import Resources
from .state import create_state
from .storage import Storage

SETTINGS_KEY = "shoal.settings"


def get_settings(app: Quart) -> Settings:
    settings: Settings = app.extensions[SETTINGS_KEY]
    return settings


def create_app(
    config: Settings | Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> Quart:
    """Build a Shoal app; the config is validated here, once."""
    settings = config if isinstance(config, Settings) else load_settings(config)

    app = Quart("shoal", static_folder=None)
    app.extensions[SETTINGS_KEY] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False

    QuartSchema(app, **quart_schema_options(settings))
    install_json_provider(app)
    register_error_handlers(app)

    storage = Storage(settings.mongodb)
    storage.init_app(app)
    state = create_state(settings.redis)
    state.init_app(app)
    auth = Auth(settings, storage, state)
    auth.init_app(app)
    resources = Resources(settings, storage)
    resources.add_indexed(auth.accounts)
    resources.init_app(app)
    # Order matters: before-request hooks run in this order (limits count cache hits).
    SharedRateLimiter(settings, state).init_app(app)
    Idempotency(settings, state).init_app(app)
    cache = ResponseCache(resources, state, settings)
    cache.init_app(app)
    # The edge sits inside compression (installed by HttpHygiene, after it).
    install_edge(app, settings, cache if cache.fast else None)
    HttpHygiene(settings).init_app(app)
    register_blueprints(app)
    register_resource_routes(app, resources)
    ApiDocs(settings.docs).init_app(app)
    return app


def serve_app() -> Quart:
    """The app as `shoal serve` workers load it: config from the environment."""
    _follow_serve_process()
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def _follow_serve_process() -> None:
    """A worker of `shoal serve` dies with it, even when it is killed outright."""
    from .embedded import die_with_parent
    from .server import SERVE_PID_VARIABLE

    parent = os.environ.get(SERVE_PID_VARIABLE)
    if not parent:
        return
    die_with_parent()
    if os.getppid() != int(parent):  # the parent died before we asked
        os._exit(1)
