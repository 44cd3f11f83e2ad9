"""What every write of a resource shares, whichever verb makes it: the caller's
scope, the fields a client may not write, merging and validating, the next
stored version of a document, the conditional replace, and what a lost race
answers. The service (``service.py``), operator updates (``updates.py``) and
writes by filter (``by_filter.py``) write through one ``Writer``.

Concurrency control lives in the write filter itself: a replace or delete
matches ``{_id, _etag}``, so of two writers holding the same ETag one wins and
the other gets 412, whichever instance each one reached.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

from ..dates import now
from ..errors import BadRequest, NotFound, PreconditionFailed, UnprocessableEntity
from ..storage import Session, Storage
from .access import Access, conjoin
from .documents import (
    Document,
    content_of,
    document_etag,
    merge_patch,
    name_issues,
    storable_issues,
)
from .model import DELETED, Resource, SoftDeleted
from .once import WriteKey
from .query import META_FIELDS
from .relations import Relations
from .versioning import VERSION, Versions, version_of

#: The answer to a write conditional on an ETag that is no longer the document's.
STALE_ETAG = "Client and server etags don't match"
#: The message of a 422 for a write that leaves a document invalid.
UPDATE_FAILURE = "Update failure: the document contains error(s)"


class Writer:
    """The write primitives of one resource, on one worker's storage."""

    def __init__(
        self,
        resource: Resource,
        storage: Storage,
        relations: Relations,
        versions: Versions | None,
        notify: Callable[[], Awaitable[None]],
    ) -> None:
        self.resource = resource
        self.storage = storage
        self.relations = relations
        self.versions = versions
        #: Tells the write listeners (the response cache) that documents changed.
        self.notify = notify

    @property
    def collection(self) -> str:
        return self.resource.collection

    def scope(self, query: Document, access: Access, *, deleted: bool) -> Document:
        """``query`` within the resource's own filter and the caller's access."""
        return access.restrict(conjoin(query, self.resource.base_filter(include_deleted=deleted)))

    def fixed(self, access: Access) -> Document:
        """Values every written document holds: a sub-resource's parent from
        the URL, and the plain equalities of ``datasource.filter``."""
        fixed: Document = {
            key: value
            for key, value in (self.resource.settings.datasource.filter or {}).items()
            if not key.startswith("$") and not isinstance(value, dict | list)
        }
        fixed.update(access.fixed)
        return fixed

    # -- what a written document must be ----------------------------------

    def check_changes(self, changes: Any, *, empty_ok: bool = False) -> None:
        """A PATCH body's fields: 400 unless an object, 422 for fields a client
        may not change."""
        if not isinstance(changes, dict) or not (changes or empty_ok):
            raise BadRequest("a PATCH body is a non-empty JSON object of fields to change")
        issues = name_issues(changes, dotted_top_level=True)
        issues.update(self.resource.schema.unwritable(changes))
        if issues:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)

    def validate(self, document: Document, issues: dict[str, str]) -> None:
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

    def merged(
        self,
        current: Document,
        changes: Mapping[str, Any],
        access: Access,
        *,
        checked: bool = False,
    ) -> tuple[Document, dict[str, str]]:
        """``current`` with ``changes`` merged in, and what is wrong with it
        (``checked``: merged again after the hooks, which are trusted)."""
        updated = copy.deepcopy(current)
        issues = merge_patch(updated, changes)
        if checked:
            self.resource.fields.to_native(updated)
            return updated, {}
        id_field = self.resource.ids.field
        if id_field != "_id" and updated.get(id_field) != current.get(id_field):
            issues.setdefault(id_field, "cannot be changed (it names the item)")
        for name, value in self.fixed(access).items():
            if name in current and updated.get(name) != current[name]:
                issues.setdefault(name, "cannot be changed (the resource's filter or URL)")
            elif updated.get(name) != value:
                issues.setdefault(name, f"must be {value} (the resource's filter or the URL)")
        if not issues:
            issues = self.resource.fields.to_native(updated)
        if not issues:
            self.validate(updated, issues)
        return updated, issues

    async def checked_references(
        self, document: Document, current: Document | None, access: Access
    ) -> None:
        """422 for references ``document`` adds that name no document (that
        the caller may read, where the target has rules)."""
        (missing,) = await self.relations.missing(
            [document], before=current, references=access.references
        )
        if missing:
            raise UnprocessableEntity(UPDATE_FAILURE, issues=missing)

    # -- stored versions ----------------------------------------------------

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
        document["_etag"] = document_etag(document, self.resource.etag_key)
        return document

    def next_version(self, current: Document, content: Mapping[str, Any]) -> Document:
        """What replaces ``current``: ``content`` without Shoal's meta fields,
        its ``_deleted`` kept only with soft delete, the next ``_version`` with
        versioning, stamped (``_created`` kept)."""
        replacement = {name: value for name, value in content.items() if name not in META_FIELDS}
        if not self.resource.settings.soft_delete:
            replacement.pop(DELETED, None)
        if self.versions is not None:
            replacement[VERSION] = version_of(current) + 1
        return self.stamp(replacement, created=current.get("_created"))

    async def atomically(self, work: Callable[[Session], Awaitable[Any]]) -> Any:
        """One transaction where a write touches two collections (versions),
        where MongoDB runs them; else ``work`` orders its writes safely."""
        if self.versions is None:
            return await work(None)

        async def run(session: Session) -> Any:
            return await work(session)

        return await self.storage.atomic(run)

    async def replace(
        self,
        current: Document,
        updated: Document,
        access: Access,
        etag: str | None = None,
        key: WriteKey | None = None,
    ) -> Document:
        """Replace the stored ``current`` with the next version made of
        ``updated``, if it is unchanged since it was read; the lost race's
        answer otherwise (``lost_race``)."""
        replacement = self.next_version(current, updated)
        if key is not None:
            replacement["_etag"] = key.etag(etag)
        filter = self.scope(
            {"_id": current["_id"], "_etag": current.get("_etag")}, access, deleted=True
        )
        versions = self.versions

        async def write(session: Session) -> bool:
            if versions is not None:
                return await versions.replace_document(current, filter, replacement, session)
            return await self.storage.replace_if(
                self.collection, filter, replacement, session=session
            )

        if not await self.atomically(write):
            return await self.lost_race(
                {"_id": current["_id"]}, current["_id"], access, etag=etag, key=key
            )
        replacement["_id"] = current["_id"]
        await self.notify()
        return replacement

    async def delete(self, current: Document, etag: str | None, access: Access) -> None:
        """Delete the stored ``current`` (and its versions), if it is unchanged
        since it was read (with ``etag``); the lost race's answer otherwise."""
        filter: Document = {"_id": current["_id"]}
        if etag is not None:
            filter["_etag"] = current.get("_etag")
        filter = self.scope(filter, access, deleted=True)
        versions = self.versions

        async def remove(session: Session) -> bool:
            if versions is not None:
                return await versions.delete_document(current["_id"], filter, session)
            return await self.storage.delete_if(self.collection, filter, session=session)

        if not await self.atomically(remove):
            await self.lost_race({"_id": current["_id"]}, current["_id"], access)
        await self.notify()

    async def lost_race(
        self,
        lookup: Document,
        item_id: Any,
        access: Access,
        *,
        etag: str | None = None,
        key: WriteKey | None = None,
        deleted_ok: bool = True,
    ) -> Document:
        """A conditional write matched nothing: the document, if the write that
        won was this very keyed write (done again at the same time on another
        instance); else 404 when it is gone (a soft-deleted one too, unless
        ``deleted_ok``), or 412: another writer changed it since it was read."""
        found = await self.storage.find_one(
            self.collection, self.scope(lookup, access, deleted=True)
        )
        if found is not None and done_before(found, etag, key):
            return found
        return self._refuse(found, item_id, access, deleted_ok=deleted_ok)

    def _refuse(
        self, found: Document | None, item_id: Any, access: Access, *, deleted_ok: bool
    ) -> NoReturn:
        if found is None:
            raise NotFound(f"no {self.resource.singular} with id {item_id}")
        if found.get(DELETED) is True and not deleted_ok:
            raise SoftDeleted(access.fields.apply(found))
        raise PreconditionFailed(STALE_ETAG)


def done_before(current: Document, etag: str | None, key: WriteKey | None) -> bool:
    """Whether ``current`` is the version this keyed write makes from ``etag``:
    the write was done already (and nothing was written since)."""
    if key is None or current.get("_etag") != key.etag(etag):
        return False
    key.replayed = True
    return True
