"""The services Shoal talks to and how it shows itself: MongoDB, Redis, the
Prometheus metrics listener, and the instance's name."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from .base import Section


class MongoDBSettings(Section):
    uri: str | None = Field(
        default=None,
        description="MongoDB connection string; none starts the embedded store (development).",
    )
    database: str = Field(default="shoal", min_length=1, pattern=r"^[^/\\. \"$]+$")
    server_selection_timeout_ms: int = Field(default=5000, gt=0)
    operation_timeout_ms: int = Field(
        default=10_000,
        gt=0,
        description="Longest Shoal waits for one MongoDB operation, the driver's retries "
        "included; then the request gets 503 (an operation with its own maxTimeMS gets "
        "that much more).",
    )
    max_pool_size: int = Field(default=100, gt=0)

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return uri


class RedisSettings(Section):
    url: str | None = Field(
        default=None,
        description="redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL; "
        "none keeps shared state in-process (one process only).",
    )
    socket_timeout: float = Field(default=2.0, gt=0)
    key_prefix: str = Field(
        default="shoal:",
        description="Prefix of every key Shoal writes (one Redis, many APIs). No braces: "
        "Shoal's keys carry Redis Cluster hash tags ({...}) after it.",
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str | None) -> str | None:
        schemes = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")
        if url is not None and not url.startswith(schemes):
            raise ValueError(f"must start with one of {', '.join(schemes)}")
        return url

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, prefix: str) -> str:
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                "must not contain { or }: Redis Cluster would take them for a hash tag"
            )
        return prefix


_BIND = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>[0-9]{1,5})$")


def split_bind(bind: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:9464"`` for IPv6) → ``(host, port)``."""
    match = _BIND.fullmatch(bind)
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise ValueError(f"{bind!r} is not HOST:PORT (e.g. 0.0.0.0:9464, [::]:9464)")
    return match["ipv6"] or match["host"], port


class MetricsSettings(Section):
    """Prometheus metrics at /metrics. Not served anywhere unless ``bind`` or
    ``token`` is set (and only then are HTTP requests measured)."""

    bind: str | None = Field(
        default=None,
        description="HOST:PORT of a listener of its own that `shoal serve` opens for the "
        "metrics of all its workers; keep it off the public network.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Serve /metrics on the API's own listener too, to requests that send "
        "Authorization: Bearer <token> (16 characters or more).",
    )

    @field_validator("bind")
    @classmethod
    def _valid_bind(cls, bind: str | None) -> str | None:
        if bind is not None:
            split_bind(bind)
        return bind

    @field_validator("token")
    @classmethod
    def _long_token(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return token

    @property
    def enabled(self) -> bool:
        """Whether metrics are served somewhere (and so counted)."""
        return self.bind is not None or self.token is not None


class TracingSettings(Section):
    """OpenTelemetry traces, off by default; the standard ``OTEL_*`` variables
    configure them (service name, exporter, endpoint, sampler). They need the
    ``otel`` extra (``pip install 'shoal[otel]'``)."""

    enabled: bool = Field(
        default=False,
        description="Trace every request, its MongoDB and Redis calls as child spans "
        "(SHOAL_TRACING_ENABLED); OTEL_SDK_DISABLED=true turns it off whatever this says.",
    )


class InstanceSettings(Section):
    """How this instance names itself in answers (``X-Shoal-Instance``)."""

    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        description="The instance's name in X-Shoal-Instance (SHOAL_INSTANCE_NAME); "
        "none: the host name.",
    )
    header: bool | None = Field(
        default=None,
        description="Send X-Shoal-Instance on every answer; none: only in development.",
    )
