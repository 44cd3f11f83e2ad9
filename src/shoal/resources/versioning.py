"""Document versioning (``versioning: true``), as Eve does it: every write
makes a new version, kept in a shadow collection ``<collection>_versions``.

A document holds its version number (``_version``); each version is a shadow
document ``{_id_document, _version, <fields>, _updated, _etag[, _deleted]}``,
unique on ``(_id_document, _version)``. ``_latest_version`` is the document's
own ``_version``, added when it is read.

Consistency. The write of the document is the conditional replace on
``{_id, _etag}``, so of two writers one makes version n+1 and the other gets
412. Where MongoDB runs transactions (a replica set, a sharded cluster), the
document and its version are written in one transaction. Where it does not (a
standalone server, a compatible server without them), the document is written
first and its version after it: a crash in between leaves no version that
names a write that did not happen; the only version that can be missing is the
latest, whose content is the document itself. So reads take the latest version
from the document, and the next write stores the missing version (from the
document, before it changes) before writing its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel

from ..errors import Conflict
from ..storage import Session, Storage
from .model import Page, Resource

Document = dict[str, Any]

VERSION = "_version"
LATEST_VERSION = "_latest_version"
ID_DOCUMENT = "_id_document"
SUFFIX = "_versions"
#: Fields of a document that are not part of a version.
_NOT_VERSIONED = frozenset({"_id", "_created", VERSION, LATEST_VERSION, "_links", ID_DOCUMENT})


def version_of(document: Mapping[str, Any]) -> int:
    """A document's version; one for a document that predates versioning."""
    value = document.get(VERSION)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


