"""The resource service: what each REST verb does to a resource's documents.

The HTTP layer parses requests and renders responses; this layer applies the
rules (schema, read-only fields, defaults, ETags, owner access) and calls
storage. Concurrency control lives in the write filter itself: a replace or
delete matches ``{_id, _etag}``, so of two writers holding the same ETag, one
wins and the other gets 412, whichever instance each one reached.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from ..config import ResourceSettings
from ..dates import now
from ..errors import (
    BadRequest,
    NotFound,
    PreconditionFailed,
    UnprocessableEntity,
)
from ..storage import Storage
from .access import UNRESTRICTED, Access
from .documents import (
    Document,
    content_of,
    document_etag,
    merge_patch,
    name_issues,
    storable_issues,
)
from .query import META_FIELDS, ListQuery, QueryRules
from .schema import DocumentSchema

logger = logging.getLogger("shoal.resources")

WriteListener = Callable[["Resource"], Awaitable[None]]


@dataclass(frozen=True)
class Page:
    items: list[Document]
    total: int | None
    has_next: bool


class Resource:
    """One configured resource: its collection, compiled schema and rules."""

    def __init__(self, name: str, settings: ResourceSettings, *, max_query_depth: int) -> None:
        self.name = name
        self.settings = settings
        self.collection = settings.datasource or name
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
        self.rules = QueryRules(
            pagination_limit=settings.pagination_limit,
            default_max_results=settings.default_max_results,
            count=settings.count,
            allow_regex=settings.allow_regex,
            max_depth=max_query_depth,
        )

    def indexes(self) -> list[IndexModel]:
        # Partial: like Eve's unique rule, documents without the field do not
        # collide (a plain unique index would treat every missing value as null).
        models = [
            IndexModel(
                [(name, ASCENDING)],
                unique=True,
                name=f"unique_{name}",
                partialFilterExpression={name: {"$exists": True}},
            )
            for name in self.settings.unique
        ]
        for index_name, keys in self.settings.mongo_indexes.items():
            models.append(IndexModel(list(keys), name=index_name))
        return models


def _bulk_message(count: int) -> str:
    return f"Insertion failure: {count} document(s) contain(s) error(s)"


_UPDATE_FAILURE = "Update failure: the document contains error(s)"


class ResourceService:
    """The operations of one resource, on one worker's storage."""

    def __init__(self, resource: Resource, storage: Storage) -> None:
        self.resource = resource
        self.storage = storage
        self.write_listeners: list[WriteListener] = []

    @property
    def collection(self) -> str:
        return self.resource.collection

    async def notify_written(self) -> None:
        """Tell the write listeners (the response cache) that documents changed."""
        for listener in self.write_listeners:
            await listener(self.resource)

    # -- reads -----------------------------------------------------------

    async def find(self, query: ListQuery, access: Access = UNRESTRICTED) -> Page:
        filter = access.restrict(query.filter)
        # Without a count, one extra document tells whether a next page exists.
        limit = query.max_results if query.count else query.max_results + 1
        find = self.storage.find_page(
            self.collection,
            filter,
            sort=query.sort,
            projection=query.projection,
            skip=query.skip,
            limit=limit,
        )
        if query.count:
            items, total = await asyncio.gather(find, self.storage.count(self.collection, filter))
            has_next = query.skip + len(items) < total
            return Page(items, total, has_next)
        items = await find
        has_next = len(items) > query.max_results
        return Page(items[: query.max_results], None, has_next)

    async def get(self, item_id: ObjectId, access: Access = UNRESTRICTED) -> Document:
        document = await self.storage.find_one(self.collection, access.restrict({"_id": item_id}))
        if document is None:
            raise NotFound(f"no {self.resource.singular} with id {item_id}")
        return document

    # -- writes ----------------------------------------------------------

    def check_new(self, body: Any, access: Access) -> tuple[Document | None, dict[str, str]]:
        """A new document from a client's body, with defaults and owner applied,
        or the issues that refuse it (as POST and `shoal import` both need)."""
        if not isinstance(body, dict):
            return None, {"(document)": "must be a JSON object"}
        issues = name_issues(body)
        client_id = body.get("_id")
        for key in body:
            if key.startswith("_") and key != "_id":
                issues[key] = "field is read-only"
        issues.update(self.resource.schema.readonly_issues(body))
        # The owner field is the server's, whoever asks (a public write too).
        for name in self.resource.schema.server_fields & body.keys():
            issues[name] = "field is set by the server"
        document = content_of(body)
        if client_id is not None:
            if isinstance(client_id, str) and ObjectId.is_valid(client_id):
                document["_id"] = ObjectId(client_id)
            else:
                issues["_id"] = "must be a 24-hex-character ObjectId"
        if issues:
            return None, issues
        self.resource.schema.apply_defaults(document)
        if access.owner is not None:
            document[access.owner[0]] = access.owner[1]
        issues = self.resource.schema.issues(content_of(document))
        if not issues:
            issues = storable_issues(document)
        if issues:
            return None, issues
        return document, {}

    def stamp(self, document: Document, *, created: Any = None) -> Document:
        """Set the meta fields Shoal maintains: _created, _updated, _etag."""
        moment = now()
        document["_created"] = created or moment
        document["_updated"] = moment
        document["_etag"] = document_etag(document)
        return document

    async def create(self, bodies: list[Any], access: Access = UNRESTRICTED) -> list[Document]:
        """Insert one or many documents: all are valid and inserted, or none.

        Raises UnprocessableEntity whose ``issues`` is a list with one entry per
        body (``{}`` for the valid ones) when any body is invalid.
        """
        prepared = [self.check_new(body, access) for body in bodies]
        failures = [issues for _, issues in prepared if issues]
        if failures:
            raise UnprocessableEntity(_bulk_message(len(failures)), issues=[i for _, i in prepared])
        documents = []
        for document, _ in prepared:
            assert document is not None
            document.setdefault("_id", ObjectId())
            documents.append(self.stamp(document))
        await self.storage.insert_many(self.collection, documents)
        await self.notify_written()
        return documents

    async def patch(
        self, item_id: ObjectId, changes: Any, etag: str | None, access: Access = UNRESTRICTED
    ) -> Document:
        """Merge ``changes`` into the stored document, validate, write if unchanged."""
        if not isinstance(changes, dict) or not changes:
            raise BadRequest("a PATCH body is a non-empty JSON object of fields to change")
        issues = name_issues(changes, dotted_top_level=True)
        for key in changes:
            top = key.split(".", 1)[0]
            if top.startswith("_") or top in self.resource.schema.server_fields:
                issues[key] = "field is read-only"
        issues.update(self.resource.schema.readonly_issues(changes))
        if issues:
            raise UnprocessableEntity(_UPDATE_FAILURE, issues=issues)
        current = await self._current(item_id, etag, access)
        updated = copy.deepcopy(current)
        issues = merge_patch(updated, changes)
        if not issues:
            issues = self.resource.schema.issues(content_of(updated))
        if not issues:
            issues = storable_issues(updated)
        if issues:
            raise UnprocessableEntity(_UPDATE_FAILURE, issues=issues)
        return await self._replace(current, updated, access)

    async def replace(
        self, item_id: ObjectId, body: Any, etag: str | None, access: Access = UNRESTRICTED
    ) -> Document:
        """Replace the stored document's content with ``body`` (validated)."""
        if isinstance(body, dict) and "_id" in body:
            body = dict(body)
            if str(body.pop("_id")) != str(item_id):
                raise UnprocessableEntity(_UPDATE_FAILURE, issues={"_id": "cannot be changed"})
        document, issues = self.check_new(body, Access(owner=None))
        if issues or document is None:
            raise UnprocessableEntity(_UPDATE_FAILURE, issues=issues)
        current = await self._current(item_id, etag, access)
        if access.owner is not None and access.owner[0] in current:
            document[access.owner[0]] = current[access.owner[0]]
        return await self._replace(current, document, access)

    async def _current(self, item_id: ObjectId, etag: str | None, access: Access) -> Document:
        current = await self.get(item_id, access)
        if etag is not None and current.get("_etag") != etag:
            raise PreconditionFailed("Client and server etags don't match")
        return current

    async def _replace(self, current: Document, updated: Document, access: Access) -> Document:
        replacement = {key: value for key, value in updated.items() if key not in META_FIELDS}
        self.stamp(replacement, created=current.get("_created"))
        matched = await self.storage.replace_if(
            self.collection,
            access.restrict({"_id": current["_id"], "_etag": current.get("_etag")}),
            replacement,
        )
        if not matched:
            await self._lost_race(current["_id"], access)
        replacement["_id"] = current["_id"]
        await self.notify_written()
        return replacement

    async def _lost_race(self, item_id: ObjectId, access: Access) -> None:
        """Another writer changed or deleted the document since it was read."""
        await self.get(item_id, access)  # 404 when it is gone
        raise PreconditionFailed("Client and server etags don't match")

    async def delete(
        self, item_id: ObjectId, etag: str | None, access: Access = UNRESTRICTED
    ) -> None:
        filter: Document = {"_id": item_id}
        if etag is not None:
            filter["_etag"] = etag
        if not await self.storage.delete_if(self.collection, access.restrict(filter)):
            await self._lost_race(item_id, access)
        await self.notify_written()

    async def delete_all(self, access: Access = UNRESTRICTED) -> int:
        deleted = await self.storage.delete_many(self.collection, access.restrict({}))
        await self.notify_written()
        return deleted

    @property
    def index_owner(self) -> str:
        """The name readiness reports this resource's index problems under."""
        return self.resource.name

    async def ensure_indexes(self, timeout: float | None = None) -> None:
        await self.storage.ensure_indexes(self.collection, self.resource.indexes(), timeout=timeout)
