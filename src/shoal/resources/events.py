"""Change events as subscribers see them: one write to a resource's
collection (``Change``), its id (MongoDB's resume token, as an SSE event id),
and which subscribers may see it (``matcher``: the resource's own documents,
the subscriber's owner filter and ``where``, matched on the event's document
with mongoquery, see docs/decisions/0009-change-streams.md; a ``$regex`` by
RE2, see docs/decisions/0019-linear-time-regex-in-streams.md). ``changes`` hands the events
of a shared change stream out to the subscribers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import re2
from bson import ObjectId, json_util
from mongoquery import Query

from ..errors import BadRequest
from .access import Access, conjoin
from .query import QueryRules, parse_where

Document = dict[str, Any]

#: Operators a stream's ``where`` may use: those Shoal can match on an event's
#: document the way MongoDB matches stored documents.
STREAM_OPERATORS = frozenset(
    {
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        "$and", "$or", "$nor", "$not", "$exists", "$all", "$elemMatch", "$size",
        "$mod", "$regex",
    }
)  # fmt: skip


def event_id(token: Mapping[str, Any]) -> str:
    """A resume token as an SSE event id: MongoDB's ``_data`` string itself,
    else the token as canonical Extended JSON."""
    data = token.get("_data")
    if isinstance(data, str) and len(token) == 1:
        return data
    return json_util.dumps(token)


def resume_token(event: str) -> dict[str, Any]:
    """The resume token an SSE event id stands for (see ``event_id``)."""
    if event.startswith("{"):
        try:
            token = json_util.loads(event)
        except ValueError:
            raise BadRequest("Last-Event-ID is not an event id of this stream") from None
        if isinstance(token, dict):
            return token
        raise BadRequest("Last-Event-ID is not an event id of this stream")
    return {"_data": event}


#: The operations whose events carry the document (MongoDB's ``fullDocument``).
DOCUMENT_OPERATIONS = frozenset({"insert", "update", "replace"})


@dataclass(frozen=True)
class Change:
    """One write to a resource's collection."""

    #: The event's id (the resume token), as ``event_id`` writes it.
    id: str
    #: insert, update, replace or delete.
    operation: str
    document_id: Any
    #: The document after the write (None for a delete, or an update whose
    #: document is gone again by the time the event was read).
    document: Document | None


def change_of(event: Mapping[str, Any]) -> Change:
    """A MongoDB change event as a ``Change``."""
    key = event.get("documentKey") or {}
    operation = str(event.get("operationType", ""))
    document = event.get("fullDocument")
    if operation in DOCUMENT_OPERATIONS and isinstance(document, Mapping):
        document = _native(dict(document))
        # documentKey is the event's identity of the document (the same _id).
        document["_id"] = key.get("_id")
    else:
        document = None
    return Change(
        id=event_id(event["_id"]),
        operation=operation,
        document_id=key.get("_id"),
        document=document,
    )


#: Extended JSON read back as BSON values, dates time-zone aware as reads have them.
_EXTENDED = json_util.JSONOptions(tz_aware=True, tzinfo=UTC)


#: The embedded store's mark of an ObjectId in an event's document.
_STORED_OBJECT_ID = "__neosqlite_objectid__"


def _native(value: Any) -> Any:
    """An event's document with what an engine left in storage form (the
    embedded store sends dates as ``{"$date": ...}``, and ObjectIds outside
    ``_id`` as ``{"__neosqlite_objectid__": true, "id": "<hex>"}``) as the
    values reads get, so that events render as reads do (a media field's
    URL needs its ObjectId); native values pass as they are."""
    if isinstance(value, list):
        return [_native(item) for item in value]
    if isinstance(value, dict):
        text = value.get("id")
        if (
            value.get(_STORED_OBJECT_ID) is True
            and isinstance(text, str)
            and ObjectId.is_valid(text)
        ):
            return ObjectId(text)
        decoded = {key: _native(item) for key, item in value.items()}
        # Stored documents hold no $-names (writes refuse them): one is
        # Extended JSON (``{"$date": …}``, ``{"$oid": …}``).
        if any(key.startswith("$") for key in decoded):
            return json_util.object_hook(decoded, json_options=_EXTENDED)
        return decoded
    return value


