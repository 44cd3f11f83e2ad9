"""Typed configuration: a YAML file, then ``SHOAL_*`` environment overrides.

Everything is validated once, at start-up. Every error names the key that is
wrong and says what is wrong with it::

    >>> load_settings("shoal.yaml")           # doctest: +SKIP
    ConfigError: shoal.yaml is not a valid Shoal config:
      resources.books.pagination_limit: Input should be greater than 0
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .hints import unknown_key, yaml_problem
from .schemas import (
    SchemaProblem,
    check_schema,
    check_value_schema,
    dotted,
    resolve_ref,
    schema_fields,
)
from .version import __version__

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart

#: The secret key a fresh config starts with; refused outside development.
SECRET_KEY_PLACEHOLDER = "change-me"  # noqa: S105 - refused outside development

#: The shortest secret_key for each HMAC algorithm: the hash's output size.
HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

#: ``SHOAL_*`` variables and the config key each one overrides.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "SHOAL_MONGODB_URI": ("mongodb", "uri"),
    "SHOAL_MONGODB_DATABASE": ("mongodb", "database"),
    "SHOAL_REDIS_URL": ("redis", "url"),
    "SHOAL_SECRET_KEY": ("secret_key",),
    "SHOAL_ENVIRONMENT": ("environment",),
    "SHOAL_TRUSTED_PROXIES": ("trusted_proxies",),
    "SHOAL_INSTANCE_NAME": ("instance", "name"),
    "SHOAL_METRICS_BIND": ("metrics", "bind"),
    "SHOAL_METRICS_TOKEN": ("metrics", "token"),
    "SHOAL_TRACING_ENABLED": ("tracing", "enabled"),
}

HttpMethod = Literal["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]


RESOURCE_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE"})
ITEM_METHODS = frozenset({"GET", "HEAD", "PATCH", "PUT", "DELETE"})
#: Paths Shoal serves itself; no resource may take them.
RESERVED_NAMES = frozenset(
    {"healthz", "readyz", "openapi.json", "docs", "auth", "action", "metrics"}
)


def _read_only() -> list[HttpMethod]:
    return ["GET"]


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source} is not a valid Shoal config:\n{lines}")


class _Section(BaseModel):
    # Unknown keys are refused, so a typo is reported instead of ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class MongoDBSettings(_Section):
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


class RedisSettings(_Section):
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


class MetricsSettings(_Section):
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


class TracingSettings(_Section):
    """OpenTelemetry traces, off by default; the standard ``OTEL_*`` variables
    configure them (service name, exporter, endpoint, sampler). They need the
    ``otel`` extra (``pip install 'shoal[otel]'``)."""

    enabled: bool = Field(
        default=False,
        description="Trace every request, its MongoDB and Redis calls as child spans "
        "(SHOAL_TRACING_ENABLED); OTEL_SDK_DISABLED=true turns it off whatever this says.",
    )


class AuthSettings(_Section):
    """Tokens, sessions, API keys and login throttling."""

    issuer: str = "shoal"
    audience: str = "shoal-api"
    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"] = "HS256"
    private_key_file: Path | None = Field(
        default=None, description="PEM signing key for RS256/ES256/EdDSA; HS* use secret_key."
    )
    public_key_file: Path | None = None
    access_token_ttl: int = Field(default=900, gt=0, le=86_400)
    refresh_token_ttl: int = Field(default=14 * 86_400, gt=0)
    session_ttl: int = Field(default=8 * 3600, gt=0)
    session_cookie: str = Field(default="shoal_session", pattern=r"^[A-Za-z0-9_-]+$")
    users_collection: str = "shoal_users"
    apikeys_collection: str = "shoal_apikeys"
    login_slowdown_after: int = Field(
        default=3, ge=1, description="Failed logins (per user or address) before slowing down."
    )
    login_lockout_after: int = Field(
        default=10, ge=1, description="Failed logins before refusing for login_lockout_seconds."
    )
    login_lockout_seconds: int = Field(default=900, gt=0)

    @model_validator(mode="after")
    def _keys_for_algorithm(self) -> AuthSettings:
        if self.algorithm.startswith("HS"):
            return self
        # Imported here, not at the top: only configs with key files pay for
        # loading PyJWT and cryptography (the CLI's light commands do not).
        import jwt

        try:
            algorithm = jwt.get_algorithm_by_name(self.algorithm)
        except NotImplementedError:
            raise ValueError(
                f"algorithm {self.algorithm} needs the cryptography package: "
                "pip install 'shoal[keys]' (HS256, HS384 and HS512 do not)"
            ) from None
        for key in ("private_key_file", "public_key_file"):
            path = getattr(self, key)
            if path is None:
                raise ValueError(f"{key} is required with algorithm {self.algorithm}")
            if not Path(path).is_file():
                raise ValueError(f"{key}: {path} is not a readable file")
            try:
                loaded = algorithm.prepare_key(Path(path).read_bytes())
            except (ValueError, TypeError, jwt.InvalidKeyError) as error:
                raise ValueError(f"{key}: {path} is not a PEM key for {self.algorithm}") from error
            weakness = algorithm.check_key_length(loaded)
            if weakness is not None:
                raise ValueError(f"{key}: {weakness}")
        return self


class ServerSettings(_Section):
    """A server the OpenAPI document names (the docs page's "Try it out" calls it)."""

    url: str = Field(min_length=1, description="Absolute, or relative to the document.")
    description: str | None = None


class DocsSettings(_Section):
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


class RateLimitSettings(_Section):
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


class IdempotencySettings(_Section):
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


class CorsSettings(_Section):
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


class StreamSettings(_Section):
    """Change streams over Server-Sent Events (resources with ``streams: true``)."""

    max_per_worker: int = Field(
        default=1000, gt=0, description="Open streams a worker serves; more get 503."
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


class AdmissionSettings(_Section):
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


class CompressionSettings(_Section):
    """Response compression: brotli or gzip, as the client accepts."""

    enabled: bool = True
    minimum_size: int = Field(default=1024, ge=0, description="Bytes; smaller bodies stay as is.")
    brotli_quality: int = Field(default=4, ge=0, le=11)


class SecurityHeaderSettings(_Section):
    """Headers every response carries (X-Content-Type-Options, X-Frame-Options, ...)."""

    enabled: bool = True
    referrer_policy: str = Field(default="no-referrer", min_length=1)
    hsts_max_age: int = Field(
        default=31_536_000,
        ge=0,
        description="Strict-Transport-Security max-age on requests that came over TLS; 0: none.",
    )
    hsts_include_subdomains: bool = False


class InstanceSettings(_Section):
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


#: Aggregation stages that write, and operators that run JavaScript: never in
#: a configured pipeline.
FORBIDDEN_STAGES = frozenset({"$out", "$merge"})
FORBIDDEN_PIPELINE_OPERATORS = frozenset({"$function", "$accumulator", "$where"})
#: Stages that read another collection (its name under ``from`` or ``coll``).
JOINING_STAGES = {"$lookup": "from", "$graphLookup": "from", "$unionWith": "coll"}
_VARIABLE = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_]*$")
_COLLECTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,119}$")


