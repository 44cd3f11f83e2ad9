"""The resource service: what each REST verb does to a resource's documents.

The HTTP layer parses requests and renders responses; this layer applies the
rules (schema, read-only fields, defaults, ETags, owner access, references,
soft delete, versions, hooks) and calls storage. Concurrency control lives in
the write filter itself: a replace or delete matches ``{_id, _etag}``, so of
two writers holding the same ETag, one wins and the other gets 412, whichever
instance each one reached. "Before" hooks run before that write, "after"
hooks once it has succeeded.

A write with an ``Idempotency-Key`` (a ``WriteKey``) derives its new ids and
ETags from the key, so that doing it again finds it done (``once.py``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote

from pymongo import ASCENDING, IndexModel, ReplaceOne

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
from ..storage import Session, Storage
from .access import UNRESTRICTED, Access
from .aggregation import Aggregation, AggregationQuery
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
    etag_of,
    merge_patch,
    name_issues,
    new_etag,
    set_paths,
    storable_issues,
)
from .fields import Fields, Kind, equals
from .hooks import Hooks
from .ids import IdRule
from .once import HEADER as IDEMPOTENCY_HEADER
from .once import WriteKey
from .query import FEATURE_FIELDS, META_FIELDS, ListQuery, QueryRules
from .relations import Relations
from .schema import DocumentSchema
from .updates import UPDATE_FAILURE, check_update
from .versioning import VERSION, Versions, version_of

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

    def __init__(self, name: str, settings: ResourceSettings, *, max_query_depth: int) -> None:
        self.name = name
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
        #: Every resource of the config, by name (filled in by ``Resources``).
        self.catalog: dict[str, Resource] = {name: self}

    def href(self, variables: dict[str, str] | None = None) -> str:
        """The resource's path with a sub-resource's variables filled in."""
        path = self.path
        for name, value in (variables or {}).items():
            path = path.replace(f"<{name}>", quote(value, safe=""))
        return path

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
        if len(parts) > 1:
            return {"$and": parts}
        return parts[0] if parts else {}

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

    @property
    def collection(self) -> str:
        return self.resource.collection

    async def notify_written(self) -> None:
        """Tell the write listeners (the response cache) that documents changed."""
        for listener in self.write_listeners:
            await listener(self.resource)

    def _scope(self, query: Document, access: Access, *, deleted: bool) -> Document:
        """``query`` within the resource's own filter and the caller's access."""
        base = self.resource.base_filter(include_deleted=deleted)
        if base:
            query = {"$and": [query, base]} if query else base
        return access.restrict(query)

    # -- reads -----------------------------------------------------------

    async def find(
        self, query: ListQuery, access: Access = UNRESTRICTED, *, show_deleted: bool = False
    ) -> Page:
        """A page of the documents ``query`` asks for, by number or by cursor
        (every document where the resource turns pagination off)."""
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
            return Page(items, len(items), False, "exact")
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

    async def aggregate(
        self, query: AggregationQuery, access: Access, joined: dict[str, Document]
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
        """The item ``item_id`` names (or the first whose field ``by`` holds
        it); 404 when there is none (a soft-deleted one is a ``SoftDeleted``
        404, unless ``deleted_ok``)."""
        lookup = equals(by, item_id) if by is not None else self.resource.lookup(item_id)
        filter = self._scope(lookup, access, deleted=True)
        document = await self.storage.find_one(self.collection, filter, projection)
        if document is None:
            raise NotFound(f"no {self.resource.singular} with id {item_id}")
        if document.get(DELETED) is True and not deleted_ok:
            raise SoftDeleted(document)
        return document

    # -- writes ----------------------------------------------------------

    def _fixed(self, access: Access) -> Document:
        """Values every written document holds: a sub-resource's parent from
        the URL, and the plain equalities of ``datasource.filter``."""
        fixed: Document = {
            key: value
            for key, value in (self.resource.settings.datasource.filter or {}).items()
            if not key.startswith("$") and not isinstance(value, dict | list)
        }
        fixed.update(access.fixed)
        return fixed

    def check_new(
        self, body: Any, access: Access, *, new: bool = True
    ) -> tuple[Document | None, dict[str, str]]:
        """A new document from a client's body, with defaults and owner applied,
        or the issues that refuse it (as POST and `shoal import` both need;
        PUT too, with ``new`` False: the document has its id)."""
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
        fixed = self._fixed(access)
        for name, value in fixed.items():
            document.setdefault(name, value)
        if access.owner is not None:
            document[access.owner[0]] = access.owner[1]
        issues = self.resource.fields.to_native(document)
        for name, value in fixed.items():
            if name not in issues and document.get(name) != value:
                issues[name] = f"must be {value} (the resource's filter or the URL says so)"
        self._validate(document, issues)
        if issues:
            return None, issues
        return document, {}

    def _validate(self, document: Document, issues: dict[str, str]) -> None:
        """Add the schema's and storage's issues with ``document`` to ``issues``."""
        for name, message in self.resource.schema.issues(
            self.resource.fields.to_json(content_of(document))
        ).items():
            issues.setdefault(name, message)
        if "_id" in self.resource.schema.properties and "_id" in document:
            for name, message in self.resource.schema.id_issues(document["_id"]).items():
                issues.setdefault(name, message)
        if not issues:
            issues.update(storable_issues(document))

    def stamp(self, document: Document, *, created: Any = None) -> Document:
        """Set the meta fields Shoal maintains: _created, _updated, _etag (and
        _deleted and _version where the resource has them)."""
        moment = now()
        document["_created"] = created or moment
        document["_updated"] = moment
        if self.resource.settings.soft_delete:
            document.setdefault(DELETED, False)
        if self.versions is not None:
            document.setdefault(VERSION, 1)
        document["_etag"] = document_etag(document)
        return document

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
            for index, missing in enumerate(await self.relations.missing(documents)):
                issues[index].update(missing)
        failures = [problems for problems in issues if problems]
        if failures:
            raise UnprocessableEntity(_bulk_message(len(failures)), issues=issues)
        for index, document in enumerate(documents):
            if "_id" not in document:
                seed = key.digest(index) if key is not None else None
                document["_id"] = self.resource.mongo_ids.generate(seed)
        await self.hooks.fire("on_insert", self.resource.name, documents)
        for document in documents:
            self.resource.fields.to_native(document)  # what a hook added, too
            self.stamp(document)
        if key is not None and self.versions is None:
            documents = await self._insert_once(documents, key)
            if key.replayed:
                return documents
        else:

            async def insert(session: Session) -> None:
                await self.storage.insert_many(self.collection, documents, session=session)
                if self.versions is not None:
                    await self.versions.insert(documents, session)

            # A keyed insert of a versioned resource meets its ids in the
            # transaction: done again, it is a 409, and nothing is written twice.
            await self._atomically(insert)
        await self.notify_written()
        await self.hooks.fire("on_inserted", self.resource.name, documents)
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

    async def _atomically(self, work: Callable[[Session], Awaitable[Any]]) -> Any:
        """One transaction where a write touches two collections (versions),
        where MongoDB runs them; else ``work`` orders its writes safely."""
        if self.versions is None:
            return await work(None)

        async def run(session: Session) -> Any:
            return await work(session)

        return await self.storage.atomic(run)

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
        self._check_changes(changes, empty_ok=True)
        current = await self._current(item_id, etag, access, key)
        if key is not None and key.replayed:
            return current
        if not changes and current.get(DELETED) is not True:
            raise BadRequest("a PATCH body is a non-empty JSON object of fields to change")
        updated = self._patched(current, changes, access)
        await self._checked_references(updated, current)
        await self.hooks.fire("on_update", self.resource.name, changes, current)
        updated = self._patched(current, changes, access, checked=True)
        updated[DELETED] = False
        document = await self._replace(current, updated, access, etag, key)
        await self.hooks.fire("on_updated", self.resource.name, changes, current)
        return document

    def _check_changes(self, changes: Any, *, empty_ok: bool = False) -> None:
        """A PATCH body's fields: 400 unless an object, 422 for fields a client
        may not change."""
        if not isinstance(changes, dict) or not (changes or empty_ok):
            raise BadRequest("a PATCH body is a non-empty JSON object of fields to change")
        issues = name_issues(changes, dotted_top_level=True)
        for key in changes:
            top = key.split(".", 1)[0]
            if top.startswith("_") or top in self.resource.schema.server_fields:
                issues[key] = "field is read-only"
        issues.update(self.resource.schema.readonly_issues(changes))
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)

    def _patched(
        self,
        current: Document,
        changes: Mapping[str, Any],
        access: Access,
        *,
        checked: bool = False,
    ) -> Document:
        """``current`` with ``changes`` merged in and checked (422 otherwise;
        ``checked``: merged again after the hooks, which are trusted)."""
        updated, issues = self._merged(current, changes, access, checked=checked)
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        return updated

    def _merged(
        self,
        current: Document,
        changes: Mapping[str, Any],
        access: Access,
        *,
        checked: bool = False,
    ) -> tuple[Document, dict[str, str]]:
        """``current`` with ``changes`` merged in, and what is wrong with it."""
        updated = copy.deepcopy(current)
        issues = merge_patch(updated, changes)
        if checked:
            self.resource.fields.to_native(updated)
            return updated, {}
        id_field = self.resource.ids.field
        if id_field != "_id" and updated.get(id_field) != current.get(id_field):
            issues.setdefault(id_field, "cannot be changed (it names the item)")
        for name, value in self._fixed(access).items():
            if name in current and updated.get(name) != current[name]:
                issues.setdefault(name, "cannot be changed (the resource's filter or URL)")
            elif updated.get(name) != value:
                issues.setdefault(name, f"must be {value} (the resource's filter or the URL)")
        if not issues:
            issues = self.resource.fields.to_native(updated)
        if not issues:
            self._validate(updated, issues)
        return updated, issues

    async def _checked_references(self, document: Document, current: Document) -> None:
        (missing,) = await self.relations.missing([document], before=current)
        if missing:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=missing)

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
            return current
        if body_id is not None and str(body_id) != str(current["_id"]):
            raise UnprocessableEntity(UPDATE_FAILURE, issues={"_id": "cannot be changed"})
        if access.owner is not None and access.owner[0] in current:
            document[access.owner[0]] = current[access.owner[0]]
        await self._checked_references(document, current)
        await self.hooks.fire("on_replace", self.resource.name, document, current)
        self.resource.fields.to_native(document)
        document[DELETED] = False
        replaced = await self._replace(current, document, access, etag, key)
        await self.hooks.fire("on_replaced", self.resource.name, replaced, current)
        return replaced

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
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        updated = copy.deepcopy(current)
        issues = set_paths(updated, values, removed)
        if not issues:
            issues = self.resource.fields.to_native(updated)
        if not issues:
            self._validate(updated, issues)
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        if content_of(updated) == content_of(current):
            return None
        await self._checked_references(updated, current)
        return await self._replace(current, updated, access)

    async def _current(
        self, item_id: Any, etag: str | None, access: Access, key: WriteKey | None = None
    ) -> Document:
        """The stored document, if ``etag`` is current (412 otherwise); with a
        ``key``, also the version this very write made before (``key.replayed``)."""
        current = await self.get(item_id, access, deleted_ok=True)
        if _done_before(current, etag, key):
            return current
        if etag is not None and etag_of(current) != etag:
            raise PreconditionFailed("Client and server etags don't match")
        return current

    async def _replace(
        self,
        current: Document,
        updated: Document,
        access: Access,
        etag: str | None = None,
        key: WriteKey | None = None,
    ) -> Document:
        replacement = {name: value for name, value in updated.items() if name not in META_FIELDS}
        if not self.resource.settings.soft_delete:
            replacement.pop(DELETED, None)
        if self.versions is not None:
            replacement[VERSION] = version_of(current) + 1
        self.stamp(replacement, created=current.get("_created"))
        if key is not None:
            replacement["_etag"] = key.etag(etag)
        filter = self._scope(
            {"_id": current["_id"], "_etag": current.get("_etag")}, access, deleted=True
        )
        versions = self.versions

        async def write(session: Session) -> bool:
            if versions is not None:
                # The version the document is at, kept before it changes (the
                # one a crash may have left unkept).
                await versions.record(current, session)
            matched = await self.storage.replace_if(
                self.collection, filter, replacement, session=session
            )
            if not matched:
                # Another write came first. If it was a DELETE, the version kept
                # above names a document that is gone: keep nothing of this one.
                if session is not None:
                    await self.storage.undo(session)
                elif versions is not None:
                    await versions.forget_kept_if_gone(current)
                return False
            if versions is not None:
                await versions.record({**replacement, "_id": current["_id"]}, session)
            return True

        if not await self._atomically(write):
            return await self._lost_race_unless_done(current["_id"], access, etag, key)
        replacement["_id"] = current["_id"]
        await self.notify_written()
        return replacement

    async def _lost_race_unless_done(
        self, stored_id: Any, access: Access, etag: str | None, key: WriteKey | None
    ) -> Document:
        """The document, if the writer that won was this very write (done
        again at the same time on another instance); else as ``_lost_race``."""
        if key is not None:
            filter = self._scope({"_id": stored_id}, access, deleted=True)
            current = await self.storage.find_one(self.collection, filter)
            if current is not None and _done_before(current, etag, key):
                return current
        return await self._lost_race(stored_id, access)

    async def _lost_race(self, stored_id: Any, access: Access) -> NoReturn:
        """Another writer changed or deleted the document since it was read."""
        filter = self._scope({"_id": stored_id}, access, deleted=True)
        if await self.storage.find_one(self.collection, filter, {"_id": 1}) is None:
            raise NotFound(f"no {self.resource.singular} with id {stored_id}")
        raise PreconditionFailed("Client and server etags don't match")

    async def delete(self, item_id: Any, etag: str | None, access: Access = UNRESTRICTED) -> None:
        """Delete one item. With soft delete it is marked ``_deleted`` (a new
        version, when versioned); deleting it again changes nothing."""
        plain = (
            not self.resource.settings.soft_delete
            and self.versions is None
            and not self.hooks.has("on_delete_item", self.resource.name)
            and not self.hooks.has("on_deleted_item", self.resource.name)
            and self.resource.ids.field == "_id"
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
            await self._replace(current, {**copy.deepcopy(current), DELETED: True}, access)
        else:
            await self._delete_stored(current, etag, access)
        await self.hooks.fire("on_deleted_item", self.resource.name, current)

    async def _delete_stored(self, current: Document, etag: str | None, access: Access) -> None:
        filter: Document = {"_id": current["_id"]}
        if etag is not None:
            filter["_etag"] = current.get("_etag")
        filter = self._scope(filter, access, deleted=True)
        versions = self.versions

        async def remove(session: Session) -> bool:
            deleted = await self.storage.delete_if(self.collection, filter, session=session)
            if deleted and versions is not None:
                await versions.forget(current["_id"], session)
            return deleted

        if not await self._atomically(remove):
            await self._lost_race(current["_id"], access)
        await self.notify_written()

    async def delete_all(self, access: Access = UNRESTRICTED) -> int:
        """Delete every document the caller may delete (soft delete: mark them)."""
        await self.hooks.fire("on_delete_resource", self.resource.name)
        if self.resource.settings.soft_delete:
            deleted = await self._soft_delete_all(access)
        else:
            filter = self._scope({}, access, deleted=True)
            if self.versions is not None:
                stored = await self.storage.find_all(self.collection, filter, projection={"_id": 1})
                ids = [document["_id"] for document in stored]
                filter = {"_id": {"$in": ids}}
                deleted = await self.storage.delete_many(self.collection, filter)
                await self.storage.delete_many(
                    self.versions.collection, {"_id_document": {"$in": ids}}
                )
            else:
                deleted = await self.storage.delete_many(self.collection, filter)
        await self.notify_written()
        await self.hooks.fire("on_deleted_resource", self.resource.name)
        return deleted

    async def _soft_delete_all(self, access: Access) -> int:
        live = await self.storage.find_all(self.collection, self._scope({}, access, deleted=False))
        writes, marked = [], []
        for current in live:
            replacement = {key: value for key, value in current.items() if key not in META_FIELDS}
            replacement[DELETED] = True
            if self.versions is not None:
                replacement[VERSION] = version_of(current) + 1
            self.stamp(replacement, created=current.get("_created"))
            writes.append(
                ReplaceOne({"_id": current["_id"], "_etag": current.get("_etag")}, replacement)
            )
            marked.append((current, {**replacement, "_id": current["_id"]}))
        if not writes:
            return 0
        outcome = await self.storage.bulk_write(self.collection, writes)
        if self.versions is not None:
            failed = {int(error["index"]) for error in outcome.get("writeErrors") or []}
            for index, (current, replacement) in enumerate(marked):
                if index not in failed:
                    await self.versions.record(current, None)
                    await self.versions.record(replacement, None)
        return int(outcome.get("nModified") or outcome.get("nMatched") or 0)

    # -- update operators --------------------------------------------------

    async def update(
        self,
        item_id: Any,
        body: Any,
        etag: str | None,
        access: Access = UNRESTRICTED,
        key: WriteKey | None = None,
    ) -> Document:
        """Apply update operators in one atomic write (conditional on ``etag``
        if given), then check the result against the schema: an update that
        leaves the document invalid is undone (conditionally on the ETag it
        wrote, so no later write is overwritten) and answered with 422.

        A version needs the whole document, so a versioned resource takes no
        operators. Values of typed fields become native (dates, ObjectIds), and
        references a ``$set``, ``$push`` or ``$addToSet`` adds are checked.

        With a ``key``, the update must be conditional (``etag``): applied
        twice, an operator such as ``$inc`` would count twice."""
        if self.versions is not None:
            raise BadRequest(
                f"{self.resource.name} is versioned: send the changes as a merge patch "
                "(application/json), which makes the new version"
            )
        update = check_update(body, self.resource.schema, self.resource.rules)
        if key is not None and etag is None:
            raise PreconditionRequired(
                f"an update with an {IDEMPOTENCY_HEADER} needs If-Match with the document's "
                "ETag, so that doing it again cannot apply it twice"
            )
        await self._check_update_values(update)
        await self.hooks.fire("on_update", self.resource.name, update, None)
        written = new_etag() if key is None else key.etag(etag)
        update.setdefault("$set", {})["_etag"] = written
        update.setdefault("$currentDate", {})["_updated"] = True
        lookup = self.resource.lookup(item_id)
        if etag is not None:
            lookup["_etag"] = etag
        filter = self._scope(lookup, access, deleted=False)
        before = await self.storage.find_one_and_update(self.collection, filter, update)
        if before is None:
            if key is not None:
                done = await self.storage.find_one(
                    self.collection,
                    self._scope(self.resource.lookup(item_id), access, deleted=False),
                )
                if done is not None and _done_before(done, etag, key):
                    return done
            await self._lost_race_by_id(item_id, access)
        after = await self.storage.find_one(
            self.collection, {"_id": before["_id"], "_etag": written}
        )
        if after is None:
            # Another write followed this one at once; this one's result is
            # what that write started from.
            after = {**before, "_etag": written, "_updated": before.get("_updated")}
        else:
            issues = self.resource.schema.issues(self.resource.fields.to_json(content_of(after)))
            if issues:
                await self._undo(before, written)
                raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        await self.notify_written()
        await self.hooks.fire("on_updated", self.resource.name, update, before)
        return after

    async def _check_update_values(self, update: Document) -> None:
        """Typed values of an update as native values, in place; 422 for a value
        that is no date or ObjectId, or a reference to a missing document."""
        issues: dict[str, str] = {}
        added: Document = {}
        for operator in ("$set", "$min", "$max", "$push", "$addToSet"):
            entries = update.get(operator, {})
            for path, value in entries.items():
                appends = operator in ("$push", "$addToSet")
                each = appends and isinstance(value, dict) and "$each" in value
                items = list(value["$each"]) if each else [value]
                document = _dotted_document(path, items if appends else value)
                issues.update(self.resource.fields.to_native(document))
                converted = _at(document, path)
                if each:
                    entries[path] = {"$each": converted}
                else:
                    entries[path] = converted[0] if appends else converted
                _merge_into(added, document)
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        (missing,) = await self.relations.missing([added])
        if missing:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=missing)

    async def _lost_race_by_id(self, item_id: Any, access: Access) -> NoReturn:
        await self.get(item_id, access)  # 404 when it is gone (or deleted)
        raise PreconditionFailed("Client and server etags don't match")

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

    def _by_filter(self, hooks: tuple[str, ...]) -> None:
        """Refuse a write by filter that would skip what one-by-one writes do:
        versions, soft delete, and the event hooks registered for it."""
        if self.versions is not None or self.resource.settings.soft_delete:
            raise BadRequest(
                f"{self.resource.name} keeps versions or deleted documents: write its "
                "documents one by one, which keeps them"
            )
        registered = [event for event in hooks if self.hooks.has(event, self.resource.name)]
        if registered:
            raise BadRequest(
                f"{self.resource.name} has {', '.join(registered)} hooks: write its "
                "documents one by one, which runs them"
            )

    async def _matching(self, filter: Document, access: Access, *, limit: int) -> list[Document]:
        """The documents ``filter`` matches for this caller, at most ``limit``
        (409 beyond it: nothing is written)."""
        documents = await self.storage.find_page(
            self.collection,
            self._scope(filter, access, deleted=False),
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
        self._by_filter(("on_update", "on_updated"))
        self._check_changes(changes)
        limit = self.resource.settings.max_affected
        documents = await self._matching(filter, access, limit=limit)
        replacements: list[tuple[Document, Document]] = []
        failures: dict[str, Any] = {}
        for current in documents:
            updated, issues = self._merged(current, changes, access)
            if not issues:
                (issues,) = await self.relations.missing([updated], before=current)
            if issues:
                failures[str(current["_id"])] = issues
                continue
            replacement = {k: v for k, v in updated.items() if k not in META_FIELDS}
            self.stamp(replacement, created=current.get("_created"))
            condition = self._scope(
                {"_id": current["_id"], "_etag": current.get("_etag")}, access, deleted=True
            )
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
        self._by_filter(
            ("on_delete_item", "on_deleted_item", "on_delete_resource", "on_deleted_resource")
        )
        limit = self.resource.settings.max_affected
        documents = await self._matching(filter, access, limit=limit)
        if not documents:
            return 0, 0
        ids = [document["_id"] for document in documents]
        # Only what still matches when it is deleted.
        condition = self._scope({"$and": [filter, {"_id": {"$in": ids}}]}, access, deleted=True)
        deleted = await self.storage.delete_many(self.collection, condition)
        await self.notify_written()
        return len(documents), deleted

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


def _names(filter: Any, field: str) -> bool:
    """Whether a filter names ``field`` anywhere."""
    if isinstance(filter, dict):
        return any(key == field or _names(value, field) for key, value in filter.items())
    if isinstance(filter, list):
        return any(_names(item, field) for item in filter)
    return False


def _dotted_document(path: str, value: Any) -> Document:
    """``a.b`` and a value as the document ``{"a": {"b": value}}``."""
    *parents, leaf = path.split(".")
    document: Document = {leaf: value}
    for parent in reversed(parents):
        document = {parent: document}
    return document


def _at(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        value = value[part]
    return value


def _merge_into(target: Document, source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def _done_before(current: Document, etag: str | None, key: WriteKey | None) -> bool:
    """Whether ``current`` is the version this keyed write makes from ``etag``:
    the write was done already (and nothing was written since)."""
    if key is None or current.get("_etag") != key.etag(etag):
        return False
    key.replayed = True
    return True