Matcher = Callable[[Change], bool]


def matcher(
    access: Access,
    where: Mapping[str, Any] | None,
    item_id: Any = None,
    base: Mapping[str, Any] | None = None,
) -> Matcher:
    """What a subscriber may see: the resource's own documents (``base``, its
    ``datasource.filter``), its document (``item_id``), its owner filter, its
    ``where``."""
    if base:
        access = Access(filter=conjoin(base, access.filter))
    owner = Query(dict(access.filter)) if access.filter else None
    wanted = _LinearQuery(dict(where)) if where else None

    def matches(change: Change) -> bool:
        if item_id is not None and change.document_id != item_id:
            return False
        document = change.document
        if document is None:
            return item_id is not None or (owner is None and wanted is None)
        try:
            if owner is not None and not owner.match(document):
                return False
            return wanted is None or bool(wanted.match(document))
        except Exception:  # one subscriber's where must never stop the shared feed
            return False

    return matches


def with_departures(matches: Matcher, departed: set[str]) -> Matcher:
    """``matches``, and a change that takes out of the subscriber's view a
    document it was sent during the stream (it no longer matches, or is
    deleted): the change goes to the subscriber too, its id added to
    ``departed`` so that it is sent as a delete of the document, without it.
    A subscriber with rules gets these: the document left its role's filter."""
    seen: set[Any] = set()

    def matched(change: Change) -> bool:
        try:
            key = (type(change.document_id), change.document_id)
            hash(key)
        except TypeError:  # an id that is no hashable value: not followed
            return matches(change)
        if matches(change):
            if change.operation == "delete":
                seen.discard(key)
            else:
                seen.add(key)
            return True
        if key in seen:
            seen.discard(key)
            departed.add(change.id)
            return True
        return False

    return matched


def parse_stream_where(text: str, rules: QueryRules) -> dict[str, Any]:
    """``where`` for a stream: the resource's rules, and only the operators
    Shoal matches on events itself."""
    where = parse_where(text, rules)
    _check_stream_operators(where)
    return where


#: RE2, quietly: a pattern it cannot take is the client's 400, not a log line.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def linear_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2, whose matching time grows linearly with
    the text: one subscriber's ``$regex`` runs on the worker's event loop for
    every event, so a pattern that backtracks (``^(a+)+$``) must not be able to
    stall it. 400 for what RE2 cannot match (backreferences, lookaround)."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        raise BadRequest(
            f"$regex {pattern!r} is not supported in the where of a stream: stream filters "
            "take regular expressions without backreferences or lookaround (RE2 syntax)"
        ) from None


class _LinearQuery(Query):  # type: ignore[misc]  # mongoquery has no types
    """mongoquery's matcher with ``$regex`` matched by RE2 (``linear_regex``)."""

    @staticmethod
    def _regex(condition: Any, entry: Any) -> bool:
        if not isinstance(entry, str) or not isinstance(condition, str):
            return False
        return linear_regex(condition).search(entry) is not None


def _check_stream_operators(value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _check_stream_operators(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key.startswith("$") and key not in STREAM_OPERATORS:
                raise BadRequest(f"{key} is not supported in the where of a stream")
            if key == "$regex":
                if not isinstance(item, str):
                    raise BadRequest("$regex takes a pattern (a string) in the where of a stream")
                linear_regex(item)
            if key == "$mod" and not (
                isinstance(item, list)
                and len(item) == 2
                and all(isinstance(n, int | float) and not isinstance(n, bool) for n in item)
                and item[0] != 0
            ):
                raise BadRequest("$mod takes [divisor, remainder]: two numbers, the divisor not 0")
            _check_stream_operators(item)
