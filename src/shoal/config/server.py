"""How the server answers: its docs page, rate limits, idempotency, CORS,
streams, admission, slow clients, compression and security headers."""

from __future__ import annotations

import re

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..version import __version__
from .base import Section


class ServerSettings(Section):
    """A server the OpenAPI document names (the docs page's "Try it out" calls it)."""

    url: str = Field(min_length=1, description="Absolute, or relative to the document.")
    description: str | None = None


class DocsSettings(Section):
    """The OpenAPI document (/openapi.json) and the docs page (/docs)."""

    enabled: bool = Field(default=True, description="Serve the docs page at /docs.")
    openapi: bool = Field(default=True, description="Serve the document at /openapi.json.")
    title: str = Field(default="Shoal", min_length=1)
    version: str = Field(default=__version__, min_length=1)
    description: str | None = Field(default=None, description="Markdown; none: Shoal's own.")
    servers: list[ServerSettings] = Field(
        default_factory=list, description="None: the server that serves the document."
    )

    @field_validator("openapi")
    @classmethod
    def _page_needs_document(cls, openapi: bool, info: ValidationInfo) -> bool:
        if not openapi and info.data.get("enabled", True):
            raise ValueError("the docs page loads the document: set enabled: false as well")
        return openapi


_RATE = re.compile(
    r"^\s*([1-9][0-9]*)\s*(?:/|per)\s*([1-9][0-9]*)?\s*"
    r"(seconds?|minutes?|hours?|days?|secs?|mins?|s|m|h|d)\s*$",
    re.IGNORECASE,
)
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_RATE_UNITS |= {"h": 3600, "hour": 3600, "d": 86_400, "day": 86_400}


def parse_rate(text: str) -> tuple[int, float]:
    """``"100/minute"`` → ``(100, 60.0)``: a request count and a period in seconds.

    Accepted: ``COUNT/UNIT`` or ``COUNT/N UNITS`` (``"10/5 seconds"``), ``per`` for
    ``/``, units ``second``, ``minute``, ``hour``, ``day`` (or ``s``, ``m``, ``h``, ``d``).
    """
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate; write it as COUNT/PERIOD, e.g. '100/minute'")
    count, multiple, unit = match.groups()
    unit = unit.lower()
    seconds = _RATE_UNITS[unit if len(unit) == 1 else unit.removesuffix("s")]
    return int(count), float(int(multiple or 1) * seconds)


class RateLimitSettings(Section):
    """Requests each caller may make, per method class, as ``COUNT/PERIOD``.

    A caller is its API key, else its user, else its client address.
    """

    read: str | None = Field(default=None, description="GET, HEAD and OPTIONS, e.g. 1000/minute.")
    write: str | None = Field(
        default=None, description="POST, PUT, PATCH and DELETE, e.g. 100/minute."
    )

    @field_validator("read", "write")
    @classmethod
    def _valid_rate(cls, rate: str | None) -> str | None:
        if rate is not None:
            parse_rate(rate)
        return rate

    def rate_of(self, kind: str, own: RateLimitSettings | None) -> tuple[str | None, bool]:
        """The limit of ``kind`` ("read" or "write") requests on a resource with
        limits ``own``: its own where it sets one, else this (global) one; and
        whether it is the resource's own (then it has a bucket of its own)."""
        mine: str | None = getattr(own, kind) if own is not None else None
        if mine is not None:
            return mine, True
        shared: str | None = getattr(self, kind)
        return shared, False


class GlobalRateLimitSettings(RateLimitSettings):
    """The limits of every route (a resource's ``rate_limits`` replaces them there)."""

    fail_open: bool = Field(
        default=True,
        description="While Redis is unreachable: true lets requests through unlimited, "
        "false refuses them with 503.",
    )