def walk_pipeline(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair inside a pipeline, at any depth."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield key, value
            yield from walk_pipeline(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_pipeline(item)


def joined_collections(pipeline: list[dict[str, Any]]) -> list[str]:
    """The collections a pipeline reads besides its own (``$lookup``,
    ``$graphLookup``, ``$unionWith``, at any depth)."""
    names: list[str] = []
    for key, value in walk_pipeline(pipeline):
        if key in JOINING_STAGES:
            target = value if isinstance(value, str) else None
            if isinstance(value, Mapping):
                target = value.get(JOINING_STAGES[key])
            if isinstance(target, str):
                names.append(target)
    return names


def pipeline_strings(node: Any) -> Iterator[str]:
    """Every string value in a pipeline (keys excluded), at any depth."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from pipeline_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from pipeline_strings(item)


class AggregationOptions(_Section):
    """Options of the aggregate command (MongoDB's names)."""

    allowDiskUse: bool = False  # MongoDB's option names, as written in a pipeline's options
    maxTimeMS: int = Field(
        default=10_000,
        gt=0,
        le=3_600_000,
        description="Milliseconds MongoDB may spend on one request's pipeline (503 beyond).",
    )
    batchSize: int | None = Field(default=None, gt=0)
    collation: dict[str, Any] | None = None
    comment: str | None = None


class AggregationSettings(_Section):
    """An aggregation endpoint: ``GET /<resource>`` runs ``pipeline``."""

    pipeline: list[dict[str, Any]] = Field(min_length=1)
    options: AggregationOptions = AggregationOptions()
    variables: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="The $names a client may fill in with ?aggregate=, each with the "
        "JSON Schema its value must satisfy (a default applies when the client omits it).",
    )

    @field_validator("pipeline")
    @classmethod
    def _safe_pipeline(cls, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for number, stage in enumerate(pipeline):
            if not isinstance(stage, Mapping) or len(stage) != 1:
                raise ValueError(f"stage {number} must be an object with one $stage key")
            (name,) = stage
            if not str(name).startswith("$"):
                raise ValueError(f"stage {number}: {name!r} is not a stage ($match, $group...)")
            if name in FORBIDDEN_STAGES:
                raise ValueError(f"stage {number}: {name} writes to a collection; not allowed")
        for key, _ in walk_pipeline(pipeline):
            if key in FORBIDDEN_PIPELINE_OPERATORS:
                raise ValueError(f"{key} runs JavaScript on the server; not allowed")
        for target in joined_collections(pipeline):
            if not _COLLECTION.match(target):
                raise ValueError(f"{target!r} is not a collection name")
        return pipeline

    @model_validator(mode="after")
    def _variables_used(self) -> AggregationSettings:
        used = set(pipeline_strings(self.pipeline))
        for name, schema in self.variables.items():
            if not _VARIABLE.match(name):
                raise ValueError(f"variables.{name}: a variable is $ and a name, e.g. $author")
            if name not in used:
                raise ValueError(f"variables.{name}: the pipeline does not use {name}")
            try:
                check_value_schema(schema)
            except SchemaProblem as problem:
                lines = (f"variables.{name}: {line}" for line in problem.problems)
                raise ValueError("\n".join(lines)) from None
        return self


def parse_sort_text(text: str) -> list[tuple[str, int]]:
    """``"year,-title"`` → ``[("year", 1), ("title", -1)]``."""
    keys = []
    for part in text.split(","):
        name = part.strip().lstrip("+-")
        if not name:
            raise ValueError(f"{text!r} is not a sort: write it as 'year,-title'")
        keys.append((name, -1 if part.strip().startswith("-") else 1))
    return keys


class DatasourceSettings(_Section):
    """Where a resource's documents come from (Eve's ``datasource``)."""

    source: str | None = Field(
        default=None, description="MongoDB collection; the resource's name by default."
    )
    filter: dict[str, Any] | None = Field(
        default=None, description="Every read and write of the resource only sees these."
    )
    projection: dict[str, Literal[0, 1]] | None = Field(
        default=None, description="Fields returned by default (1) or never (0)."
    )
    default_sort: list[tuple[str, Literal[1, -1]]] | None = Field(
        default=None, description="The order of lists whose request names no sort."
    )
    aggregation: AggregationSettings | None = None

    @field_validator("source")
    @classmethod
    def _collection_name(cls, source: str | None) -> str | None:
        if source is not None and not _COLLECTION.match(source):
            raise ValueError(f"{source!r} is not a usable collection name")
        return source

    @field_validator("default_sort", mode="before")
    @classmethod
    def _sort_text(cls, value: Any) -> Any:
        return parse_sort_text(value) if isinstance(value, str) else value

    @field_validator("filter")
    @classmethod
    def _safe_filter(cls, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, _ in walk_pipeline(filter or {}):
            if key in FORBIDDEN_PIPELINE_OPERATORS or key == "$expr":
                raise ValueError(f"{key} is not allowed in a filter")
        return filter

    @field_validator("projection")
    @classmethod
    def _one_kind_of_projection(cls, projection: dict[str, int] | None) -> dict[str, int] | None:
        if projection and len(set(projection.values())) > 1:
            raise ValueError("cannot mix inclusion (1) and exclusion (0)")
        for name in projection or {}:
            if not name or name.startswith("$"):
                raise ValueError(f"{name!r} is not a field name")
        return projection


class AdditionalLookupSettings(_Section):
    """A second item URL by another unique field: ``/<resource>/by-<field>/<value>``."""

    field: str = Field(min_length=1)
    url: str | None = Field(
        default=None,
        description='What values look like: a regular expression, or Eve\'s regex("...").',
    )

    @field_validator("url")
    @classmethod
    def _pattern(cls, url: str | None) -> str | None:
        if url is None:
            return None
        pattern = lookup_pattern(url)
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
        return url


#: Eve's way of writing a URL rule: ``regex("...")``; group 2 is the pattern.
EVE_REGEX_URL = re.compile(r"""^regex\((["'])(.*)\1\)$""", re.DOTALL)


def lookup_pattern(url: str) -> str:
    """The regular expression of an ``additional_lookup.url`` (Eve writes
    ``regex("[\\w]+")``)."""
    match = EVE_REGEX_URL.match(url.strip())
    return match.group(2) if match else url


_URL_VARIABLE = re.compile(r"<([^<>]+)>")


class ResourceSettings(_Section):
    """One resource: a MongoDB collection, its JSON Schema and who may do what."""

    # ``schema`` shadows a BaseModel attribute name, hence the alias.
    json_schema: dict[str, Any] = Field(alias="schema")
    datasource: DatasourceSettings = Field(
        default_factory=DatasourceSettings,
        description="A collection name, or Eve's mapping (source, filter, projection, "
        "default_sort, aggregation).",
    )
    url: str | None = Field(
        default=None,
        description="The path the resource is served at, if not its name; may name a "
        "field of the parent: authors/<author>/books.",
    )
    id_field: str = Field(default="_id", description="The field that names items in URLs.")
    additional_lookup: AdditionalLookupSettings | None = None
    soft_delete: bool = False
    versioning: bool = False
    allowed_filters: list[str] = Field(
        default_factory=lambda: ["*"], description='Fields where may filter on; ["*"]: any.'
    )
    pagination: bool = True
    sorting: bool = True
    embedding: bool = True
    embedded_fields: list[str] = Field(default_factory=list)
    resource_methods: list[HttpMethod] = Field(default_factory=_read_only)
    item_methods: list[HttpMethod] = Field(default_factory=_read_only)
    public_methods: list[HttpMethod] = Field(default_factory=list)
    public_item_methods: list[HttpMethod] = Field(default_factory=list)
    allowed_roles: list[str] = Field(default_factory=list)
    allowed_read_roles: list[str] = Field(default_factory=list)
    allowed_write_roles: list[str] = Field(default_factory=list)
    auth_field: str | None = None
    pagination_limit: int = Field(default=50, gt=0, le=10_000)
    default_max_results: int = Field(default=25, gt=0)
    count: bool = Field(default=True, description="Report _meta.total on lists.")
    allow_unknown: bool = False
    allow_regex: bool = False
    readonly: list[str] = Field(default_factory=list)
    unique: list[str] = Field(default_factory=list)
    mongo_indexes: dict[str, list[tuple[str, int]]] = Field(default_factory=dict)
    cache_ttl: int | None = Field(default=None, gt=0, description="Seconds; none: no cache.")
    streams: bool = Field(
        default=False,
        description="Serve change events at /<resource>/_stream and /<resource>/<id>/_stream.",
    )
    atomic_updates: bool = Field(
        default=False,
        description="Accept update operators ($inc, $push, ...) in PATCH, applied in one "
        "atomic write without If-Match.",
    )
    bulk_writes: bool = Field(
        default=False,
        description="Accept PATCH and DELETE on /<resource>?where=... (by filter).",
    )
    max_affected: int = Field(
        default=1000,
        gt=0,
        description="Most documents one write by filter may change; more matches: 409.",
    )
    rate_limits: RateLimitSettings | None = Field(
        default=None, description="This resource's own limits, instead of the global ones."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("json_schema")
    @classmethod
    def _valid_json_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            check_schema(schema)
        except SchemaProblem as problem:
            raise ValueError(str(problem)) from None
        return schema

    @field_validator("datasource", mode="before")
    @classmethod
    def _datasource_name(cls, value: Any) -> Any:
        # A string is the collection's name (the form Shoal took first).
        if value is None:
            return {}
        return {"source": value} if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _aggregation_methods(cls, data: Any) -> Any:
        # An aggregation endpoint only reads lists: no item routes by default.
        if isinstance(data, Mapping):
            datasource = data.get("datasource")
            if isinstance(datasource, Mapping) and datasource.get("aggregation"):
                data = dict(data)
                data.setdefault("item_methods", [])
                data.setdefault("public_item_methods", [])
        return data

    @property
    def aggregation(self) -> AggregationSettings | None:
        return self.datasource.aggregation

    @property
    def url_variables(self) -> list[str]:
        """The fields a sub-resource's URL names (``authors/<author>/books``)."""
        return _URL_VARIABLE.findall(self.url or "")

    @model_validator(mode="after")
    def _consistent_features(self) -> ResourceSettings:
        properties = self.json_schema.get("properties", {})
        paths = {dotted(path): rule for path, rule in schema_fields(self.json_schema)}
        if self.aggregation is not None:
            extra = sorted(set(self.resource_methods) - {"GET", "HEAD"})
            if extra:
                raise ValueError(f"resource_methods: an aggregation endpoint only reads ({extra})")
            if self.item_methods:
                raise ValueError("item_methods: an aggregation endpoint has no items")
            for key in ("soft_delete", "versioning", "additional_lookup", "streams"):
                if getattr(self, key):
                    raise ValueError(f"{key}: not available on an aggregation endpoint")
        if self.streams and self.url_variables:
            raise ValueError("streams: not available on a sub-resource (a url with <variables>)")
        if self.id_field != "_id":
            if self.id_field not in properties:
                raise ValueError(f"id_field: {self.id_field!r} is not a property of the schema")
            if self.id_field not in self.json_schema.get("required", []):
                raise ValueError(f"id_field: {self.id_field!r} must be required in the schema")
        if self.additional_lookup is not None:
            field = self.additional_lookup.field
            if field not in properties:
                raise ValueError(f"additional_lookup.field: {field!r} is not a property")
            if "GET" not in self.item_methods:
                raise ValueError("additional_lookup: serves GET of items; list GET in item_methods")
        if self.url is not None:
            _check_url(self.url, properties)
        for field in self.embedded_fields:
            rule = paths.get(field) or paths.get(field.removesuffix(".[]"))
            relation = _relation_of(rule, self.json_schema) if rule else None
            if relation is None or not relation.get("embeddable"):
                raise ValueError(f"embedded_fields: {field!r} is no embeddable data_relation")
        if "*" in self.allowed_filters and len(self.allowed_filters) > 1:
            raise ValueError('allowed_filters: ["*"] allows every field; list fields or "*"')
        if not self.sorting and self.datasource.default_sort:
            raise ValueError("datasource.default_sort: sorting is off on this resource")
        if self.soft_delete and "_deleted" in properties:
            raise ValueError("schema: _deleted is Shoal's own with soft_delete")
        for path, rule in schema_fields(self.json_schema):
            relation = rule.get("data_relation")
            if relation is None:
                continue
            where = ".".join(path)
            if not isinstance(relation, Mapping) or not isinstance(relation.get("resource"), str):
                raise ValueError(f"schema.{where}.data_relation: needs resource: <name>")
            unknown = sorted(set(relation) - {"resource", "field", "embeddable"})
            if unknown:
                hint = " (versioned relations are not supported)" if "version" in unknown else ""
                raise ValueError(
                    f"schema.{where}.data_relation: unknown keys {', '.join(unknown)}{hint}"
                )
            if not isinstance(relation.get("embeddable", False), bool):
                raise ValueError(f"schema.{where}.data_relation.embeddable: true or false")
        return self

    @model_validator(mode="after")
    def _consistent_methods(self) -> ResourceSettings:
        for method in self.resource_methods:
            if method not in RESOURCE_METHODS:
                raise ValueError(f"resource_methods: {method} is not served on /<resource>")
        if "PATCH" in self.resource_methods and not self.bulk_writes:
            raise ValueError(
                "resource_methods: PATCH on /<resource> changes documents by filter; "
                "it needs bulk_writes: true"
            )
        for method in self.item_methods:
            if method not in ITEM_METHODS:
                raise ValueError(f"item_methods: {method} is not served on /<resource>/<id>")
        for key, public, served in (
            ("public_methods", self.public_methods, self.resource_methods),
            ("public_item_methods", self.public_item_methods, self.item_methods),
        ):
            extra = sorted(set(public) - set(served) - {"HEAD"})
            if extra:
                raise ValueError(f"{key}: {', '.join(extra)} is public but not served")
        if self.default_max_results > self.pagination_limit:
            raise ValueError("default_max_results is above pagination_limit")
        return self


#: A MongoDB database name (MongoDB refuses these characters in one).
_DATABASE_NAME = r"^[^/\\. \"$\x00]{1,63}$"


class DataApiCollectionSettings(_Section):
    """One collection the Data API serves, and the roles that may use it.

    ``roles`` may read and write; ``read_roles`` and ``write_roles``, when given,
    replace it for reads (find, findOne, aggregate) or writes (insert, update,
    replace, delete). A role list left empty gives that kind of access to no one.
    """

    roles: list[str] = Field(default_factory=list)
    read_roles: list[str] | None = None
    write_roles: list[str] | None = None

    @model_validator(mode="after")
    def _someone_may_use_it(self) -> DataApiCollectionSettings:
        if not self.reader_roles and not self.writer_roles:
            raise ValueError("gives no role any access: set roles, read_roles or write_roles")
        return self

    @property
    def reader_roles(self) -> frozenset[str]:
        return frozenset(self.roles if self.read_roles is None else self.read_roles)

    @property
    def writer_roles(self) -> frozenset[str]:
        return frozenset(self.roles if self.write_roles is None else self.write_roles)


class DataApiDatabaseSettings(_Section):
    name: str | None = Field(
        default=None,
        pattern=_DATABASE_NAME,
        description="The MongoDB database this Data API database stands for; "
        "none: the one of the same name.",
    )
    collections: dict[str, DataApiCollectionSettings] = Field(default_factory=dict)

    @field_validator("collections")
    @classmethod
    def _collection_names(
        cls, collections: dict[str, DataApiCollectionSettings]
    ) -> dict[str, DataApiCollectionSettings]:
        for name in collections:
            if not name or "$" in name or "\x00" in name or name.startswith("system."):
                raise ValueError(f"{name!r} is not a collection name MongoDB accepts")
        return collections


class DataApiSourceSettings(_Section):
    databases: dict[str, DataApiDatabaseSettings] = Field(default_factory=dict)

    @field_validator("databases")
    @classmethod
    def _database_names(
        cls, databases: dict[str, DataApiDatabaseSettings]
    ) -> dict[str, DataApiDatabaseSettings]:
        for name in databases:
            if not re.fullmatch(_DATABASE_NAME, name):
                raise ValueError(f"{name!r} is not a database name MongoDB accepts")
        return databases


class DataApiSettings(_Section):
    """The Atlas Data API v1 drop-in (``POST /action/<action>``): off by default,
    and serving only the collections listed under ``data_sources``."""

    enabled: bool = False
    app_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Also serve /app/<app_id>/endpoint/data/v1/action/..., the hosted URL's shape.",
    )
    max_time_ms: int = Field(
        default=60_000, gt=0, description="Longest a find or aggregate may run in MongoDB."
    )
    data_sources: dict[str, DataApiSourceSettings] = Field(
        default_factory=dict,
        description="dataSource name → database name → collection name → roles.",
    )


def _relation_of(rule: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``data_relation`` of a field, or of its items when it is an array."""
    rule = resolve_ref(rule, root)
    relation = rule.get("data_relation")
    if relation is None and isinstance(rule.get("items"), Mapping):
        relation = resolve_ref(rule["items"], root).get("data_relation")
    return relation if isinstance(relation, Mapping) else None


def _check_url(url: str, properties: Mapping[str, Any]) -> None:
    parts = url.strip("/").split("/")
    if not url or url != url.strip("/") or any(not part for part in parts):
        raise ValueError(f"url: {url!r} is a path like authors/<author>/books (no outer /)")
    if parts[0].startswith("<") or parts[-1].startswith("<"):
        raise ValueError("url: must start and end with a fixed name, e.g. authors/<author>/books")
    for part in parts:
        variable = _URL_VARIABLE.fullmatch(part)
        if variable is None:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", part):
                raise ValueError(f"url: {part!r} is not a path segment (letters, digits, _ and -)")
            continue
        name = variable.group(1)
        if not name.isidentifier() or name == "item_id":
            raise ValueError(f"url: <{name}> must be a name like <author> (and not <item_id>)")
        if name not in properties:
            raise ValueError(
                f"url: <{name}> must be a property of the schema (the parent's id it holds)"
            )


def relations(settings: ResourceSettings) -> list[tuple[tuple[str, ...], Mapping[str, Any]]]:
    """Every ``data_relation`` of a resource's schema, with the field's path
    (``("cc", "[]")`` for the items of an array of references)."""
    return [
        (path, rule["data_relation"])
        for path, rule in schema_fields(settings.json_schema)
        if isinstance(rule.get("data_relation"), Mapping)
    ]


class Settings(_Section):
    """The whole validated config of one Shoal deployment."""

    environment: Literal["development", "test", "production"] = "production"
    # Before secret_key: how long the secret must be depends on the algorithm.
    auth: AuthSettings = AuthSettings()
    # validate_default: the placeholder default is refused outside development too.
    secret_key: SecretStr = Field(default=SecretStr(SECRET_KEY_PLACEHOLDER), validate_default=True)
    mongodb: MongoDBSettings = MongoDBSettings()
    redis: RedisSettings = RedisSettings()
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_query_depth: int = Field(default=8, gt=0, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed "
        "(addresses or CIDR ranges; SHOAL_TRUSTED_PROXIES takes them comma-separated).",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> list[IPv4Network | IPv6Network]:
        entries = value.split(",") if isinstance(value, str) else value
        if not isinstance(entries, list):
            raise ValueError("must be a list of addresses or CIDR ranges")
        networks: list[IPv4Network | IPv6Network] = []
        for entry in entries:
            try:
                networks.append(ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR range") from None
        return networks

    docs: DocsSettings = DocsSettings()
    rate_limits: GlobalRateLimitSettings = GlobalRateLimitSettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    cors: CorsSettings = CorsSettings()
    compression: CompressionSettings = CompressionSettings()
    streams: StreamSettings = StreamSettings()
    admission: AdmissionSettings = AdmissionSettings()
    security_headers: SecurityHeaderSettings = SecurityHeaderSettings()
    instance: InstanceSettings = InstanceSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    resources: dict[str, ResourceSettings] = Field(default_factory=dict)
    data_api: DataApiSettings = DataApiSettings()
    hooks: list[str] = Field(
        default_factory=list,
        description="Functions that register event hooks, as module:function; each is "
        "called with the app (modules beside the config file are found too).",
    )

    @field_validator("hooks")
    @classmethod
    def _hook_functions(cls, hooks: list[str]) -> list[str]:
        for entry in hooks:
            if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", entry):
                raise ValueError(f"{entry!r} is not module:function (e.g. orders:register)")
        return hooks

    @field_validator("resources")
    @classmethod
    def _resource_names(cls, resources: dict[str, ResourceSettings]) -> dict[str, ResourceSettings]:
        for name in resources:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
                raise ValueError(
                    f"{name!r} is not a usable resource name (letters, digits, _ and -)"
                )
            if name in RESERVED_NAMES:
                raise ValueError(f"{name!r} is a path Shoal serves itself; rename the resource")
            url = resources[name].url
            if url is not None and url.split("/", 1)[0] in RESERVED_NAMES:
                raise ValueError(f"{name}.url: {url!r} starts with a path Shoal serves itself")
        return resources

    @field_validator("data_api")
    @classmethod
    def _data_api_paths_and_secrets(
        cls, data_api: DataApiSettings, info: ValidationInfo
    ) -> DataApiSettings:
        resources = info.data.get("resources") or {}
        if data_api.app_id is not None and "app" in resources:
            raise ValueError("app_id serves /app/...: rename the resource named app")
        auth: AuthSettings = info.data.get("auth") or AuthSettings()
        mongodb: MongoDBSettings = info.data.get("mongodb") or MongoDBSettings()
        hidden = {auth.users_collection, auth.apikeys_collection}
        for source_name, source in data_api.data_sources.items():
            for database_name, database in source.databases.items():
                if (database.name or database_name) != mongodb.database:
                    continue
                exposed = hidden & set(database.collections)
                if exposed:
                    raise ValueError(
                        f"data_sources.{source_name}.databases.{database_name}"
                        f".collections.{min(exposed)}: Shoal's accounts are never served"
                    )
        return data_api

    @model_validator(mode="after")
    def _resources_refer_to_each_other(self) -> Settings:
        """What one resource names of another exists: data_relation targets,
        collections an aggregation joins, and URLs that do not overlap."""
        collections = {
            resource.datasource.source or name for name, resource in self.resources.items()
        }
        paths: dict[str, str] = {}
        for name, resource in self.resources.items():
            for path, relation in relations(resource):
                target = relation["resource"]
                where = f"resources.{name}.schema.{'.'.join(path)}.data_relation"
                if target not in self.resources:
                    raise ValueError(f"{where}.resource: no resource named {target!r}")
                field = relation.get("field")
                if field is not None and field != self.resources[target].id_field:
                    target_fields = self.resources[target].json_schema.get("properties", {})
                    if field != "_id" and field not in target_fields:
                        raise ValueError(f"{where}.field: {target} has no field {field!r}")
                if self.resources[target].aggregation is not None:
                    raise ValueError(f"{where}.resource: {target} is an aggregation endpoint")
            if resource.aggregation is not None:
                for joined in joined_collections(resource.aggregation.pipeline):
                    if joined not in collections:
                        raise ValueError(
                            f"resources.{name}.datasource.aggregation.pipeline: {joined!r} "
                            "is no resource's collection; only collections the API serves "
                            "can be joined (their read rules apply)"
                        )
            url = resource.url or name
            shape = re.sub(r"<[^>]+>", "<>", url)
            if shape in paths:
                raise ValueError(
                    f"resources.{name}.url: {url!r} is the same path as {paths[shape]}'s"
                )
            paths[shape] = name
        return self

    @model_validator(mode="after")
    def _data_api_collections_have_one_rule(self) -> Settings:
        """A collection the Data API serves is ruled by the resource that
        serves it; two resources (aggregation endpoints aside, which read the
        collection rather than serve it) would make its rules depend on which
        comes first in the file."""
        serving: dict[str, list[str]] = {}
        for name, resource in self.resources.items():
            if resource.aggregation is None:
                serving.setdefault(resource.datasource.source or name, []).append(name)
        for source_name, source in self.data_api.data_sources.items():
            for database_name, database in source.databases.items():
                if (database.name or database_name) != self.mongodb.database:
                    continue
                for collection in database.collections:
                    names = serving.get(collection, [])
                    if len(names) > 1:
                        raise ValueError(
                            f"data_api.data_sources.{source_name}.databases.{database_name}"
                            f".collections.{collection}: the resources {', '.join(names)} "
                            "all serve this collection, so the Data API cannot tell whose "
                            "rules (roles, owner field, filter, projection) apply; serve it "
                            "through one resource, or leave it out of the Data API"
                        )
        return self

    #: The file this config came from (set by the loader, not read from YAML).
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("secret_key")
    @classmethod
    def _refuse_unsafe_secret(cls, secret_key: SecretStr, info: ValidationInfo) -> SecretStr:
        secret = secret_key.get_secret_value()
        development = info.data.get("environment", "production") == "development"
        if secret == SECRET_KEY_PLACEHOLDER:
            if development:
                return secret_key  # never signs: a generated secret does (auth/signing.py)
            raise ValueError(
                "is still the placeholder; set SHOAL_SECRET_KEY "
                "(or environment: development for local work)"
            )
        auth = info.data.get("auth")
        algorithm = auth.algorithm if isinstance(auth, AuthSettings) else "HS256"
        # An HMAC key at least as long as the hash's output (RFC 7518 3.2, and
        # PyJWT's InsecureKeyLengthWarning); RS/ES/EdDSA sign with key files,
        # yet the secret must still not be guessable.
        needed = HMAC_KEY_BYTES.get(algorithm, HMAC_KEY_BYTES["HS256"])
        if len(secret.encode()) < needed:
            hint = "; or leave it out in development to have one generated" if development else ""
            raise ValueError(f"must be at least {needed} bytes with {algorithm}{hint}")
        return secret_key

    @property
    def instance_name(self) -> str:
        """This instance's name: ``instance.name``, else the host name."""
        return self.instance.name or socket.gethostname()

    @property
    def instance_header(self) -> bool:
        """Whether answers carry X-Shoal-Instance (by default in development only)."""
        if self.instance.header is not None:
            return self.instance.header
        return self.environment == "development"

    @property
    def data_dir(self) -> Path:
        """Where the embedded store keeps its data: ``.shoal/`` beside the config."""
        base = self.source.parent if self.source is not None else Path.cwd()
        return base / ".shoal"

    @property
    def generates_secret(self) -> bool:
        """Whether tokens are signed with a generated development secret (no
        secret_key in development; see ``shoal.auth.signing``)."""
        return (
            self.environment == "development"
            and self.auth.algorithm.startswith("HS")
            and self.secret_key.get_secret_value() == SECRET_KEY_PLACEHOLDER
        )

    @property
    def development_secret_file(self) -> Path:
        """Where a generated development secret is kept."""
        return self.data_dir / "secret_key"


def _format_location(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        location = _format_location(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = unknown_key(Settings, item["loc"])
        if not item["loc"] and message.startswith("resources."):
            problems.append(message)  # a check across resources names its own key
        else:
            # One line per problem (a schema's check may find several).
            problems.extend(f"{location}: {line}" for line in message.splitlines())
    return problems


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(raw)
    for variable, path in ENV_OVERRIDES.items():
        value = env.get(variable)
        if value is None or value == "":
            continue
        node = merged
        for key in path[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, Mapping) else {}
            node = node[key]
        node[path[-1]] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file; a missing or malformed file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror}"]) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [yaml_problem(error, path)]) from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["(top level): must be a mapping of config keys"])
    return data


def load_settings(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from a file path or a mapping, then env overrides.

    ``source`` None means the file named by ``SHOAL_CONFIG``, or no file at all.
    """
    env = os.environ if env is None else env
    path: Path | None = None
    if source is None and env.get("SHOAL_CONFIG"):
        source = env["SHOAL_CONFIG"]
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        path = Path(source).resolve()
        raw = read_config_file(path)
    raw = _apply_env(raw, env)
    tracing = raw.get("tracing")
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" and (
        tracing is None or isinstance(tracing, Mapping)
    ):
        # OpenTelemetry's own off switch holds over the config.
        raw["tracing"] = {**(tracing or {}), "enabled": False}
    label = str(path) if path is not None else "the config"
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(label, _problems(error)) from error
    return settings.model_copy(update={"source": path})


#: Where an app keeps its settings (``app.extensions``).
SETTINGS_KEY = "shoal.settings"


def get_settings(app: Quart) -> Settings:
    """The settings an app was built with."""
    settings: Settings = app.extensions[SETTINGS_KEY]
    return settings
