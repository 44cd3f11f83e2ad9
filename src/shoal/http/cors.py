"""CORS (quart-cors): browsers on the origins in ``cors.allow_origins`` may call
the API; with none (the default), no CORS header is sent and browsers keep
cross-origin pages out. ``Cors`` is one of the app's ordered request policies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import Response
from quart_cors import cors

from ..config import CorsSettings

#: Request headers a cross-origin page may send.
CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "Last-Event-ID",
    "Prefer",
    "X-API-Key",
    "apiKey",
    "api-key",
    "X-CSRF-Token",
    "X-Request-ID",
    # A traced page continues its trace here (tracing.enabled).
    "traceparent",
    "tracestate",
    "baggage",
)
#: Response headers a cross-origin page may read.
CORS_EXPOSE_HEADERS = (
    "ETag",
    "Last-Modified",
    "Location",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Idempotent-Replayed",
    "Preference-Applied",
    "X-Cache",
    "X-Request-ID",
    "X-Total-Count",
    "traceresponse",
)
CORS_ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Cors:
    """The request policy that marks answers for the allowed origins (and
    answers preflights), one of the app's ordered policies (``app.policies``),
    with quart-cors's own after-request hook."""

    def __init__(self, settings: CorsSettings) -> None:
        recorder = _Recorder()
        cors(
            recorder,  # type: ignore[type-var]  # it takes what has after_request
            allow_origin=settings.allow_origins,
            allow_credentials=settings.allow_credentials,
            allow_headers=CORS_ALLOW_HEADERS,
            allow_methods=CORS_ALLOW_METHODS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=settings.max_age,
        )
        assert recorder.after is not None
        self._after = recorder.after

    async def before_request(self) -> None:
        return None

    async def after_request(self, response: Response) -> Response:
        answered: Response = await self._after(response)
        return answered


class _Recorder:
    """Stands in for an app when quart-cors registers its hooks, to keep them."""

    def __init__(self) -> None:
        self.after: Callable[[Response], Awaitable[Response]] | None = None

    def after_request(self, func: Callable[[Response], Awaitable[Response]]) -> None:
        self.after = func

    def before_websocket(self, func: Callable[[], Awaitable[None]]) -> None:
        """Shoal serves no websockets."""
