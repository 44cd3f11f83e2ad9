"""The whole config of one deployment (``Settings``): its sections, and the
checks that span several of them (resources that name each other, the Data
API's collections, the secret key against the signing algorithm)."""

from __future__ import annotations

import re
import socket
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from ..pipelines import joined_collections
from .auth import HMAC_KEY_BYTES, SECRET_KEY_PLACEHOLDER, AuthSettings
from .base import Section
from .dataapi import DataApiSettings
from .resources import ResourceSettings
from .server import (
    AdmissionSettings,
    CompressionSettings,
    CorsSettings,
    DocsSettings,
    GlobalRateLimitSettings,
    IdempotencySettings,
    SecurityHeaderSettings,
    SlowClientSettings,
    StreamSettings,
)
from .services import (
    InstanceSettings,
    MetricsSettings,
    MongoDBSettings,
    RedisSettings,
    TracingSettings,
)

#: Paths Shoal serves itself; no resource may take them.
RESERVED_NAMES = frozenset(
    {"healthz", "readyz", "openapi.json", "docs", "auth", "action", "metrics"}
)


class Settings(Section):
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
    slow_clients: SlowClientSettings = SlowClientSettings()
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
            for path, relation in resource.relations:
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
                for collection, entry in database.collections.items():
                    names = serving.get(collection, [])
                    if names and entry.rules is not None:
                        raise ValueError(
                            f"data_api.data_sources.{source_name}.databases.{database_name}"
                            f".collections.{collection}.rules: the resource {names[0]} serves "
                            "this collection, and its rules apply on the Data API; put the "
                            f"rules on resources.{names[0]}"
                        )
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
