"""The resource service: what each REST verb does to a resource's documents.

The HTTP layer parses requests and renders responses; this layer applies the
rules (schema, read-only fields, defaults, ETags, owner access) and calls
storage. Concurrency control lives in the write filter itself: a replace or
delete matches ``{_id, _etag}``, so of two writers holding the same ETag, one
wins and the other gets 412, whichever instance each one reached.

A write with an ``Idempotency-Key`` (a ``WriteKey``) derives its new ids and
ETags from the key, so that doing it again finds it done (``once.py``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from ..config import ResourceSettings
from ..dates import now
from ..errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    UnprocessableEntity,
)
from ..storage import Storage
from .access import UNRESTRICTED, Access
from .cursors import (
    CursorCodec,
    after,
    keyset_sort,
    query_digest,
    sort_values,
    with_sort_fields,
)
from .documents import (
    Document,
    content_of,
    document_etag,
    merge_patch,
    name_issues,
    new_etag,
    set_paths,
    storable_issues,
)
from .once import WriteKey
from .query import META_FIELDS, ListQuery, QueryRules
from .schema import DocumentSchema
from .updates import UPDATE_FAILURE, check_update

logger = logging.getLogger("shoal.resources")

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


_UPDATE_FAILURE = UPDATE_FAILURE
IDEMPOTENCY_HEADER = "Idempotency-Key"


class ResourceService:
    """The operations of one resource, on one worker's storage."""

    def __init__(
        self, resource: Resource, storage: Storage, cursors: CursorCodec | None = None
    ) -> None:
        self.resource = resource
        self.storage = storage
        #: Signs keyset cursors (lists by ``cursor`` need it).
        self.cursors = cursors
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
        """A page of the documents ``query`` asks for, by number or by cursor."""
        filter = access.restrict(query.filter)
        sort, projection, page_filter, digest = query.sort, query.projection, filter, b""
        if query.cursor is not None:
            if self.cursors is None:
                raise RuntimeError("keyset pagination needs the service's cursor codec")
            sort = keyset_sort(query.sort)
            digest = query_digest(self.resource.name, filter, sort, query.projection)
            projection = with_sort_fields(query.projection, sort)
            if query.cursor:
                values = self.cursors.decode(query.cursor, digest)
                beyond = after(sort, values)
                page_filter = {"$and": [filter, beyond]} if filter else beyond
        # One document beyond the page tells whether a next page exists.
        find = self.storage.find_page(
            self.collection,
            page_filter,
            sort=sort,
            projection=projection,
            skip=query.skip,
            limit=query.max_results + 1,
        )
        if query.count == "none":
            items, total, counted = await find, None, None
        else:
            exact = query.count == "exact" or (query.count != "estimated" and bool(filter))
            counting = self.storage.count(self.collection, filter, exact=exact)
            items, total = await asyncio.gather(find, counting)
            counted = "exact" if exact or filter else "estimated"
        has_next = len(items) > query.max_results
        items = items[: query.max_results]
        next_cursor = None
        if query.cursor is not None and has_next and self.cursors is not None:
            next_cursor = self.cursors.encode(sort_values(items[-1], sort or []), digest)
        return Page(items, total, has_next, counted, next_cursor)

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
        if "_id" in body:  # an explicit null is no id either
            if isinstance(client_id, ObjectId):
                document["_id"] = client_id
            elif isinstance(client_id, str) and ObjectId.is_valid(client_id):
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

    async def create(
        self, bodies: list[Any], access: Access = UNRESTRICTED, key: WriteKey | None = None
    ) -> list[Document]:
        """Insert one or many documents: all are valid and inserted, or none.

        Raises UnprocessableEntity whose ``issues`` is a list with one entry per
        body (``{}`` for the valid ones) when any body is invalid. With a
        ``key``, new documents get the key's ids; a document already stored
        under its id with the same content is the answer instead of a new
        insert (409 if its content differs).
        """
        prepared = [self.check_new(body, access) for body in bodies]
        failures = [issues for _, issues in prepared if issues]
        if failures:
            raise UnprocessableEntity(_bulk_message(len(failures)), issues=[i for _, i in prepared])
        documents = []
        for index, (document, _) in enumerate(prepared):
            assert document is not None
            if "_id" not in document:
                document["_id"] = key.object_id(index) if key is not None else ObjectId()
            documents.append(self.stamp(document))
        if key is None:
            await self.storage.insert_many(self.collection, documents)
        else:
            documents = await self._insert_once(documents, key)
        await self.notify_written()
        return documents

    async def _insert_once(self, documents: list[Document], key: WriteKey) -> list[Document]:
        """Insert what is not stored yet; a document stored under the same id
        with the same content (its content ETag) was this write, done before."""
        existing = await self.storage.insert_once(self.collection, documents)
        if not existing:
            return documents
        differing = [
            document["_id"]
            for document in documents
            if document["_id"] in existing
            and existing[document["_id"]].get("_etag") != document["_etag"]
        ]
        if differing:
            new = [document["_id"] for document in documents if document["_id"] not in existing]
            if new:
                await self.storage.delete_many(self.collection, {"_id": {"$in": new}})
            raise Conflict(
                f"the document this {IDEMPOTENCY_HEADER} created ({differing[0]}) differs from "
                "this request's, or has changed since; nothing was inserted. Use a new key "
                "for a new request"
            )
        key.replayed = len(existing) == len(documents)
        return [existing.get(document["_id"], document) for document in documents]

    async def patch(
        self,
        item_id: ObjectId,
        changes: Any,
        etag: str | None,
        access: Access = UNRESTRICTED,
        key: WriteKey | None = None,
    ) -> Document:
        """Merge ``changes`` into the stored document, validate, write if unchanged."""
        self._check_changes(changes)
        current = await self.get(item_id, access)
        if _done_before(current, etag, key):
            return current
        _check_etag(current, etag)
        updated, issues = self._merged(current, changes)
        if issues:
            raise UnprocessableEntity(_UPDATE_FAILURE, issues=issues)
        return await self._replace(current, updated, access, etag, key)

    def _check_changes(self, changes: Any) -> None:
        """A PATCH body's fields: 400 unless an object, 422 for fields a client
        may not change."""
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

    def _merged(
        self, current: Document, changes: Mapping[str, Any]
    ) -> tuple[Document, dict[str, str]]:
        """``current`` with ``changes`` merged in, and what is wrong with it."""
        updated = copy.deepcopy(current)
        issues = merge_patch(updated, changes)
        if not issues:
            issues = self.resource.schema.issues(content_of(updated))
        if not issues:
            issues = storable_issues(updated)
        return updated, issues

    async def replace(
        self,
        item_id: ObjectId,
        body: Any,
        etag: str | None,
        access: Access = UNRESTRICTED,
        key: WriteKey | None = None,
    ) -> Document:
        """Replace the stored document's content with ``body`` (validated)."""
        if isinstance(body, dict) and "_id" in body:
            body = dict(body)
            if str(body.pop("_id")) != str(item_id):
                raise UnprocessableEntity(_UPDATE_FAILURE, issues={"_id": "cannot be changed"})
        document, issues = self.check_new(body, Access(owner=None))
        if issues or document is None:
            raise UnprocessableEntity(_UPDATE_FAILURE, issues=issues)
        current = await self.get(item_id, access)
        if _done_before(current, etag, key):
            return current
        _check_etag(current, etag)
        if access.owner is not None and access.owner[0] in current:
            document[access.owner[0]] = current[access.owner[0]]
        return await self._replace(current, document, access, etag, key)

    async def set_fields(
        self,
        current: Document,
        values: Mapping[str, Any],
        removed: Iterable[str],
        access: Access = UNRESTRICTED,
    ) -> Document | None:
        """``$set`` and ``$unset`` (dotted paths) on a stored document: the result
        is validated as a whole and written only if the document is unchanged
        since ``current`` was read (412 otherwise). None when nothing changes."""
        issues: dict[str, str] = {}
        for path in [*values, *removed]:
            top = path.split(".", 1)[0]
            if top.startswith("_") or top in self.resource.schema.server_fields:
                issues[path] = "field is read-only"
        issues.update(self.resource.schema.readonly_issues({**values, **dict.fromkeys(removed)}))
        issues.update(name_issues(dict(values), dotted_top_level=True))
        if issues:
            raise UnprocessableEntity(_UPDATE_FAILURE, issues=issues)
        updated = copy.deepcopy(current)
        issues = set_paths(updated, values, removed)
        if not issues:
            issues = self.resource.schema.issues(content_of(updated))
        if not issues:
            issues = storable_issues(updated)
        if issues:
            raise UnprocessableEntity(_UPDATE_FAILURE, issues=issues)
        if content_of(updated) == content_of(current):
            return None
        return await self._replace(current, updated, access)

    async def _replace(
        self,
        current: Document,
        updated: Document,
        access: Access,
        etag: str | None = None,
        key: WriteKey | None = None,
    ) -> Document:
        replacement = {name: value for name, value in updated.items() if name not in META_FIELDS}
        self.stamp(replacement, created=current.get("_created"))
        if key is not None:
            replacement["_etag"] = key.etag(etag)
        matched = await self.storage.replace_if(
            self.collection,
            access.restrict({"_id": current["_id"], "_etag": current.get("_etag")}),
            replacement,
        )
        if not matched:
            return await self._lost_race_unless_done(current["_id"], access, etag, key)
        replacement["_id"] = current["_id"]
        await self.notify_written()
        return replacement

    async def _lost_race(self, item_id: ObjectId, access: Access) -> NoReturn:
        """Another writer changed or deleted the document since it was read."""
        await self.get(item_id, access)  # 404 when it is gone
        raise PreconditionFailed("Client and server etags don't match")

    async def _lost_race_unless_done(
        self, item_id: ObjectId, access: Access, etag: str | None, key: WriteKey | None
    ) -> Document:
        """The document, if the writer that won was this very write (done
        again at the same time on another instance); else as ``_lost_race``."""
        current = await self.get(item_id, access)  # 404 when it is gone
        if not _done_before(current, etag, key):
            raise PreconditionFailed("Client and server etags don't match")
        return current

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

    # -- update operators --------------------------------------------------

    async def update(
        self,
        item_id: ObjectId,
        body: Any,
        etag: str | None,
        access: Access = UNRESTRICTED,
        key: WriteKey | None = None,
    ) -> Document:
        """Apply update operators in one atomic write (conditional on ``etag``
        if given), then check the result against the schema: an update that
        leaves the document invalid is undone (conditionally on the ETag it
        wrote, so no later write is overwritten) and answered with 422.

        With a ``key``, the update must be conditional (``etag``): applied
        twice, an operator such as ``$inc`` would count twice.
        """
        update = check_update(body, self.resource.schema, self.resource.rules)
        if key is not None and etag is None:
            raise PreconditionRequired(
                f"an update with an {IDEMPOTENCY_HEADER} needs If-Match with the document's "
                "ETag, so that doing it again cannot apply it twice"
            )
        written = new_etag() if key is None else key.etag(etag)
        update.setdefault("$set", {})["_etag"] = written
        update.setdefault("$currentDate", {})["_updated"] = True
        filter: Document = {"_id": item_id}
        if etag is not None:
            filter["_etag"] = etag
        before = await self.storage.find_one_and_update(
            self.collection, access.restrict(filter), update
        )
        if before is None:
            return await self._lost_race_unless_done(item_id, access, etag, key)
        after = await self.storage.find_one(self.collection, {"_id": item_id, "_etag": written})
        if after is None:
            # Another write followed this one at once; this one's result is
            # what that write started from.
            after = {**before, "_etag": written, "_updated": before.get("_updated")}
        else:
            issues = self.resource.schema.issues(content_of(after))
            if issues:
                await self._undo(before, written)
                raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        await self.notify_written()
        return after

    async def _undo(self, before: Document, written: str) -> None:
        """Put back the document an invalid update replaced."""
        restored = {key: value for key, value in before.items() if key != "_id"}
        filter = {"_id": before["_id"], "_etag": written}
        if not await self.storage.replace_if(self.collection, filter, restored):
            raise Conflict(
                "the update left the document invalid, and another write changed it "
                "before it could be undone; read it again"
            )

    # -- writes by filter ----------------------------------------------------

    async def _matching(self, filter: Document, access: Access, *, limit: int) -> list[Document]:
        """The documents ``filter`` matches for this caller, at most ``limit``
        (409 beyond it: nothing is written)."""
        documents = await self.storage.find_page(
            self.collection,
            access.restrict(filter),
            sort=[("_id", 1)],
            projection=None,
            skip=0,
            limit=limit + 1,
        )
        if len(documents) > limit:
            raise Conflict(
                f"the filter matches more than {limit} documents (max_affected); nothing "
                "was changed: narrow the filter"
            )
        return documents

    async def patch_where(
        self, filter: Document, changes: Any, access: Access = UNRESTRICTED
    ) -> tuple[int, int]:
        """Merge ``changes`` into every document ``filter`` matches: all are
        valid after it, or none is written (422 naming each document's issues).
        Each document is replaced on its own ETag, so one changed meanwhile by
        another writer is left as that writer made it. (matched, modified)."""
        self._check_changes(changes)
        limit = self.resource.settings.max_affected
        documents = await self._matching(filter, access, limit=limit)
        replacements: list[tuple[Document, Document]] = []
        failures: dict[str, Any] = {}
        for current in documents:
            updated, issues = self._merged(current, changes)
            if issues:
                failures[str(current["_id"])] = issues
                continue
            replacement = {k: v for k, v in updated.items() if k not in META_FIELDS}
            self.stamp(replacement, created=current.get("_created"))
            condition = access.restrict({"_id": current["_id"], "_etag": current.get("_etag")})
            replacements.append((condition, replacement))
        if failures:
            raise UnprocessableEntity(
                f"Update failure: {len(failures)} document(s) would contain error(s); "
                "nothing was changed",
                issues=failures,
            )
        modified = await self.storage.replace_each(self.collection, replacements)
        if replacements:
            await self.notify_written()
        return len(documents), modified

    async def delete_where(
        self, filter: Document, access: Access = UNRESTRICTED
    ) -> tuple[int, int]:
        """Delete every document ``filter`` matches for this caller (409 beyond
        ``max_affected``). (matched, deleted)."""
        limit = self.resource.settings.max_affected
        documents = await self._matching(filter, access, limit=limit)
        if not documents:
            return 0, 0
        ids = [document["_id"] for document in documents]
        # Only what still matches when it is deleted.
        condition = access.restrict({"$and": [filter, {"_id": {"$in": ids}}]})
        deleted = await self.storage.delete_many(self.collection, condition)
        await self.notify_written()
        return len(documents), deleted

    @property
    def index_owner(self) -> str:
        """The name readiness reports this resource's index problems under."""
        return self.resource.name

    async def ensure_indexes(self, timeout: float | None = None) -> None:
        await self.storage.ensure_indexes(self.collection, self.resource.indexes(), timeout=timeout)


def _check_etag(current: Document, etag: str | None) -> None:
    """412 unless the stored document is the version ``If-Match`` names."""
    if etag is not None and current.get("_etag") != etag:
        raise PreconditionFailed("Client and server etags don't match")


def _done_before(current: Document, etag: str | None, key: WriteKey | None) -> bool:
    """Whether ``current`` is the version this keyed write makes from ``etag``:
    the write was done already (and nothing was written since)."""
    if key is None or current.get("_etag") != key.etag(etag):
        return False
    key.replayed = True
    return True
