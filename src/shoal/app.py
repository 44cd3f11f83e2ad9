"""The application factory, and the request pipeline in one place.

``create_app`` builds a Quart app from a config (a ``Settings``, a mapping, a
YAML path, or None for ``SHOAL_CONFIG``) that a developer extends with their own
blueprints and hooks, exactly as a Flask app::

    app = create_app("shoal.yaml")

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

A request passes, in this order (docs/architecture.md draws it):

1. the ASGI middleware of ``middleware()``, outermost first;
2. Quart's before-request hooks of the request policies of ``policies()``, in
   order (their after-request hooks run in the opposite order);
3. the view: blueprint → resource service (or the Data API service) → storage.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from quart import Quart, Response
from quart_schema import QuartSchema

from .api import register_blueprints
from .api.lean import LeanPath, request_hooks
from .api.media import MediaDownloads, media_paths, streamed
from .api.resources import ResourceViews
from .auth import Auth
from .config import SETTINGS_KEY, ConfigError, Settings, load_settings
from .dataapi import DataApi
from .http.admission import Admission
from .http.asgi import Middleware
from .http.compression import compressed
from .http.connections import Connections
from .http.cors import Cors
from .http.deadlines import BodyDeadline, SendDeadline
from .http.edge import Edge
from .http.errors import register_error_handlers
from .http.fast_path import FastPath
from .http.finish_writes import FinishWrites
from .http.instance import InstanceHeader
from .http.json import install_json_provider
from .http.lifecycle import CloseWhenDraining, Lifecycle
from .http.metrics import Metrics, RouteLabel
from .http.request_id import RequestIdFilter
from .http.stack import build_stack
from .logs import configure_logging
from .openapi import ApiDocs, quart_schema_options
from .policies.base import Policy
from .policies.cache import ResponseCache
from .policies.idempotency import Idempotency
from .policies.ratelimit import SharedRateLimiter
from .resources import STREAM_SEGMENT, Resources
from .state import state_for
from .storage import Storage

if TYPE_CHECKING:
    from .http.tracing import Tracing  # imported when tracing is on only (see _tracing)
    from .resources.changes import ChangeFeeds  # when a resource streams (_change_feeds)


class RequestPolicy(Protocol):
    """What runs around every view: a before-request hook that may answer in the
    view's place, and an after-request hook that may change the answer."""

    async def before_request(self) -> Response | None: ...

    async def after_request(self, response: Response) -> Response: ...


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

    # Extensions: each keeps its state in app.extensions and opens and closes
    # its connections with the app (before_serving / after_serving).
    tracing = _tracing(settings)
    if tracing is not None:
        # First: it instruments the MongoDB and Redis clients the others open.
        tracing.init_app(app)
    storage = Storage(settings.mongodb)
    storage.init_app(app)
    state = state_for(settings)
    state.init_app(app)
    auth = Auth(settings, storage, state)
    auth.init_app(app)
    resources = Resources(settings, storage)
    resources.add_indexed(auth.accounts)
    resources.init_app(app)
    data_api = DataApi(settings, storage, resources)
    data_api.init_app(app)
    limiter = SharedRateLimiter(settings, state, resources.routes, auth)
    limiter.init_app(app)
    idempotency = Idempotency(settings, state, resources.routes, auth)
    idempotency.init_app(app)
    cache = ResponseCache(resources, state, settings, auth)
    cache.init_app(app)
    feeds = _change_feeds(resources, storage, settings)
    if feeds is not None:
        feeds.init_app(app)
    lifecycle = Lifecycle()
    lifecycle.init_app(app)
    # The worker's connections, which `shoal serve` records (cli/worker.py).
    connections = Connections()
    connections.init_app(app)
    if feeds is not None:
        # Draining ends event streams, so that hypercorn's wait for in-flight
        # requests is not a wait for clients that never leave.
        lifecycle.on_drain(feeds.close)

    if settings.metrics.enabled:
        Metrics.init_app(app)
    ordered = policies(settings, limiter, idempotency, cache)
    for policy in ordered:
        app.before_request(policy.before_request)
        app.after_request(policy.after_request)
    views = {
        name: ResourceViews(service, auth, settings.trusted_proxies)
        for name, service in resources.services.items()
    }
    register_blueprints(app, resources, feeds, data_api, views)
    ApiDocs(settings.docs).init_app(app)
    register_hooks(app, settings)

    # The lean path serves resources with the same policies and views, as long
    # as the app has no request hook but Shoal's own (counted now).
    lean = partial(
        LeanPath,
        quart=app,
        routes=resources.routes,
        views=views,
        policies=[policy for policy in ordered if isinstance(policy, Policy)],
        own_hooks=request_hooks(app),
        cors=bool(settings.cors.allow_origins),
        max_body=settings.max_body_bytes,
    )
    # Quart types asgi_app with its own event TypedDicts; the protocol is the same.
    quart_app: Any = app.asgi_app
    # Files of media fields: read at their own URLs, written by streamed bodies.
    files = partial(
        MediaDownloads, routes=resources.routes, views=views, max_body=settings.max_body_bytes
    )
    layers = middleware(
        settings,
        cache,
        lifecycle,
        connections,
        lean if resources.services else None,
        tracing,
        media=Media(files, streamed(resources.routes), media_paths(resources.routes)),
    )
    stack: Any = build_stack(quart_app, layers)
    app.asgi_app = stack  # type: ignore[method-assign]
    return app


