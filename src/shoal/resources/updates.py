"""Update operators in a PATCH body: what a client may send, checked before
MongoDB sees it.

    PATCH /books/<id>
    Content-Type: application/vnd.shoal.update+json

    {"$inc": {"stock": -1}, "$push": {"tags": "sale"}, "$currentDate": {"sold": true}}

The operators: ``$set``, ``$unset``, ``$inc``, ``$min``, ``$max``, ``$push``,
``$pull``, ``$addToSet`` and ``$currentDate``. Paths may be dotted; fields Shoal
owns (``_``-prefixed, the owner field) and read-only fields are refused, and so
is a path named under two operators (MongoDB refuses the conflict too). The
whole document after the update is still checked against the schema (see
``ResourceService.update``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    UnprocessableEntity,
)
from ..storage import Storage
from .access import Access
from .documents import content_of, etag_of, name_issues, new_etag, storable_issues
from .hooks import Hooks
from .model import Resource
from .once import HEADER as IDEMPOTENCY_HEADER
from .once import WriteKey
from .query import QueryRules, check_filter
from .schema import DocumentSchema
from .writes import STALE_ETAG, UPDATE_FAILURE, Writer, done_before

Document = dict[str, Any]

#: The media type of a PATCH body of update operators.
UPDATE_MEDIA_TYPE = "application/vnd.shoal.update+json"

#: The update operators a client may use.
OPERATORS = frozenset(
    {"$set", "$unset", "$inc", "$min", "$max", "$push", "$pull", "$addToSet", "$currentDate"}
)
_NUMBER_OPERATORS = frozenset({"$inc"})
_EACH_OPERATORS = frozenset({"$push", "$addToSet"})
#: Operators whose values are stored as they are (so their field names count).
_STORED_OPERATORS = frozenset({"$set", "$push", "$addToSet"})


def check_update(body: Any, schema: DocumentSchema, rules: QueryRules) -> Document:
    """The update document a client's operator body asks for; 400 for a body
    that is not one, 422 naming each field that may not be changed so."""
    if not isinstance(body, dict) or not body:
        raise BadRequest(
            'an update is a non-empty JSON object of operators, e.g. {"$inc": {"stock": 1}}'
        )
    unknown = sorted(key for key in body if key not in OPERATORS)
    if unknown:
        raise BadRequest(
            f"unsupported update operator(s): {', '.join(unknown)}; "
            f"use {', '.join(sorted(OPERATORS))}"
        )
    issues: dict[str, str] = {}
    seen: dict[str, str] = {}
    update: Document = {}
    for operator, fields in body.items():
        if not isinstance(fields, dict) or not fields:
            raise BadRequest(f"{operator} takes a non-empty object of field paths and values")
        for path, value in fields.items():
            parts = path.split(".")
            if any(not part or part.startswith("$") or "\x00" in part for part in parts):
                issues[path] = "invalid field name"
            elif (refused := schema.unwritable([path]).get(path)) is not None:
                issues[path] = refused
            elif path in seen or any(_overlap(path, other) for other in seen):
                issues[path] = f"changed by both {seen.get(path, 'another path')} and {operator}"
            problem = _value_problem(operator, value, rules)
            if problem is not None:
                issues.setdefault(path, problem)
            elif operator in _STORED_OPERATORS:
                each = isinstance(value, Mapping) and "$each" in value
                stored = value["$each"] if each else value
                for name, message in name_issues({"v": stored}).items():
                    issues.setdefault(path + name.removeprefix("v"), message)
            seen.setdefault(path, operator)
        update[operator] = dict(fields)
    if not issues:
        issues = storable_issues(update)
    if issues:
        raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
    return update


def _overlap(path: str, other: str) -> bool:
    """Whether one path lies inside the other (``a`` and ``a.b`` conflict)."""
    return path.startswith(other + ".") or other.startswith(path + ".")


def _value_problem(operator: str, value: Any, rules: QueryRules) -> str | None:
    if operator in _NUMBER_OPERATORS and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        return f"{operator} takes a number"
    if operator == "$currentDate" and value is not True and value != {"$type": "date"}:
        return '$currentDate takes true or {"$type": "date"}'
    each = operator in _EACH_OPERATORS and isinstance(value, Mapping) and "$each" in value
    if each and (set(value) != {"$each"} or not isinstance(value["$each"], list)):
        return f'{operator} takes a value, or {{"$each": [values]}} alone'
    if operator == "$pull" and isinstance(value, Mapping):
        try:
            check_filter(value, rules)
        except BadRequest as error:
            return error.message
    return None


class OperatorUpdates:
    """Update operators applied to one document of a resource."""

    def __init__(self, writer: Writer, storage: Storage, hooks: Hooks) -> None:
        self.writer = writer
        self.resource: Resource = writer.resource
        self.storage = storage
        self.hooks = hooks

    async def apply(
        self,
        item_id: Any,
        body: Any,
        etag: str | None,
        access: Access,
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
        if self.writer.versions is not None:
            raise BadRequest(
                f"{self.resource.name} is versioned: send the changes as a merge patch "
                "(application/json), which makes the new version"
            )
        update = check_update(body, self.resource.schema, self.resource.rules)
        # Applied to a field the caller cannot read, an operator tells its value
        # (a $min that changes nothing, a $inc the schema refuses): refused.
        access.fields.check_names(
            [path for fields in update.values() for path in fields], "the update"
        )
        if key is not None and etag is None:
            raise PreconditionRequired(
                f"an update with an {IDEMPOTENCY_HEADER} needs If-Match with the document's "
                "ETag, so that doing it again cannot apply it twice"
            )
        condition = etag
        if access.ruled:
            ruled = await self._ruled(item_id, update, etag, access, key)
            if isinstance(ruled, dict):
                return ruled  # this keyed write, done before
            condition = ruled
        await self._native_values(update, access)
        await self.hooks.fire("on_update", self.resource.name, update, None)
        written = new_etag() if key is None else key.etag(etag)
        update.setdefault("$set", {})["_etag"] = written
        update.setdefault("$currentDate", {})["_updated"] = True
        lookup = self.resource.lookup(item_id)
        if etag is not None:
            lookup["_etag"] = condition
        collection = self.resource.collection
        filter = self.writer.scope(lookup, access, deleted=False)
        before = await self.storage.find_one_and_update(collection, filter, update)
        if before is None:
            done = await self.writer.lost_race(
                self.resource.lookup(item_id), item_id, access, etag=etag, key=key, deleted_ok=False
            )
            return access.fields.apply(done)
        after = await self.storage.find_one(collection, {"_id": before["_id"], "_etag": written})
        if after is None:
            # Another write followed this one at once; this one's result is
            # what that write started from.
            after = {**before, "_etag": written, "_updated": before.get("_updated")}
        else:
            issues = self.resource.schema.issues(self.resource.fields.to_json(content_of(after)))
            if issues:
                await self._undo(before, written)
                raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
        await self.writer.notify()
        await self.hooks.fire("on_updated", self.resource.name, update, before)
        return access.fields.apply(after)

    async def _ruled(
        self,
        item_id: Any,
        update: Document,
        etag: str | None,
        access: Access,
        key: WriteKey | None,
    ) -> Document | str | None:
        """A caller with rules: 404 outside its filters first, then 403 for
        a field its role may not write; ``If-Match`` holds the caller's view's
        ETag (``service._current``), so the write is made conditional on the
        stored ETag read here. Returns that ETag, or the document when this
        keyed write was done before."""
        current = await self.storage.find_one(
            self.resource.collection,
            self.writer.scope(self.resource.lookup(item_id), access, deleted=False),
        )
        if current is None:
            raise NotFound(f"no {self.resource.singular} with id {item_id}")
        if done_before(current, etag, key):
            return access.fields.apply(current)
        named = [path for fields in update.values() for path in fields]
        renamed = update.get("$rename", {}).values()
        access.writes.check_writable([*named, *(name for name in renamed if isinstance(name, str))])
        if etag is None:
            return None
        if etag_of(access.fields.apply(current), self.resource.etag_key) != etag:
            raise PreconditionFailed(STALE_ETAG)
        stored = current.get("_etag")
        return stored if isinstance(stored, str) else None

    async def _native_values(self, update: Document, access: Access) -> None:
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
        await self.writer.checked_references(added, None, access)

    async def _undo(self, before: Document, written: str) -> None:
        """Put back the document an invalid update replaced."""
        restored = {key: value for key, value in before.items() if key != "_id"}
        filter = {"_id": before["_id"], "_etag": written}
        if not await self.storage.replace_if(self.resource.collection, filter, restored):
            raise Conflict(
                "the update left the document invalid, and another write changed it "
                "before it could be undone; read it again"
            )


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