class Versions:
    """The versions of one resource's documents."""

    def __init__(self, resource: Resource, storage: Storage) -> None:
        self.resource = resource
        self.storage = storage

    @property
    def collection(self) -> str:
        return f"{self.resource.collection}{SUFFIX}"

    def indexes(self) -> list[IndexModel]:
        return [
            IndexModel(
                [(ID_DOCUMENT, ASCENDING), (VERSION, ASCENDING)],
                unique=True,
                name="document_version",
            )
        ]

    def _of_document(self, item_id: Any) -> Document:
        # A one-element $in matches as equality does; the embedded store only
        # matches an ObjectId held outside _id this way.
        return {ID_DOCUMENT: {"$in": [item_id]}}

    def shadow(self, document: Mapping[str, Any]) -> Document:
        """The version a document is at, as it is kept."""
        kept = {key: value for key, value in document.items() if key not in _NOT_VERSIONED}
        kept[ID_DOCUMENT] = document["_id"]
        kept[VERSION] = version_of(document)
        return kept

    # -- writes ----------------------------------------------------------

    async def insert(self, documents: list[Document], session: Session) -> None:
        """Version 1 of new documents."""
        await self.storage.insert_many(
            self.collection, [self.shadow(document) for document in documents], session=session
        )

    async def record(self, document: Mapping[str, Any], session: Session) -> None:
        """Keep the version ``document`` is at (again, if it is kept already:
        the same version always has the same content)."""
        shadow = self.shadow(document)
        filter = {**self._of_document(document["_id"]), VERSION: shadow[VERSION]}
        try:
            await self.storage.replace_if(
                self.collection, filter, shadow, upsert=True, session=session
            )
        except Conflict:
            # Another writer stored the same version at the same moment.
            if session is not None:
                raise

    async def forget(self, item_id: Any, session: Session) -> None:
        """Every version of a document (hard-deleted)."""
        await self.storage.delete_many(self.collection, self._of_document(item_id), session=session)

    # -- versioned writes: the document and its versions, in one transaction
    # where MongoDB runs them (the caller's ``session``), else in this order.

    async def insert_documents(self, documents: list[Document], session: Session) -> None:
        """New documents, and their version 1."""
        await self.storage.insert_many(self.resource.collection, documents, session=session)
        await self.insert(documents, session)

    async def replace_document(
        self,
        current: Document,
        filter: Document,
        replacement: Document,
        session: Session,
    ) -> bool:
        """Replace ``current`` where ``filter`` still matches it, keeping the
        version it is at (the one a crash may have left unkept) before, and the
        new one after; whether it matched."""
        await self.record(current, session)
        matched = await self.storage.replace_if(
            self.resource.collection, filter, replacement, session=session
        )
        if matched:
            await self.record({**replacement, "_id": current["_id"]}, session)
        return matched

    async def delete_document(self, item_id: Any, filter: Document, session: Session) -> bool:
        """Delete the document where ``filter`` still matches it, and its
        versions; whether it matched."""
        deleted = await self.storage.delete_if(self.resource.collection, filter, session=session)
        if deleted:
            await self.forget(item_id, session)
        return deleted

    async def delete_documents(self, filter: Document) -> int:
        """Delete every document ``filter`` matches, and their versions."""
        stored = await self.storage.find_all(
            self.resource.collection, filter, projection={"_id": 1}
        )
        ids = [document["_id"] for document in stored]
        deleted = await self.storage.delete_many(self.resource.collection, {"_id": {"$in": ids}})
        await self.storage.delete_many(self.collection, {ID_DOCUMENT: {"$in": ids}})
        return deleted

    # -- reads -----------------------------------------------------------

    def as_version(self, shadow: Mapping[str, Any], latest: Mapping[str, Any]) -> Document:
        """A kept version as a client reads it: the document's id and
        ``_created`` with the version's fields."""
        version = {key: value for key, value in shadow.items() if key not in _NOT_VERSIONED}
        version["_id"] = latest["_id"]
        if "_created" in latest:
            version["_created"] = latest["_created"]
        version[VERSION] = shadow.get(VERSION, version_of(latest))
        version[LATEST_VERSION] = version_of(latest)
        return version

    def latest(self, document: Mapping[str, Any]) -> Document:
        """The document itself as its latest version."""
        current = dict(document)
        current[VERSION] = version_of(document)
        current[LATEST_VERSION] = current[VERSION]
        return current

    async def get(self, document: Mapping[str, Any], number: int) -> Document | None:
        """Version ``number`` of ``document``, or None."""
        newest = version_of(document)
        if number == newest:
            return self.latest(document)
        if number > newest:
            return None
        found = await self.storage.find_one(
            self.collection, {**self._of_document(document["_id"]), VERSION: number}
        )
        return self.as_version(found, document) if found is not None else None

    async def span(self, document: Mapping[str, Any], first: int, last: int) -> list[Document]:
        """Versions ``first`` to ``last`` (within the latest), oldest first."""
        newest = version_of(document)
        last = min(last, newest)
        if first > last:
            return []
        kept = await self.storage.find_all(
            self.collection,
            {**self._of_document(document["_id"]), VERSION: {"$gte": first, "$lte": last}},
            sort=[(VERSION, ASCENDING)],
        )
        versions = [
            self.as_version(shadow, document) for shadow in kept if shadow.get(VERSION) != newest
        ]
        if last == newest:
            versions.append(self.latest(document))
        return versions


async def version_page(
    versions: Versions, current: Mapping[str, Any], first: int, last: int, *, diffs: bool
) -> tuple[list[Document], Document | None, Page]:
    """Versions ``first`` to ``last`` of ``current`` as a page (its total: the
    latest version), and, for ``diffs``, the version before the first, which
    the first one's changes are counted from (None on the first page)."""
    latest = version_of(current)
    span = await versions.span(current, max(1, first - 1) if diffs else first, last)
    previous = span.pop(0) if diffs and first > 1 and span else None
    return span, previous, Page(span, latest, last < latest)


def diff(version: Document, previous: Document | None) -> Document:
    """What changed from ``previous`` to ``version``: the fields that differ,
    the names of the ones removed (``_removed``), and the version's identity."""
    if previous is None:
        return version
    changed = {
        key: value
        for key, value in version.items()
        if key in ("_id", VERSION, "_links") or previous.get(key) != value or key not in previous
    }
    removed = sorted(
        key for key in previous if key not in version and key not in ("_links", "_removed")
    )
    if removed:
        changed["_removed"] = removed
    return changed
