"""The resource service: what each REST verb does to a resource's documents.

The HTTP layer parses requests and renders responses; this layer applies the
rules (schema, read-only fields, defaults, ETags, owner access, references,
soft delete, versions, hooks) and calls storage, through one ``Writer``
(``writes.py``) for every write: see there for how two writers of one
document are told apart. Operator updates live in ``updates.py``, writes by
filter in ``by_filter.py``. "Before" hooks run before a write, "after" hooks
once it has succeeded.

A write with an ``Idempotency-Key`` (a ``WriteKey``) derives its new ids and
ETags from the key, so that doing it again finds it done (``once.py``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from pymongo import ReplaceOne

from ..errors import BadRequest, Conflict, NotFound, PreconditionFailed, UnprocessableEntity
from ..storage import Session, Storage
from ..storage.files import Files
from .access import UNRESTRICTED, Access, conjoin
from .aggregation import Aggregation, AggregationQuery
from .by_filter import WritesByFilter
from .cursors import (
    CursorCodec,
    after,
    keyset_sort,
    query_digest,
    sort_values,
    with_sort_fields,
)
from .documents import Document, content_of, etag_of, name_issues, set_paths
from .fields import equals
from .hooks import Hooks
from .media import Media
from .model import DELETED, Page, Resource, SoftDeleted, WriteListener
from .once import HEADER as IDEMPOTENCY_HEADER
from .once import WriteKey
from .query import ListQuery
from .relations import Relations
from .updates import OperatorUpdates
from .versioning import Versions
from .visibility import matches
from .writes import STALE_ETAG, UPDATE_FAILURE, Writer, done_before


def _bulk_message(count: int) -> str:
    return f"Insertion failure: {count} document(s) contain(s) error(s)"


class ResourceService:
    """The operations of one resource, on one worker's storage."""

    def __init__(
        self,
        resource: Resource,
        storage: Storage,
        cursors: CursorCodec | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.resource = resource
        self.storage = storage
        #: Signs keyset cursors (lists by ``cursor`` need it).
        self.cursors = cursors
        self.write_listeners: list[WriteListener] = []
        self.hooks = hooks if hooks is not None else Hooks()
        self.relations = Relations(resource, storage)
        self.versions = Versions(resource, storage) if resource.settings.versioning else None
        aggregation = resource.settings.aggregation
        self.aggregation = (
            Aggregation(resource, storage, self.hooks) if aggregation is not None else None
        )
        self.writer = Writer(resource, storage, self.relations, self.versions, self.notify_written)
        self.updates = OperatorUpdates(self.writer, storage, self.hooks)
        self.by_filter = WritesByFilter(self.writer, storage, self.hooks)
        #: The media fields' files (None: the resource has none).
        self.media = Media(resource, Files(storage)) if resource.media else None

    @property
    def collection(self) -> str:
        return self.resource.collection

    async def notify_written(self) -> None:
        """Tell the write listeners (the response cache) that documents changed."""
        for listener in self.write_listeners:
            await listener(self.resource)

    def _scope(self, query: Document, access: Access, *, deleted: bool) -> Document:
        return self.writer.scope(query, access, deleted=deleted)

    # -- reads -----------------------------------------------------------

    async def find(
        self, query: ListQuery, access: Access = UNRESTRICTED, *, show_deleted: bool = False
    ) -> Page:
        """A page of the documents ``query`` asks for, by number or by cursor
        (every document where the resource turns pagination off)."""
        # Neither where nor sort may test a field the caller cannot read (nor
        # carry its values in a cursor).
        access.fields.check_filter(query.filter, "where")
        access.fields.check_names([name for name, _ in query.sort or []], "sort")
        if access.fields.per_document:  # each document's role is chosen on whole documents
            access = replace(access, fields=access.fields.for_projection(query.projection))
        # An explicit condition on _deleted replaces the default one (Eve's rule).
        deleted = show_deleted or _names(query.filter, DELETED)
        filter = self._scope(query.filter, access, deleted=deleted)
        if not query.paginated:
            items = await self.storage.find_page(
                self.collection,
                filter,
                sort=query.sort,
                projection=query.projection,
                skip=0,
                limit=0,
            )
            return Page(_masked(items, access), len(items), False, "exact")
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
                page_filter = conjoin(filter, beyond)
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
        return Page(_masked(items, access), total, has_next, counted, next_cursor)

    async def aggregate(
        self, query: AggregationQuery, access: Access, joined: Mapping[str, Access]
    ) -> Page:
        """A page of the resource's aggregation (``joined``: what the caller may
        read of each collection the pipeline joins)."""
        assert self.aggregation is not None
        items, total, has_next = await self.aggregation.run(query, access, joined)
        return Page(items, total, has_next)

    async def get(
        self,
        item_id: Any,
        access: Access = UNRESTRICTED,
        *,
        projection: dict[str, int] | None = None,
        deleted_ok: bool = False,
        by: str | None = None,
    ) -> Document:
        """What the caller may read of the item ``item_id`` names (or of the
        first whose field ``by`` holds it); 404 when there is none (a
        soft-deleted one is a ``SoftDeleted`` 404, unless ``deleted_ok``)."""
        fields = access.fields.for_projection(projection)
        try:
            document = await self._stored(
                item_id, access, projection=projection, deleted_ok=deleted_ok, by=by
            )
        except SoftDeleted as gone:
            gone.document = fields.apply(gone.document)
            raise
        return fields.apply(document)

    async def _stored(
        self,
        item_id: Any,
        access: Access,
        *,
        projection: dict[str, int] | None = None,
        deleted_ok: bool = False,
        by: str | None = None,
    ) -> Document:
        """The stored item, whole: what a write starts from (``get`` masks it)."""
        lookup = equals(by, item_id) if by is not None else self.resource.lookup(item_id)
        filter = self._scope(lookup, access, deleted=True)
        document = await self.storage.find_one(self.collection, filter, projection)
        if document is None:
            raise NotFound(f"no {self.resource.singular} with id {item_id}")
        if document.get(DELETED) is True and not deleted_ok:
            raise SoftDeleted(document)
        return document

    async def stored_or_none(self, item_id: Any, access: Access = UNRESTRICTED) -> Document | None:
        """The stored item, whole and unmasked (a soft-deleted one too), or
        None: what the media fields' files are checked against around a write."""
        try:
            return await self._stored(item_id, access, deleted_ok=True)
        except NotFound:
            return None

    # -- writes ----------------------------------------------------------

    def check_new(
        self, body: Any, access: Access, *, new: bool = True
    ) -> tuple[Document | None, dict[str, str]]:
        """A new document from a client's body, with defaults and owner applied,
        or the issues that refuse it (as POST and `shoal import` both need;
        PUT too, with ``new`` False: the document has its id)."""
        if not isinstance(body, dict):
            return None, {"(document)": "must be a JSON object"}
        issues = name_issues(body)
        if not access.writes.per_document:  # else once the document is whole, below
            access.writes.check_writable(content_of(body))
        # The owner field is the server's, whoever asks (a public write too).
        issues.update(self.resource.schema.unwritable(body, client_id=True))
        client_id = body.get("_id")
        document = content_of(body)
        if "_id" in body:  # an explicit null is no id either
            value, problem = self.resource.mongo_ids.from_body(client_id)
            if problem is not None:
                issues["_id"] = problem
            else:
                document["_id"] = value
        elif new and self.resource.mongo_ids.generate() is None:
            issues["_id"] = "required field (this resource's ids are chosen by the client)"
        if issues:
            return None, issues
        self.resource.schema.apply_defaults(document)
        fixed = self.writer.fixed(access)
        for name, value in fixed.items():
            document.setdefault(name, value)
        if access.owner is not None:
            document[access.owner[0]] = access.owner[1]
        issues = self.resource.fields.to_native(document)
        for name, value in fixed.items():
            if name not in issues and document.get(name) != value:
                issues[name] = f"must be {value} (the resource's filter or the URL says so)"
        self.writer.validate(document, issues)
        if not issues and access.insert_filter and not matches(access.insert_filter, document):
            issues["(document)"] = "is outside the documents your role may write"
        if not issues and access.writes.per_document:
            # The role that governs the new document decides what it may hold.
            access.writes.governing(document).check_writable(content_of(body))
        if issues:
            return None, issues
        return document, {}

    def stamp(self, document: Document, *, created: Any = None) -> Document:
        """Set the meta fields Shoal maintains (``Writer.stamp``)."""
        return self.writer.stamp(document, created=created)

    async def create(
        self, bodies: list[Any], access: Access = UNRESTRICTED, key: WriteKey | None = None
    ) -> list[Document]:
        """Insert one or many documents: all are valid and inserted, or none.

        Raises UnprocessableEntity whose ``issues`` is a list with one entry per
        body (``{}`` for the valid ones) when any body is invalid. With a
        ``key``, new documents get the key's ids; a document already stored
        under such an id with the same content was this write, done before,
        and is answered as it is (``key.replayed``).
        """
        prepared = [self.check_new(body, access) for body in bodies]
        issues = [problems for _, problems in prepared]
        documents = [document for document, _ in prepared if document is not None]
        if len(documents) == len(prepared):
            references = access.references
            found = await self.relations.missing(documents, references=references)
            for index, missing in enumerate(found):
                issues[index].update(missing)
        failures = [problems for problems in issues if problems]
        if failures:
            raise UnprocessableEntity(_bulk_message(len(failures)), issues=issues)
        made = 0  # ids made here at random (no key): a duplicate is only a retry
        for index, document in enumerate(documents):
            if "_id" not in document:
                seed = key.digest(index) if key is not None else None
                document["_id"] = self.resource.mongo_ids.generate(seed)
                made += seed is None
        await self.hooks.fire("on_insert", self.resource.name, documents)
        for document in documents:
            self.resource.fields.to_native(document)  # what a hook added, too
            self.writer.stamp(document)
        versions = self.versions
        if key is not None and versions is None:
            documents = await self._insert_once(documents, key)
            if key.replayed:
                return _masked(documents, access)
        elif versions is not None:

            async def insert(session: Session) -> None:
                await versions.insert_documents(documents, session)

            # A keyed insert of a versioned resource meets its ids in the
            # transaction: done again, it is a 409, and nothing is written twice.
            await self.writer.atomically(insert)
        else:
            new_ids = made == len(documents)
            await self.storage.insert_many(self.collection, documents, new_ids=new_ids)
        await self.notify_written()
        await self.hooks.fire("on_inserted", self.resource.name, documents)
        return _masked(documents, access)

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
        item_id: Any,
        changes: Any,
        etag: str | None,
        access: Access = UNRESTRICTED,
        key: WriteKey | None = None,
    ) -> Document:
        """Merge ``changes`` into the stored document, validate, write if unchanged.

        With soft delete, a PATCH of a deleted document restores it (``{}``
        restores it as it was)."""
        self.writer.check_changes(changes, empty_ok=True)
        current = await self._current(item_id, etag, access, key)
        if key is not None and key.replayed:
            return access.fields.apply(current)
        if not changes and current.get(DELETED) is not True:
            raise BadRequest("a PATCH body is a non-empty JSON object of fields to change")
        access.writes.governing(current).check_writable(changes)
        updated, issues = self.writer.merged(current, changes, access)
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        await self.writer.checked_references(updated, current, access)
        await self.hooks.fire("on_update", self.resource.name, changes, current)
        updated, _ = self.writer.merged(current, changes, access, checked=True)
        updated[DELETED] = False
        document = await self.writer.replace(current, updated, access, etag, key)
        await self.hooks.fire("on_updated", self.resource.name, changes, current)
        return access.fields.apply(document)

    async def replace(
        self,
        item_id: Any,
        body: Any,
        etag: str | None,
        access: Access = UNRESTRICTED,
        key: WriteKey | None = None,
    ) -> Document:
        """Replace the stored document's content with ``body`` (validated).

        With soft delete, a PUT of a deleted document restores it."""
        body_id = None
        if isinstance(body, dict):
            body = dict(body)
            body_id = body.pop("_id", None)
            id_field = self.resource.ids.field
            if id_field == "_id":
                if body_id is not None and str(body_id) != str(item_id):
                    raise UnprocessableEntity(UPDATE_FAILURE, issues={"_id": "cannot be changed"})
            elif str(body.setdefault(id_field, item_id)) != str(item_id):
                raise UnprocessableEntity(
                    UPDATE_FAILURE, issues={id_field: "cannot be changed (it names the item)"}
                )
        document, issues = self.check_new(body, Access(fixed=access.fixed), new=False)
        if issues or document is None:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        current = await self._current(item_id, etag, access, key)
        if key is not None and key.replayed:
            return access.fields.apply(current)
        if body_id is not None and str(body_id) != str(current["_id"]):
            raise UnprocessableEntity(UPDATE_FAILURE, issues={"_id": "cannot be changed"})
        if access.owner is not None and access.owner[0] in current:
            document[access.owner[0]] = current[access.owner[0]]
        if access.ruled:
            _keep_unwritable(document, current, access)
        await self.writer.checked_references(document, current, access)
        await self.hooks.fire("on_replace", self.resource.name, document, current)
        self.resource.fields.to_native(document)
        document[DELETED] = False
        replaced = await self.writer.replace(current, document, access, etag, key)
        await self.hooks.fire("on_replaced", self.resource.name, replaced, current)
        return access.fields.apply(replaced)

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
        issues = name_issues(dict(values), dotted_top_level=True)
        access.writes.governing(current).check_writable([*values, *removed])
        issues.update(self.resource.schema.unwritable([*values, *removed]))
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        updated = copy.deepcopy(current)
        issues = set_paths(updated, values, removed)
        if not issues:
            issues = self.resource.fields.to_native(updated)
        if not issues:
            self.writer.validate(updated, issues)
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        if content_of(updated) == content_of(current):
            return None
        await self.writer.checked_references(updated, current, access)
        return await self.writer.replace(current, updated, access)

    async def _current(
        self, item_id: Any, etag: str | None, access: Access, key: WriteKey | None = None
    ) -> Document:
        """The stored document, if ``etag`` is current (412 otherwise); with a
        ``key``, also the version this very write made before (``key.replayed``)."""
        current = await self._stored(item_id, access, deleted_ok=True)
        if done_before(current, etag, key):
            return current
        # A masked document's ETag is its view's (visibility.FieldMask.retag):
        # If-Match holds while what the caller sees is unchanged, and the write
        # is then conditional on the stored version just read.
        shown = access.fields.apply(current) if access.ruled else current
        if etag is not None and etag_of(shown, self.resource.etag_key) != etag:
            raise PreconditionFailed(STALE_ETAG)
        return current

    async def update(
        self,
        item_id: Any,
        body: Any,
        etag: str | None,
        access: Access = UNRESTRICTED,
        key: WriteKey | None = None,
    ) -> Document:
        """Update operators on one document (``updates.OperatorUpdates``)."""
        return await self.updates.apply(item_id, body, etag, access, key)

    async def delete(self, item_id: Any, etag: str | None, access: Access = UNRESTRICTED) -> None:
        """Delete one item. With soft delete it is marked ``_deleted`` (a new
        version, when versioned); deleting it again changes nothing."""
        plain = (
            not self.resource.settings.soft_delete
            and self.versions is None
            and not self.hooks.has("on_delete_item", self.resource.name)
            and not self.hooks.has("on_deleted_item", self.resource.name)
            and self.resource.ids.field == "_id"
            and not access.ruled  # If-Match holds the view's ETag: see _current
        )
        if plain:
            filter: Document = {"_id": item_id}
            if etag is not None:
                filter["_etag"] = etag
            if await self.storage.delete_if(
                self.collection, self._scope(filter, access, deleted=True)
            ):
                await self.notify_written()
                return
            # Not matched: gone, changed since, or stored without an _etag;
            # the general path below tells which.
        current = await self._current(item_id, etag, access)
        if current.get(DELETED) is True:
            return
        await self.hooks.fire("on_delete_item", self.resource.name, current)
        if self.resource.settings.soft_delete:
            await self.writer.replace(current, {**copy.deepcopy(current), DELETED: True}, access)
        else:
            await self.writer.delete(current, etag, access)
        await self.hooks.fire("on_deleted_item", self.resource.name, current)

    async def delete_all(self, access: Access = UNRESTRICTED) -> int:
        """Delete every document the caller may delete (soft delete: mark them)."""
        await self.hooks.fire("on_delete_resource", self.resource.name)
        if self.resource.settings.soft_delete:
            deleted = await self._soft_delete_all(access)
        else:
            filter = self._scope({}, access, deleted=True)
            if self.versions is not None:
                deleted = await self.versions.delete_documents(filter)
            else:
                deleted = await self.storage.delete_many(self.collection, filter)
        await self.notify_written()
        await self.hooks.fire("on_deleted_resource", self.resource.name)
        return deleted

    async def _soft_delete_all(self, access: Access) -> int:
        live = await self.storage.find_all(self.collection, self._scope({}, access, deleted=False))
        marked = [
            (current, self.writer.next_version(current, {**current, DELETED: True}))
            for current in live
        ]
        if not marked:
            return 0
        outcome = await self.storage.bulk_write(
            self.collection,
            [
                ReplaceOne({"_id": current["_id"], "_etag": current.get("_etag")}, replacement)
                for current, replacement in marked
            ],
        )
        if self.versions is not None:
            failed = {int(error["index"]) for error in outcome.get("writeErrors") or []}
            for index, (current, replacement) in enumerate(marked):
                if index not in failed:
                    await self.versions.record(current, None)
                    await self.versions.record({**replacement, "_id": current["_id"]}, None)
        return int(outcome.get("nModified") or outcome.get("nMatched") or 0)

    # -- writes by filter (``by_filter.py``) -----------------------------

    async def patch_where(
        self, filter: Document, changes: Any, access: Access = UNRESTRICTED
    ) -> tuple[int, int]:
        """Merge ``changes`` into every document ``filter`` matches: (matched, modified)."""
        return await self.by_filter.patch(filter, changes, access)

    async def delete_where(
        self, filter: Document, access: Access = UNRESTRICTED
    ) -> tuple[int, int]:
        """Delete every document ``filter`` matches: (matched, deleted)."""
        return await self.by_filter.delete(filter, access)

    @property
    def index_owner(self) -> str:
        """The name readiness reports this resource's index problems under."""
        return self.resource.name

    async def ensure_indexes(self, timeout: float | None = None) -> None:
        await self.storage.ensure_indexes(self.collection, self.resource.indexes(), timeout=timeout)
        if self.versions is not None:
            await self.storage.ensure_indexes(
                self.versions.collection, self.versions.indexes(), timeout=timeout
            )


def _keep_unwritable(document: Document, current: Document, access: Access) -> None:
    """A PUT by a caller with rules: each field its role may not write keeps
    its stored value (403 naming it when the body changes it)."""
    writes = access.writes.governing(current)
    names = set(content_of(document)) | set(content_of(current))
    for name in sorted(names):
        if writes.readable(name):
            continue
        if name in document and (name not in current or document[name] != current[name]):
            writes.check_writable([name])
        if name in current:
            document[name] = current[name]


def _masked(documents: list[Document], access: Access) -> list[Document]:
    """What the caller may read of each document."""
    if not access.fields.hides:
        return documents
    return [access.fields.apply(document) for document in documents]


def _names(filter: Any, field: str) -> bool:
    """Whether a filter names ``field`` anywhere."""
    if isinstance(filter, dict):
        return any(key == field or _names(value, field) for key, value in filter.items())
    if isinstance(filter, list):
        return any(_names(item, field) for item in filter)
    return False