class IdempotencySettings(Section):
    """``Idempotency-Key`` on the writes of resources (POST of a collection; PATCH, PUT
    and DELETE of an item) and the Data API's write actions: the first response is kept
    and replayed."""

    ttl: int = Field(default=86_400, gt=0, description="Seconds a stored response is kept.")
    lock_ttl: int = Field(
        default=60,
        gt=0,
        description="Seconds a request in progress holds its key (a crashed worker's "
        "claim lapses after this).",
    )


class CorsSettings(Section):
    """Cross-origin requests from browsers (through quart-cors); none allowed by default."""

    allow_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed ("https://app.example.com"), or ["*"] for any.',
    )
    allow_credentials: bool = Field(
        default=False, description="Let browsers send cookies and Authorization cross-origin."
    )
    max_age: int | None = Field(
        default=600, ge=0, description="Seconds a browser may keep a preflight answer."
    )

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port], no path) or '*'"
                )
        return origins

    @model_validator(mode="after")
    def _no_credentials_for_everyone(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials needs a list of origins, not '*'")
        return self


class StreamSettings(Section):
    """Change streams over Server-Sent Events (resources with ``streams: true``)."""

    max_per_worker: int = Field(
        default=1000, gt=0, description="Open streams a worker serves; more get 503."
    )
    max_per_caller: int = Field(
        default=100,
        gt=0,
        description="Open streams one caller (API key, user, or client address) may "
        "hold on a worker; more get 429.",
    )
    heartbeat: float = Field(
        default=15.0, gt=0, description="Seconds between keep-alive comments on an idle stream."
    )
    backlog: int = Field(
        default=1000,
        gt=0,
        description="Events a slow subscriber may fall behind before its stream is ended "
        "(it reconnects with Last-Event-ID and misses nothing).",
    )
    replay: int = Field(
        default=1000,
        ge=0,
        description="Recent events a worker keeps per resource, so that a client "
        "reconnecting to the same worker resumes without a new change stream.",
    )


class AdmissionSettings(Section):
    """How many requests a worker runs at once; the rest wait in line (FIFO)."""

    enabled: bool = True
    max_in_flight: int = Field(
        default=64, gt=0, description="Requests a worker runs at once; more wait in line."
    )
    queue_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a request may wait for its turn before it gets 503.",
    )


class SlowClientSettings(Section):
    """Deadlines for clients that send a request's body, or take an answer, too
    slowly: past one, the connection is closed (see docs/how-to/operations.md)."""

    body_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a request's whole body may take to arrive; then 408.",
    )
    body_grace: float = Field(
        default=1.0, ge=0, description="Seconds before body_min_rate applies to a body."
    )
    body_min_rate: int = Field(
        default=1024,
        ge=0,
        description="Bytes per second a body must keep up with after body_grace; "
        "0: no minimum rate.",
    )
    send_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one send of an answer may wait for the client to take it; "
        "then the connection is closed.",
    )

    @model_validator(mode="after")
    def _grace_before_timeout(self) -> SlowClientSettings:
        if self.body_min_rate > 0 and self.body_grace >= self.body_timeout:
            raise ValueError(
                f"body_grace ({self.body_grace:g}) must be shorter than body_timeout "
                f"({self.body_timeout:g}), or body_min_rate never applies "
                "(set body_min_rate: 0 for no minimum rate)"
            )
        return self


class CompressionSettings(Section):
    """Response compression: brotli or gzip, as the client accepts."""

    enabled: bool = True
    minimum_size: int = Field(default=1024, ge=0, description="Bytes; smaller bodies stay as is.")
    brotli_quality: int = Field(default=4, ge=0, le=11)


class SecurityHeaderSettings(Section):
    """Headers every response carries (X-Content-Type-Options, X-Frame-Options, ...)."""

    enabled: bool = True
    referrer_policy: str = Field(default="no-referrer", min_length=1)
    hsts_max_age: int = Field(
        default=31_536_000,
        ge=0,
        description="Strict-Transport-Security max-age on requests that came over TLS; 0: none.",
    )
    hsts_include_subdomains: bool = False
