"""The model of a resource: ``Resource`` (one configured resource, its
collection, compiled schema and rules), a ``Page`` of documents, and soft
deletion's marks. Every other module of the package builds on these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pymongo import ASCENDING, IndexModel

from ..config import ResourceSettings
from ..errors import NotFound
from .access import conjoin
from .documents import Document
from .endpoints import STREAM_SEGMENT
from .fields import Fields, Kind, equals
from .ids import IdRule
from .query import FEATURE_FIELDS, META_FIELDS, QueryRules
from .schema import DocumentSchema
from .visibility import FieldMask

WriteListener = Callable[["Resource"], Awaitable[None]]


@dataclass(frozen=True)
class Page:
    items: list[Document]
    total: int | None
    has_next: bool
    #: How ``total`` was counted: "exact", "estimated", or None (not counted).
    counted: str | None = None
    #: With keyset pagination: the cursor of the next page, if there is one.
    next_cursor: str | None = None


#: The message of a soft-deleted document's 404.
DELETED_MESSAGE = "the document was deleted; PUT or PATCH with its _etag restores it"


class SoftDeleted(NotFound):
    """A soft-deleted document: a 404 that still shows it (Eve's answer)."""

    def __init__(self, document: Document) -> None:
        super().__init__(DELETED_MESSAGE)
        self.document = document


DELETED = "_deleted"


class Resource:
    """One configured resource: its collection, compiled schema and rules."""

    def __init__(
        self, name: str, settings: ResourceSettings, *, max_query_depth: int, etag_key: bytes
    ) -> None:
        self.name = name
        #: What its content ETags are made with (``documents.etag_key``).
        self.etag_key = etag_key
        self.settings = settings
        self.collection = settings.datasource.source or name
        #: The path it is served at (``books``, ``authors/<author>/books``).
        self.path = settings.url or name
        singular = name[:-1] if name.endswith("s") and len(name) > 1 else name
        #: As Eve names an item in its links: "books" → "Book".
        self.item_title = singular.capitalize()
        self.singular = singular
        self.schema = DocumentSchema(
            settings.json_schema,
            allow_unknown=settings.allow_unknown,
            readonly=settings.readonly,
            server_fields=[settings.auth_field] if settings.auth_field else [],
        )
        self.fields = Fields(settings.json_schema)
        #: The media fields (files in GridFS), by name.
        self.media = settings.media_fields
        properties = settings.json_schema.get("properties", {})
        #: ``_id``, and the field that names items in URLs (``id_field``).
        self.mongo_ids = IdRule("_id", properties.get("_id"))
        self.ids = (
            self.mongo_ids
            if settings.id_field == "_id"
            else IdRule(settings.id_field, properties[settings.id_field])
        )
        kinds = dict(self.fields.kinds)
        features = tuple(
            name
            for name, on in zip(
                FEATURE_FIELDS, (settings.soft_delete, settings.versioning), strict=True
            )
            if on
        )
        extra_id = (settings.id_field,) if settings.id_field != "_id" else ()
        self.rules = QueryRules(
            pagination_limit=settings.pagination_limit,
            default_max_results=settings.default_max_results,
            count=settings.count,
            allow_regex=settings.allow_regex,
            max_depth=max_query_depth,
            kinds=kinds,
            allowed_filters=(
                None if "*" in settings.allowed_filters else frozenset(settings.allowed_filters)
            ),
            sorting=settings.sorting,
            pagination=settings.pagination,
            default_sort=[(name, int(way)) for name, way in settings.datasource.default_sort or []]
            or None,
            projection=settings.datasource.projection,
            meta_fields=(*META_FIELDS, *features, *extra_id),
            id_kind=Kind.OBJECTID if self.mongo_ids.kind == "objectid" else None,
        )
        #: What every caller may read of its documents: all but what
        #: ``datasource.projection`` leaves out (meta fields always).
        self.mask = FieldMask.from_projection(
            settings.datasource.projection, meta=self.rules.meta_fields
        )
        #: Every resource of the config, by name (filled in by ``Resources``).
        self.catalog: dict[str, Resource] = {name: self}

    def rule(self, kind: str) -> str:
        """The URL rule of one kind of the resource's routes (the route table's
        rows, ``routes.py``, and the renderer's links both come from here)."""
        base = f"/{self.path}"
        if kind == "collection":
            return base
        if kind == "item":
            return f"{base}/<item_id>"
        if kind == "lookup":
            lookup = self.settings.additional_lookup
            assert lookup is not None
            return f"{base}/by-{lookup.field}/<value>"
        if kind == "stream":
            return f"{base}/{STREAM_SEGMENT}"
        if kind == "item_stream":
            return f"{base}/<item_id>/{STREAM_SEGMENT}"
        raise ValueError(f"no route kind {kind!r}")

    def link(self, kind: str, values: Mapping[str, Any] | None = None) -> str:
        """A relative link to a route of the resource (as Eve writes links:
        ``books/<id>``), its variables filled in from ``values``."""
        link = self.rule(kind).removeprefix("/")
        for name, value in (values or {}).items():
            link = link.replace(f"<{name}>", quote(str(value), safe=""))
        return link

    def href(self, variables: dict[str, str] | None = None) -> str:
        """The resource's path with a sub-resource's variables filled in."""
        return self.link("collection", variables)

    def lookup(self, item_id: Any) -> Document:
        """The filter of the item ``item_id`` names."""
        return equals(self.ids.field, item_id)

    def base_filter(self, *, include_deleted: bool) -> Document:
        """What every lookup of the resource adds: its ``datasource.filter``,
        and with soft delete, unless asked, only documents not deleted."""
        parts: list[Document] = []
        if self.settings.datasource.filter:
            parts.append(dict(self.settings.datasource.filter))
        if self.settings.soft_delete and not include_deleted:
            parts.append({DELETED: {"$ne": True}})
        return conjoin(*parts)

    def indexes(self) -> list[IndexModel]:
        # Partial: like Eve's unique rule, documents without the field do not
        # collide (a plain unique index would treat every missing value as
        # null), nor, with soft delete, deleted ones: a new document may take a
        # deleted one's value, and restoring the deleted one is then a 409.
        unique = list(self.settings.unique)
        if self.settings.id_field != "_id" and self.settings.id_field not in unique:
            unique.append(self.settings.id_field)
        models = []
        for name in unique:
            partial: Document = {name: {"$exists": True}}
            if self.settings.soft_delete:
                partial[DELETED] = False
            models.append(
                IndexModel(
                    [(name, ASCENDING)],
                    unique=True,
                    name=f"unique_{name}",
                    partialFilterExpression=partial,
                )
            )
        for index_name, keys in self.settings.mongo_indexes.items():
            models.append(IndexModel(list(keys), name=index_name))
        return models