@dataclass(frozen=True)
class Media:
    """What the middleware needs for media fields (``api/media.py``)."""

    downloads: Middleware
    streamed: Callable[[Any], bool]
    #: Regular expressions of the files' URLs (none: no media fields).
    paths: list[str]


def _tracing(settings: Settings) -> Tracing | None:
    """The app's OpenTelemetry tracing, when ``tracing.enabled``; with it off,
    nothing of OpenTelemetry is imported."""
    if not settings.tracing.enabled:
        return None
    try:
        from .http.tracing import Tracing
    except ImportError as error:
        raise ConfigError(
            str(settings.source or "the config"),
            [f"tracing.enabled: {error}; install the otel extra: pip install 'shoal[otel]'"],
        ) from error
    return Tracing(os.environ)


def _change_feeds(resources: Resources, storage: Storage, settings: Settings) -> ChangeFeeds | None:
    """The change streams of the resources with ``streams: true``; with none,
    the streams' modules (and RE2, which matches their filters) are not imported."""
    if not any(service.resource.settings.streams for service in resources.services.values()):
        return None
    from .resources.changes import ChangeFeeds  # a resource streams: load them now

    return ChangeFeeds(resources, storage, settings.streams)


def register_hooks(app: Quart, settings: Settings) -> None:
    """Call the config's ``hooks`` functions (``module:function``) with the
    app, so that every worker of ``shoal serve`` has them. A module beside the
    config file is found as if it were installed."""
    if not settings.hooks:
        return
    if settings.source is not None and str(settings.source.parent) not in sys.path:
        sys.path.insert(0, str(settings.source.parent))
    for entry in settings.hooks:
        module_name, _, function_name = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigError(
                str(settings.source or "the config"),
                [f"hooks: cannot import {module_name}: {error}"],
            ) from error
        register = getattr(module, function_name, None)
        if not callable(register):
            raise ConfigError(
                str(settings.source or "the config"),
                [f"hooks: {module_name} has no function {function_name}"],
            )
        try:
            register(app)
        except Exception as error:  # the developer's code: say which entry failed
            raise ConfigError(
                str(settings.source or "the config"), [f"hooks: {entry} failed: {error!r}"]
            ) from error


