"""CORS (quart-cors): browsers on the origins in ``cors.allow_origins`` may call
the API; with none (the default), no CORS header is sent and browsers keep
cross-origin pages out."""

from __future__ import annotations

from quart import Quart
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
)
CORS_ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def install_cors(app: Quart, settings: CorsSettings) -> None:
    """Answer CORS preflights and mark responses for the allowed origins, if any."""
    if not settings.allow_origins:
        return
    cors(
        app,
        allow_origin=settings.allow_origins,
        allow_credentials=settings.allow_credentials,
        allow_headers=CORS_ALLOW_HEADERS,
        allow_methods=CORS_ALLOW_METHODS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=settings.max_age,
    )
