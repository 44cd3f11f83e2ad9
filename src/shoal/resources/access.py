"""What a caller may reach of a resource: auth decides it, the service applies it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .visibility import EVERYTHING, FieldMask, matches

Document = dict[str, Any]


def conjoin(*filters: Mapping[str, Any]) -> Document:
    """A filter that every one of ``filters`` holds for. Their fields side by
    side when no top-level key is in two of them (MongoDB reads a filter's
    top-level fields as one implicit ``$and``, and an engine with a simpler
    planner still finds an ``_id`` among them by its index), else ``$and``."""
    parts = [dict(part) for part in filters if part]
    if len(parts) <= 1:
        return parts[0] if parts else {}
    merged: Document = {}
    for part in parts:
        if merged.keys() & part.keys():
            return {"$and": parts}
        merged.update(part)
    return merged


@dataclass(frozen=True)
class Access:
    """Which documents a caller may see, which of their fields, and what a
    caller's inserts carry.

    ``filter`` is added to every lookup (owner restriction, a sub-resource's
    parent, a hook's lookup); ``owner`` is the (field, value) pair set on every
    document the caller creates; ``fixed`` are the values every document the
    caller writes must hold (a sub-resource's parent from the URL); ``fields``
    is what the caller may read of each document (``visibility.py``).

    With ``rules`` (``rule`` names the role that applied), ``filter`` holds the
    role's document filters too, ``writes`` is what the caller may write, and
    ``insert_filter`` the write filter a new document must be inside (422).
    """

    filter: Mapping[str, Any] = field(default_factory=dict)
    owner: tuple[str, Any] | None = None
    #: Callers with the same cache_key see the same documents (the response
    #: cache keys on it): "public", "all", or "owner:<id>".
    cache_key: str = "all"
    fixed: Mapping[str, Any] = field(default_factory=dict)
    fields: FieldMask = EVERYTHING
    writes: FieldMask = EVERYTHING
    insert_filter: Mapping[str, Any] | None = None
    #: False: the role may not insert (an upsert of the Data API asks).
    inserts: bool = True
    #: On writes: the caller's read access to each resource with rules that a
    #: ``data_relation`` names; a reference to a document outside it is refused
    #: as one to no document (its existence is not told).
    references: Mapping[str, Access] = field(default_factory=dict)
    rule: str | None = None
    #: False: the answer depends on the time (``%%now``); never cached.
    cacheable: bool = True

    @property
    def ruled(self) -> bool:
        """Whether the resource's ``rules`` decided this access."""
        return self.rule is not None

    def reads_version(self, version: Document) -> bool:
        """Whether an old version of a document the caller may read is inside
        its role's read filter (always, without rules)."""
        return not self.ruled or matches(self.filter, version)

    def version_view(self) -> Callable[[Document], Document]:
        """What the caller sees of an old version: what it may read of it;
        with rules, of a version outside the role's read filter only its meta
        fields (that it exists, its number and date; never its content). A
        mask per document (``%%root``) shows each version as its strictest:
        an old version, a diff above all, is not the document whole."""
        if not self.ruled:
            return self.fields.apply
        fields = self.fields.strictest()
        nothing = replace(fields, hidden=frozenset(), only=frozenset())

        def shown(version: Document) -> Document:
            if self.reads_version(version):
                return fields.apply(version)
            return nothing.apply(version)

        return shown

    def restrict(self, query: Mapping[str, Any]) -> Document:
        return conjoin(query, self.filter)

    def narrowed(
        self, filter: Mapping[str, Any], *, fixed: Mapping[str, Any] | None = None
    ) -> Access:
        """This access, limited further by ``filter`` (and with ``fixed``)."""
        combined = self.restrict(filter) if filter else dict(self.filter)
        return replace(self, filter=combined, fixed={**self.fixed, **(fixed or {})})


UNRESTRICTED = Access()
