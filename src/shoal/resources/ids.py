"""Item ids: which field names an item in URLs (``id_field``, ``_id`` by
default) and what its values are.

``_id`` is an ObjectId unless the schema declares it: ``_id: {type: string}``
(with any pattern or format) or ``_id: {type: integer}``, as existing
collections may have. ObjectIds and ``format: uuid`` strings are generated when
a new document comes without one; other ids are the client's to choose.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from bson import ObjectId

from ..errors import NotFound

IdKind = Literal["objectid", "string", "integer"]

_INTEGER = re.compile(r"^-?[0-9]{1,19}$")
_INT64 = 2**63


def id_kind(rule: Mapping[str, Any] | None) -> IdKind:
    if rule is None or rule.get("format") == "objectid":
        return "objectid"
    return "integer" if rule.get("type") == "integer" else "string"


class IdRule:
    """One id field: how a URL names it, and how a new document gets one."""

    def __init__(self, field: str, rule: Mapping[str, Any] | None) -> None:
        self.field = field
        self.kind: IdKind = id_kind(rule)
        self._uuid = rule is not None and rule.get("format") == "uuid"

    def parse(self, text: str) -> Any:
        """The id a URL names; anything that cannot be one names no item (404)."""
        if self.kind == "objectid":
            if ObjectId.is_valid(text):
                return ObjectId(text)
            raise NotFound(f"no item with id {text!r} (ids are 24 hexadecimal characters)")
        if self.kind == "integer":
            if _INTEGER.match(text) and -_INT64 <= int(text) < _INT64:
                return int(text)
            raise NotFound(f"no item with id {text!r} (ids are whole numbers)")
        return text

    def from_body(self, value: Any) -> tuple[Any, str | None]:
        """A client's ``_id``: (the stored value, None) or (None, the problem)."""
        if self.kind == "objectid":
            if isinstance(value, ObjectId):  # Extended JSON, as the Data API reads it
                return value, None
            if isinstance(value, str) and ObjectId.is_valid(value):
                return ObjectId(value), None
            return None, "must be a 24-hex-character ObjectId"
        if self.kind == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return value, None
            return None, "must be a whole number"
        if isinstance(value, str) and value:
            return value, None
        return None, "must be a non-empty string"

    def generate(self, seed: bytes | None = None) -> Any:
        """A new id for a document that came without one, or None when the
        client must choose it. From ``seed`` (16 bytes or more), the same id
        every time: a keyed write's (see ``once.WriteKey``)."""
        if self.kind == "objectid":
            return ObjectId(seed[:12]) if seed is not None else ObjectId()
        if self._uuid:
            if seed is None:
                return str(uuid.uuid4())
            return str(uuid.UUID(bytes=seed[:16], version=4))
        return None
