"""Keyset pagination: a page starts after the last document of the previous one,
found through the sort keys (and ``_id`` to break ties), so page 2,000 costs
what page 1 costs where ``skip`` would read and drop every document before it.

The cursor in ``_links.next`` is opaque: the previous page's last sort values,
BSON-encoded (dates and ids keep their types), bound to the query it belongs to
(filter, sort, projection, resource), and signed with an HMAC of the server's
secret key, so a client can neither forge a cursor nor move one to another
query. Keyset order needs each sort field to hold one BSON type (plus missing
or null values, which sort first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import bson
from bson.errors import BSONError

from ..errors import BadRequest

Document = dict[str, Any]
Sort = list[tuple[str, int]]

#: Bytes of the HMAC kept in a cursor (128 bits).
_MAC_BYTES = 16


def keyset_sort(sort: Sort | None) -> Sort:
    """The sort a cursor follows: the client's, then ``_id`` to break ties."""
    keys = [(field, direction) for field, direction in sort or [] if field != "_id"]
    tie = next((direction for field, direction in sort or [] if field == "_id"), None)
    if tie is None:
        tie = keys[-1][1] if keys else 1
    return [*keys, ("_id", tie)]


def with_sort_fields(projection: dict[str, int] | None, sort: Sort) -> dict[str, int] | None:
    """A projection that keeps the sort fields, which the next cursor is made of."""
    if not projection:
        return projection
    fields = {field for field, _ in sort}
    if any(flag == 1 for flag in projection.values()):
        return {**projection, **dict.fromkeys(fields, 1)}
    return {name: flag for name, flag in projection.items() if name not in fields} or None


def sort_values(document: Mapping[str, Any], sort: Sort) -> list[Any]:
    """The values of a document at each sort key (None where it has none)."""
    return [_value_at(document, field) for field, _ in sort]


def _value_at(document: Mapping[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def after(sort: Sort, values: Sequence[Any]) -> Document:
    """The filter of the documents that come after ``values`` in ``sort`` order:
    a greater first key, or an equal first key and a greater second one, ..."""
    branches: list[Document] = []
    for index, (field, direction) in enumerate(sort):
        equal = {name: values[i] for i, (name, _) in enumerate(sort[:index])}
        beyond = _beyond(field, values[index], direction)
        if beyond is None:
            continue  # nothing sorts past a missing value going down
        branches.append({**equal, **beyond})
    return {"$or": branches} if branches else {"_id": {"$exists": False}}


def _beyond(field: str, value: Any, direction: int) -> Document | None:
    """The filter of the values of ``field`` past ``value`` in ``direction``.
    Missing and null values sort before every other value going up, so after
    every other value going down."""
    if direction == 1:
        if value is None:
            return {field: {"$exists": True, "$ne": None}}
        return {field: {"$gt": value}}
    if value is None:
        return None
    return {"$or": [{field: {"$lt": value}}, {field: None}]}


def query_digest(resource: str, filter: Mapping[str, Any], sort: Sort, projection: Any) -> bytes:
    """What a cursor is bound to: the resource and the whole query but its page."""
    encoded = bson.encode(
        {"r": resource, "f": dict(filter), "s": [list(key) for key in sort], "p": projection}
    )
    return hashlib.sha256(encoded).digest()


class CursorCodec:
    """Signs and checks cursors with a key derived from the server's secret."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"shoal-cursor\0" + secret.encode()).digest()

    def _mac(self, payload: bytes, digest: bytes) -> bytes:
        return hmac.new(self._key, digest + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, values: Sequence[Any], digest: bytes) -> str:
        payload = bson.encode({"v": list(values)})
        token = payload + self._mac(payload, digest)
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, cursor: str, digest: bytes) -> list[Any]:
        """The sort values of a cursor this server made for this very query."""
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise _not_a_cursor() from None
        payload, mac = token[:-_MAC_BYTES], token[-_MAC_BYTES:]
        if len(token) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload, digest)):
            raise _not_a_cursor()
        try:
            values = bson.decode(payload, codec_options=_CODEC)["v"]
        except (BSONError, KeyError, IndexError):
            raise _not_a_cursor() from None
        if not isinstance(values, list):
            raise _not_a_cursor()
        return values


_CODEC: bson.CodecOptions[dict[str, Any]] = bson.CodecOptions(tz_aware=True)


def _not_a_cursor() -> BadRequest:
    return BadRequest(
        "cursor is not a cursor of this query: follow _links.next as given, with the "
        "same where, sort and projection"
    )
