"""What a resource's schema says about its fields beyond validation: the ones
stored as native BSON types, and the references to other resources.

JSON has no date or ObjectId, so a schema property says which strings mean one:

- ``format: date-time`` is stored as a BSON date. Clients send RFC 3339
  (``2026-11-24T10:00:00Z``) or, as Eve clients do, RFC 1123 (``Tue, 24 Nov 2026
  10:00:00 GMT``); Shoal answers with RFC 1123, as Eve does.
- ``format: objectid`` is stored as an ObjectId (24 hexadecimal digits in JSON).

The same holds inside objects and arrays, and in ``where`` filters on those
fields, so a range query compares dates with dates. Values already stored as
native types (written by Eve, say) stay so through every write.

A property with ``data_relation: {resource, field, embeddable}`` refers to a
document of another resource (Eve's setting); see ``relations.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from bson import ObjectId

from ..config import is_media
from ..dates import parse_http_date
from ..schemas import ITEMS, dotted, schema_fields

Document = dict[str, Any]


class Kind(Enum):
    """A native BSON type a JSON string stands for."""

    DATE = "date-time"
    OBJECTID = "objectid"


#: ``format`` values → the native type they stand for.
FORMATS = {kind.value: kind for kind in Kind}

DATE_MESSAGE = (
    "must be a date: RFC 3339 (2026-11-24T10:00:00Z) or RFC 1123 (Tue, 24 Nov 2026 10:00:00 GMT)"
)
OBJECTID_MESSAGE = "must be a 24-hex-character ObjectId"


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def parse_date(value: str) -> datetime | None:
    """An RFC 3339 or RFC 1123 date as MongoDB stores it (UTC, milliseconds)."""
    parsed: datetime | None
    if _RFC3339.match(value):
        try:
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            return None
    else:
        parsed = parse_http_date(value)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def to_native(kind: Kind, value: Any) -> Any:
    """``value`` as ``kind``, or None when it is no such value (already-native
    values stay as they are)."""
    if kind is Kind.DATE:
        if isinstance(value, datetime):
            return value
        return parse_date(value) if isinstance(value, str) else None
    if isinstance(value, ObjectId):
        return value
    return ObjectId(value) if isinstance(value, str) and ObjectId.is_valid(value) else None


def _message(kind: Kind) -> str:
    return DATE_MESSAGE if kind is Kind.DATE else OBJECTID_MESSAGE


@dataclass(frozen=True)
class Relation:
    """A reference to another resource's documents (``data_relation``)."""

    #: The field as MongoDB names it (``author``, ``meta.reviewer``, ``cc``).
    name: str
    #: The schema path, ``[]`` marking array items (``("cc", "[]")``).
    path: tuple[str, ...]
    resource: str
    #: The target's field the value matches; None: the target's id field.
    field: str | None
    embeddable: bool

    @property
    def many(self) -> bool:
        """Whether the field holds a list of references."""
        return self.path[-1] == ITEMS


@dataclass
class _Node:
    kind: Kind | None = None
    properties: dict[str, _Node] = field(default_factory=dict)
    items: _Node | None = None
    #: Whether anything at or under this node has a native type (set by seal).
    typed: bool = False

    def child(self, part: str) -> _Node:
        if part == ITEMS:
            if self.items is None:
                self.items = _Node()
            return self.items
        return self.properties.setdefault(part, _Node())

    def seal(self) -> bool:
        """Work out ``typed`` here and below; returns it."""
        below = [child.seal() for child in self.properties.values()]
        if self.items is not None:
            below.append(self.items.seal())
        self.typed = self.kind is not None or any(below)
        return self.typed


class Fields:
    """The native types and references of one resource's schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._root = _Node()
        #: Dotted field name → native type, for ``where`` (array items share
        #: their array's name, as in MongoDB filters).
        self.kinds: dict[str, Kind] = {}
        #: Dotted field name → the reference it holds.
        self.relations: dict[str, Relation] = {}
        for path, rule in schema_fields(schema):
            node = self._root
            for part in path:
                node = node.child(part)
            # A media field (a file) holds its GridFS file's ObjectId.
            kind = Kind.OBJECTID if is_media(rule) else FORMATS.get(rule.get("format", ""))
            if kind is not None and _allows_string(rule):
                node.kind = kind
                self.kinds[dotted(path)] = kind
            relation = rule.get("data_relation")
            if isinstance(relation, Mapping):
                name = dotted(path)
                self.relations[name] = Relation(
                    name=name,
                    path=path,
                    resource=str(relation["resource"]),
                    field=relation.get("field"),
                    embeddable=bool(relation.get("embeddable", False)),
                )
        self.typed = self._root.seal()

    # -- documents -------------------------------------------------------

    def to_native(self, document: Document) -> dict[str, str]:
        """Turn the strings of typed fields into native values, in place;
        returns the issues of the ones that are not dates or ObjectIds."""
        issues: dict[str, str] = {}
        if self.typed:
            _convert(document, self._root, "", issues)
        return issues

    def to_json(self, document: Document) -> Document:
        """A copy of ``document`` with native values of typed fields as the JSON
        strings the schema validates (RFC 3339 dates, hex ObjectIds)."""
        if not self.typed:
            return document
        rendered: Document = _render(document, self._root)
        return rendered

    # -- filters ---------------------------------------------------------

    def kind_of(self, name: str) -> Kind | None:
        return self.kinds.get(name)


def _allows_string(rule: Mapping[str, Any]) -> bool:
    kind = rule.get("type", "string")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _convert(value: Any, node: _Node, path: str, issues: dict[str, str]) -> Any:
    if node.kind is not None and value is not None:
        native = to_native(node.kind, value)
        if native is None:
            issues.setdefault(path or "(document)", _message(node.kind))
            return value
        return native
    if isinstance(value, dict):
        for key, child in node.properties.items():
            if key in value and child.typed:
                value[key] = _convert(value[key], child, f"{path}.{key}" if path else key, issues)
    elif isinstance(value, list) and node.items is not None and node.items.typed:
        for index, item in enumerate(value):
            value[index] = _convert(item, node.items, f"{path}.{index}", issues)
    return value


def _render(value: Any, node: _Node) -> Any:
    if node.kind is not None:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if isinstance(value, ObjectId):
            return str(value)
        return value
    if isinstance(value, dict) and node.properties:
        return {
            key: _render(item, node.properties[key]) if key in node.properties else item
            for key, item in value.items()
        }
    if isinstance(value, list) and node.items is not None:
        return [_render(item, node.items) for item in value]
    return value


def equals(field: str, value: Any) -> Document:
    """The filter ``field == value``. An ObjectId outside ``_id`` is matched
    with a one-element ``$in``, the same match in MongoDB, and the only one the
    embedded development store makes for such values."""
    if isinstance(value, ObjectId) and field != "_id":
        return {field: {"$in": [value]}}
    return {field: value}


def values_at(document: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """The values at a schema path in ``document``, each with its dotted
    location (``cc.1``, ``meta.reviewer``, ``subs.0.who``)."""

    def walk(value: Any, rest: tuple[str, ...], where: str) -> Iterator[tuple[str, Any]]:
        if not rest:
            yield where, value
            return
        head, tail = rest[0], rest[1:]
        if head == ITEMS:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    yield from walk(item, tail, f"{where}.{index}")
        elif isinstance(value, Mapping) and head in value:
            yield from walk(value[head], tail, f"{where}.{head}" if where else head)

    yield from walk(document, path, "")
