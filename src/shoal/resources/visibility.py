"""Which fields of a document a caller may read: the one place that decides it.

A ``FieldMask`` comes from a resource's ``datasource.projection`` (the same for
every caller); it travels in the caller's ``Access``, and every path that shows
documents or lets a query look at them asks it:

- documents leave through ``apply`` (items, lists, versions, stream events,
  the Data API's answers, embedded documents, a write's representation);
- ``where``, ``sort``, a Data API filter, sort or update, and anything else
  that would let a caller test a field's value (an oracle: "which documents
  have ``salary > 100000``?") go through ``check_names`` first, which refuses
  (400) a field the caller may not read;
- an aggregation on the collection gets ``stages()`` right after the caller's
  ``$match``, so no later stage can reach the hidden fields.

Meta fields (``_id``, ``_etag``, ...) are never hidden.

A resource with ``rules`` (App Services' shape, ``config/rules.py``) gives each
caller a role (``roles.py``), whose field permissions make the caller's mask.
With ``%%root`` conditions the mask depends on the document
(``roles.DocumentMask``): ``governing`` is the mask of one stored document,
``strictest`` the mask for a document that may not be whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mongoquery import Query

from ..errors import BadRequest, Forbidden
from .documents import document_etag

Document = dict[str, Any]


@dataclass(frozen=True)
class FieldMask:
    """The fields a caller may not read: those ``hidden``, or, when ``only``
    is set, every field outside it (dotted paths, nested documents and arrays
    of them included). Meta fields (``meta``) are always readable."""

    hidden: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    meta: frozenset[str] = frozenset()
    #: With rules: the resource's ETag key; a document shown without some of
    #: its fields gets an ``_etag`` made of what is shown (never the stored one,
    #: which changes with the hidden fields, nor one two views share).
    retag: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_projection(
        cls, projection: Mapping[str, int] | None, meta: Iterable[str] = ()
    ) -> FieldMask:
        """The mask of a MongoDB projection: ``{a: 0}`` hides ``a``; ``{a: 1}``
        shows only ``a``."""
        if not projection:
            return cls(meta=frozenset(meta))
        names = frozenset(name for name in projection if name not in meta)
        if any(flag == 1 for flag in projection.values()):
            return cls(only=names, meta=frozenset(meta))
        return cls(hidden=names, meta=frozenset(meta))

    @property
    def per_document(self) -> bool:
        """Whether what is hidden depends on the document (``roles.DocumentMask``)."""
        return False

    def governing(self, document: Document) -> FieldMask:
        """The mask of ``document``, a stored document whole: this one."""
        return self

    def strictest(self) -> FieldMask:
        """The mask for a document that may not be whole (projected, made by
        an aggregation, an old version's diff): this one."""
        return self

    def for_projection(self, projection: Mapping[str, Any] | None) -> FieldMask:
        """The mask for documents fetched with ``projection``: this one, or
        ``strictest`` when the projection leaves out what ``governing`` needs."""
        return self

    @property
    def hides(self) -> bool:
        """Whether any field is kept from the caller."""
        return bool(self.hidden) or self.only is not None

    def readable(self, path: str) -> bool:
        """Whether the caller may read all of ``path`` (a dotted field name):
        neither it, nor a document it is inside, nor a part of it is hidden."""
        top = path.split(".", 1)[0]
        if top in self.meta or path in self.meta:
            return True
        if any(_overlaps(path, name) for name in self.hidden):
            return False
        if self.only is None:
            return True
        return any(path == name or path.startswith(name + ".") for name in self.only)

    def check_names(self, names: Iterable[str], parameter: str) -> None:
        """400 when ``parameter`` names a field the caller may not read (which
        it could otherwise test values of without seeing them)."""
        if not self.hides:
            return
        for name in names:
            if not self.readable(name):
                raise BadRequest(f"{parameter} cannot use the field {name!r}: it is not readable")

    def check_filter(self, filter: Any, parameter: str) -> None:
        """``check_names`` for every field a MongoDB filter names; ``$text``,
        ``$expr``, ``$jsonSchema`` and JavaScript (which reach fields the
        filter does not name as keys) only when nothing is hidden."""
        if not self.hides:
            return
        reaching = _reaching(filter)
        if reaching is not None:
            raise BadRequest(
                f"{parameter} cannot use {reaching} here: it would reach fields "
                "that are not readable"
            )
        self.check_names(filter_fields(filter), parameter)

    def apply(self, document: Document) -> Document:
        """``document`` without what the caller may not read (copied where it
        changes; the original is left as it is)."""
        if not self.hides:
            return document
        shown: Any = document
        for path in self.hidden:
            shown = _without(shown, path.split("."))
        if self.only is not None:
            kept: Document = {key: value for key, value in shown.items() if key in self.meta}
            for path in self.only:
                _copy(shown, kept, path.split("."))
            shown = kept
        result: Document = dict(shown)
        if self.retag is not None and "_etag" in result:
            result["_etag"] = document_etag(result, self.retag)
        return result

    def check_writable(self, names: Iterable[str]) -> None:
        """403 naming the first of ``names`` the caller may not write (this
        mask being what the caller may write)."""
        for name in sorted(set(names)):
            if not self.readable(name):
                raise Forbidden(f"your role may not write the field {name!r}")

    def apply_within(self, document: Document) -> Document:
        """``apply``, and the hidden fields (``hidden``, by their paths) taken
        out of every document nested anywhere inside too: for what an
        aggregation made, where a copy of a whole document (``$$ROOT``) may sit
        under any name."""
        shown = self.apply(document)
        if not self.hidden:
            return shown
        return {key: self._within(value) for key, value in shown.items()}

    def _within(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._within(item) for item in value]
        if isinstance(value, dict):
            for path in self.hidden:
                value = _without(value, path.split("."))
            return {key: self._within(item) for key, item in value.items()}
        return value

    def stages(self) -> list[Document]:
        """Aggregation stages that drop what the caller may not read (none when
        nothing is hidden)."""
        stages: list[Document] = []
        if self.only is not None:
            stages.append({"$project": dict.fromkeys(sorted({*self.meta, *self.only}), 1)})
        if self.hidden:
            stages.append({"$project": dict.fromkeys(sorted(self.hidden), 0)})
        return stages

    def union(self, other: FieldMask) -> FieldMask:
        """What neither mask lets a caller read."""
        if other.per_document:
            return other.union(self)
        if not other.hides:
            return self
        if not self.hides:
            return other
        if self.only is None:
            only = other.only
        elif other.only is None:
            only = self.only
        else:
            only = self.only & other.only
        retag = self.retag or other.retag
        return FieldMask(self.hidden | other.hidden, only, self.meta | other.meta, retag)


#: The mask that hides nothing.
EVERYTHING = FieldMask()


def _overlaps(path: str, hidden: str) -> bool:
    """Whether ``path`` is ``hidden``, inside it, or holds it."""
    return path == hidden or path.startswith(hidden + ".") or hidden.startswith(path + ".")


def _without(node: Any, parts: list[str]) -> Any:
    """A copy of ``node`` without the value at ``parts`` (in each element of
    an array of documents), copied only along the path."""
    if isinstance(node, list):
        return [_without(item, parts) for item in node]
    if not isinstance(node, dict) or parts[0] not in node:
        return node
    copied = dict(node)
    if len(parts) == 1:
        del copied[parts[0]]
    else:
        copied[parts[0]] = _without(node[parts[0]], parts[1:])
    return copied


def _copy(source: Any, target: Document, parts: list[str]) -> None:
    """Copy the value at ``parts`` of ``source`` into ``target`` (arrays of
    documents keep each element's part)."""
    head = parts[0]
    if not isinstance(source, dict) or head not in source:
        return
    value = source[head]
    if len(parts) == 1:
        target[head] = value
        return
    if isinstance(value, dict):
        child = target.setdefault(head, {})
        if isinstance(child, dict):
            _copy(value, child, parts[1:])
    elif isinstance(value, list):
        existing = target.get(head)
        items: list[Any] = existing if isinstance(existing, list) else [{} for _ in value]
        for index, item in enumerate(value):
            if isinstance(item, dict) and isinstance(items[index], dict):
                _copy(item, items[index], parts[1:])
        target[head] = items


def filter_fields(filter: Any, prefix: str = "") -> Iterator[str]:
    """Every field a MongoDB query filter names (inside ``$elemMatch``, the
    names are relative to its array's field)."""
    if isinstance(filter, list):
        for item in filter:
            yield from filter_fields(item, prefix)
        return
    if not isinstance(filter, Mapping):
        return
    for key, value in filter.items():
        if not isinstance(key, str):
            continue
        if key.startswith("$"):
            if key in ("$and", "$or", "$nor", "$not"):
                yield from filter_fields(value, prefix)
            continue
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, Mapping):
            for operator, operand in value.items():
                if operator == "$elemMatch":
                    yield from filter_fields(operand, name + ".")
                elif operator == "$not":
                    yield from filter_fields({key: operand}, prefix)


#: Query operators that reach fields other than the keys they sit under.
_REACHING = ("$text", "$expr", "$jsonSchema", "$where", "$function", "$accumulator")


def _reaching(filter: Any) -> str | None:
    """The first operator of ``_REACHING`` that ``filter`` uses, if any."""
    if isinstance(filter, list):
        for item in filter:
            found = _reaching(item)
            if found is not None:
                return found
    elif isinstance(filter, Mapping):
        for key, value in filter.items():
            if key in _REACHING:
                return str(key)
            found = _reaching(value)
            if found is not None:
                return found
    return None


def matches(filter: Mapping[str, Any], document: Document) -> bool:
    """Whether ``document`` (a new one, before it is stored) is inside a
    role's document filter."""
    if not filter:
        return True
    try:
        return bool(Query(dict(filter)).match(document))
    except Exception:  # an operator mongoquery cannot match: outside
        return False