def middleware(
    settings: Settings,
    cache: ResponseCache,
    lifecycle: Lifecycle,
    connections: Connections,
    lean: Middleware | None = None,
    tracing: Tracing | None = None,
    media: Media | None = None,
) -> list[Middleware]:
    """The ASGI middleware in front of Quart, outermost first."""
    stack: list[Middleware] = []
    has_media = media is not None and bool(media.paths)
    if tracing is not None:
        # Outermost: the request's span holds everything below (tracing on only).
        stack.append(tracing.middleware)
    if settings.metrics.enabled:
        # Outermost, so that every answer is counted and timed (the fast path's,
        # errors, compression included); also answers /metrics with the token.
        token = settings.metrics.token
        secret = token.get_secret_value() if token is not None else None
        stack.append(partial(Metrics, token=secret))
    if settings.compression.enabled:
        # Outside the rest, so that every answer is compressed, the fast path's too;
        # event streams excepted (a compressor would hold their events back).
        stream_paths = [rf"/{STREAM_SEGMENT}$"]
        if media is not None:
            stream_paths += media.paths  # a file's ranges are of its stored bytes
        stack.append(partial(compressed, settings=settings.compression, excluded=stream_paths))
    # Request ids and security headers, on every answer (errors and 304s too).
    stack.append(
        partial(Edge, policy=settings.security_headers, trusted_proxies=settings.trusted_proxies)
    )
    if settings.instance_header:
        # Which instance answered (development, or when configured).
        stack.append(partial(InstanceHeader, name=settings.instance_name))
    # While the worker drains before stopping, keep-alive connections end.
    stack.append(partial(CloseWhenDraining, lifecycle=lifecycle))
    # An answer the client does not take in time resets its connection: in front
    # of everything that answers (the fast path's large cache hits, streams too).
    slow = settings.slow_clients
    stack.append(partial(SendDeadline, timeout=slow.send_timeout, connections=connections))
    if cache.fast:
        # Anonymous public GETs that hit the cache, answered without Quart.
        stack.append(partial(FastPath, answerer=cache))
    # The whole body, within its deadlines, before anything counts the request
    # as work (408 for a body that comes too slowly).
    stack.append(
        partial(
            BodyDeadline,
            settings=slow,
            max_bytes=settings.max_body_bytes,
            # Multipart writes of files: read as they come, under the same deadlines.
            streamed=media.streamed if media is not None and has_media else None,
        )
    )
    if settings.admission.enabled:
        # Everything else waits its turn (FIFO) for one of a bounded number of
        # slots, held until its answer starts to go out.
        stack.append(partial(Admission, settings=settings.admission, bypass=_unqueued))
    # A write whose body has arrived runs to its end, even if the client leaves.
    stack.append(FinishWrites)
    if media is not None and has_media:
        # The files of media fields, streamed from GridFS (api/media.py).
        stack.append(media.downloads)
    if lean is not None:
        # Resources' requests, served by the policies and views without Quart
        # unless something needs its request (api/lean.py).
        stack.append(lean)
    return stack


#: Paths that never wait in the admission queue: probes, and event streams
#: (which last as long as their client and have their own limit).
_PROBES = frozenset({"/healthz", "/readyz"})


def _unqueued(path: str) -> bool:
    return path in _PROBES or path.endswith(f"/{STREAM_SEGMENT}")


def policies(
    settings: Settings,
    limiter: SharedRateLimiter,
    idempotency: Idempotency,
    cache: ResponseCache,
) -> list[RequestPolicy]:
    """The request policies around every view, in the order their
    before-request hooks run (their after-request hooks run the other way)."""
    ordered: list[RequestPolicy] = []
    if settings.metrics.enabled or settings.tracing.enabled:
        # First: the route template the metrics label the request with, and
        # the request's span is named after.
        ordered.append(RouteLabel())
    # Limits next: a refused request costs one Redis round trip, and cache
    # hits are counted too.
    ordered += [limiter, idempotency]
    if cache.cached:
        ordered.append(cache)
    if settings.cors.allow_origins:
        # Last: its after-request hook runs first, so every answer the other
        # policies shape (a cache hit, a replay, a 429) carries CORS headers.
        ordered.append(Cors(settings.cors))
    return ordered


def serve_app() -> Quart:
    """The app as `shoal serve` workers load it: config from the environment."""
    settings = load_settings()
    filters: list[logging.Filter] = [RequestIdFilter()]
    if settings.tracing.enabled:
        from .http.tracing import TraceIdFilter  # tracing on only

        filters.append(TraceIdFilter())
    configure_logging(settings.log_level, filters=filters)
    return create_app(settings)
