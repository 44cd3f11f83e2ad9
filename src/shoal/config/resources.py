"""Resources: a collection, its JSON Schema, its URLs, methods and roles, and
the datasource behind it (a filter, a projection, an aggregation pipeline)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..pipelines import (
    FILTER_REFUSED_OPERATORS,
    JAVASCRIPT_OPERATORS,
    WRITING_STAGES,
    joined_collections,
    pipeline_strings,
    walk,
)
from ..schemas import (
    SchemaProblem,
    check_schema,
    check_value_schema,
    dotted,
    resolve_ref,
    schema_fields,
)
from .base import Section
from .media import MediaField, MediaSettings, media_fields
from .rules import RulesSettings
from .server import RateLimitSettings

HttpMethod = Literal["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]

RESOURCE_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE"})
ITEM_METHODS = frozenset({"GET", "HEAD", "PATCH", "PUT", "DELETE"})


def _read_only() -> list[HttpMethod]:
    return ["GET"]


_VARIABLE = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_]*$")
_COLLECTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,119}$")


class AggregationOptions(Section):
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


class AggregationSettings(Section):
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
            if name in WRITING_STAGES:
                raise ValueError(f"stage {number}: {name} writes to a collection; not allowed")
        for key, _ in walk(pipeline):
            if key in JAVASCRIPT_OPERATORS:
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


class DatasourceSettings(Section):
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
        for key, _ in walk(filter or {}):
            if key in FILTER_REFUSED_OPERATORS:
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


def _check_root_fields(fields: list[str], projection: Mapping[str, int] | None) -> None:
    """Refuse a ``%%root.<field>`` of the rules that ``datasource.projection``
    hides: the role of each document is chosen on the stored field, which the
    resource never fetches then (nor should a role's choice tell its value)."""
    if not projection:
        return
    inclusive = 1 in projection.values()
    for field in fields:
        if field.startswith("_"):  # meta fields are always fetched
            continue
        parts = field.split(".")
        whole = {".".join(parts[: end + 1]) for end in range(len(parts))} & set(projection)
        part = any(name.startswith(field + ".") for name in projection)
        if (not whole) if inclusive else (bool(whole) or part):
            raise ValueError(
                f"rules: apply_when names %%root.{field}, which datasource.projection hides"
            )


#: Eve's way of writing a URL rule: ``regex("...")``; group 2 is the pattern.
EVE_REGEX_URL = re.compile(r"""^regex\((["'])(.*)\1\)$""", re.DOTALL)


class AdditionalLookupSettings(Section):
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
        pattern = _unwrap_eve_regex(url)
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
        return url

    @property
    def pattern(self) -> str | None:
        """The regular expression values must match (Eve writes ``url`` as
        ``regex("[\\w]+")``); None: any value."""
        return _unwrap_eve_regex(self.url) if self.url else None


def _unwrap_eve_regex(url: str) -> str:
    match = EVE_REGEX_URL.match(url.strip())
    return match.group(2) if match else url


_URL_VARIABLE = re.compile(r"<([^<>]+)>")


class ResourceSettings(Section):
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
    cache_tier: Literal["redis", "worker"] = Field(
        default="redis",
        description="redis: every read asks Redis, and a write on any instance is seen at once; "
        "worker: each worker also keeps answers in its memory, dropped when Redis pushes the "
        "resource's invalidation (a read may be stale for the push's way).",
    )
    cache_worker_entries: int = Field(
        default=1000, gt=0, description="Most answers of the resource one worker keeps in memory."
    )
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
    media: MediaSettings = Field(
        default_factory=MediaSettings,
        description="Limits of multipart writes of the media fields (files).",
    )
    rules: RulesSettings | None = Field(
        default=None,
        description="Per-role document filters and field permissions (Atlas App Services "
        "rules); see docs/how-to/rules.md.",
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
    def relations(self) -> list[tuple[tuple[str, ...], Mapping[str, Any]]]:
        """Every ``data_relation`` of the schema, with the field's path
        (``("cc", "[]")`` for the items of an array of references)."""
        return [
            (path, rule["data_relation"])
            for path, rule in schema_fields(self.json_schema)
            if isinstance(rule.get("data_relation"), Mapping)
        ]

    @property
    def media_fields(self) -> dict[str, MediaField]:
        """The schema's media fields (files), by name."""
        return media_fields(self.json_schema)

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
        _check_media(self)
        if self.cache_tier == "worker" and self.cache_ttl is None:
            raise ValueError("cache_tier: worker keeps cached answers; set cache_ttl too")
        if self.rules is not None and self.aggregation is not None:
            raise ValueError("rules: not yet supported on an aggregation endpoint")
        if self.rules is not None:
            _check_root_fields(self.rules.root_fields, self.datasource.projection)
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


def _check_media(settings: ResourceSettings) -> None:
    """Media fields: declared as Shoal serves them, on a resource that can."""
    files = media_fields(settings.json_schema)  # ValueError names a bad one
    if not files:
        return
    if settings.aggregation is not None:
        raise ValueError("schema: an aggregation endpoint has no media fields")
    for key in ("atomic_updates", "versioning"):
        if getattr(settings, key):
            raise ValueError(f"{key}: not available with media fields (files) yet")


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
