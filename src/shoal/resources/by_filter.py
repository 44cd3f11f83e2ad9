"""Writes by filter (``bulk_writes: true``): ``PATCH /<resource>?where=`` merges
changes into every document a filter matches, ``DELETE /<resource>?where=``
deletes them, at most ``max_affected`` at once (409 beyond it, nothing
written). They are refused where one-by-one writes would do more: versions,
soft delete, and the event hooks registered for them."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, Conflict, UnprocessableEntity
from ..storage import Storage
from .access import Access, conjoin
from .documents import Document
from .hooks import Hooks
from .model import Resource
from .writes import Writer

#: The hooks one-by-one PATCHes run (a PATCH by filter would skip them).
PATCH_HOOKS = ("on_update", "on_updated")
#: The hooks one-by-one DELETEs run.
DELETE_HOOKS = ("on_delete_item", "on_deleted_item", "on_delete_resource", "on_deleted_resource")


class WritesByFilter:
    """The writes by filter of one resource."""

    def __init__(self, writer: Writer, storage: Storage, hooks: Hooks) -> None:
        self.writer = writer
        self.resource: Resource = writer.resource
        self.storage = storage
        self.hooks = hooks

    def _refuse_skipped(self, hooks: tuple[str, ...]) -> None:
        """Refuse a write by filter that would skip what one-by-one writes do:
        versions, soft delete, and the event hooks registered for it."""
        if self.writer.versions is not None or self.resource.settings.soft_delete:
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

    async def _matching(self, filter: Document, access: Access) -> list[Document]:
        """The documents ``filter`` matches for this caller, at most
        ``max_affected`` (409 beyond it: nothing is written)."""
        access.fields.check_filter(filter, "where")
        limit = self.resource.settings.max_affected
        documents = await self.storage.find_page(
            self.resource.collection,
            self.writer.scope(filter, access, deleted=False),
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

    async def patch(self, filter: Document, changes: Any, access: Access) -> tuple[int, int]:
        """Merge ``changes`` into every document ``filter`` matches: all are
        valid after it, or none is written (422 naming each document's issues).
        Each document is replaced on its own ETag, so one changed meanwhile by
        another writer is left as that writer made it. (matched, modified)."""
        self._refuse_skipped(PATCH_HOOKS)
        self.writer.check_changes(changes)
        access.writes.check_writable(changes)
        documents = await self._matching(filter, access)
        replacements: list[tuple[Document, Document]] = []
        failures: dict[str, Any] = {}
        for current in documents:
            updated, issues = self.writer.merged(current, changes, access)
            if not issues:
                (issues,) = await self.writer.relations.missing(
                    [updated], before=current, references=access.references
                )
            if issues:
                failures[str(current["_id"])] = issues
                continue
            condition = self.writer.scope(
                {"_id": current["_id"], "_etag": current.get("_etag")}, access, deleted=True
            )
            replacements.append((condition, self.writer.next_version(current, updated)))
        if failures:
            raise UnprocessableEntity(
                f"Update failure: {len(failures)} document(s) would contain error(s); "
                "nothing was changed",
                issues=failures,
            )
        modified = await self.storage.replace_each(self.resource.collection, replacements)
        if replacements:
            await self.writer.notify()
        return len(documents), modified

    async def delete(self, filter: Document, access: Access) -> tuple[int, int]:
        """Delete every document ``filter`` matches for this caller (409 beyond
        ``max_affected``). (matched, deleted)."""
        self._refuse_skipped(DELETE_HOOKS)
        documents = await self._matching(filter, access)
        if not documents:
            return 0, 0
        ids = [document["_id"] for document in documents]
        # Only what still matches when it is deleted.
        condition = self.writer.scope(conjoin(filter, {"_id": {"$in": ids}}), access, deleted=True)
        deleted = await self.storage.delete_many(self.resource.collection, condition)
        await self.writer.notify()
        return len(documents), deleted
