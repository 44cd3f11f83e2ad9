"""References between resources (``data_relation``): integrity on write, and
embedding on read (``?embedded={"author": 1}``).

Both cost one query per reference field, whatever the number of documents:
every value of the field on the page (or in the written documents) goes into
one ``$in`` query on the target's collection. Eve runs one query (and a count)
per document and field when embedding, and one per referenced value when
checking.

The target's own rules apply to what is found: its ``datasource.filter``, its
soft delete (a deleted document is not there), and, when embedding, the
caller's access to the target (an owner sees only their documents). A
reference that finds nothing embeds as ``null``, in place (a list keeps its
length).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..errors import BadRequest
from ..schemas import ITEMS
from ..storage import Storage
from .access import Access, conjoin
from .fields import Relation, values_at
from .model import Resource
from .visibility import EVERYTHING

Document = dict[str, Any]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return value is not None


def _key(value: Any) -> Any:
    # True == 1 in Python, not in MongoDB: keep the two apart.
    return (type(value).__name__, value) if isinstance(value, bool) else value


def reference_values(document: Mapping[str, Any], relation: Relation) -> list[tuple[str, Any]]:
    """(location, referenced value) of every reference a document holds."""
    return [
        (where, value) for where, value in values_at(document, relation.path) if _hashable(value)
    ]


class Relations:
    """The references of one resource's documents."""

    def __init__(self, resource: Resource, storage: Storage) -> None:
        self.resource = resource
        self.storage = storage

    def target(self, relation: Relation) -> Resource:
        return self.resource.catalog[relation.resource]

    def target_field(self, relation: Relation) -> str:
        return relation.field or self.target(relation).ids.field

    async def _found(
        self, relation: Relation, values: Iterable[Any], access: Access | None = None
    ) -> dict[Any, Document]:
        """The target documents the values name (one ``$in`` query), by value."""
        wanted = list(dict.fromkeys(values))
        if not wanted:
            return {}
        target, field = self.target(relation), self.target_field(relation)
        query = conjoin({field: {"$in": wanted}}, target.base_filter(include_deleted=False))
        if access is not None:
            query = access.restrict(query)
        projection = target.rules.projection
        if projection and 1 in projection.values():
            projection = {**projection, **dict.fromkeys(target.rules.meta_fields, 1), field: 1}
        found = await self.storage.find_all(
            target.collection, query, projection=dict(projection) if projection else None
        )
        # Embedded, each shows what the caller may read of it.
        fields = access.fields if access is not None else EVERYTHING
        return {_key(document.get(field)): fields.apply(document) for document in found}

    # -- integrity on write ------------------------------------------------

    async def missing(
        self,
        documents: list[Document],
        before: Document | None = None,
        references: Mapping[str, Access] | None = None,
    ) -> list[dict[str, str]]:
        """Per document, the references that name no document of the target
        (only the ones not already held by ``before``, the stored document).

        Eve's message: ``value '…' must exist in resource 'people', field '_id'.``
        """
        issues: list[dict[str, str]] = [{} for _ in documents]
        for relation in self.resource.fields.relations.values():
            held = (
                {_key(value) for _, value in reference_values(before, relation)}
                if before is not None
                else set()
            )
            checks = [
                (index, where, value)
                for index, document in enumerate(documents)
                for where, value in reference_values(document, relation)
                if _key(value) not in held
            ]
            if not checks:
                continue
            # A target with rules: only what the caller may read of it is there.
            reach = (references or {}).get(relation.resource)
            found = await self._found(relation, [value for _, _, value in checks], reach)
            for index, where, value in checks:
                if _key(value) not in found:
                    issues[index].setdefault(
                        where,
                        f"value '{value}' must exist in resource '{relation.resource}', "
                        f"field '{self.target_field(relation)}'.",
                    )
        return issues

    # -- embedding on read -------------------------------------------------

    def requested(self, text: str | None) -> tuple[list[Relation], list[Relation]]:
        """The relations to embed: (asked for by ``?embedded=``, embedded by
        default through ``embedded_fields``, less those the client opted out of)."""
        settings = self.resource.settings
        relations = self.resource.fields.relations
        defaults = {name.removesuffix(f".{ITEMS}") for name in settings.embedded_fields}
        asked: dict[str, bool] = {}
        if text is not None:
            if not settings.embedding:
                raise BadRequest(f"embedding is off on {self.resource.name}; send no embedded")
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise BadRequest('embedded must be a JSON object like {"author": 1}')
            for name, flag in parsed.items():
                if flag not in (0, 1):
                    raise BadRequest(f"embedded values are 1 or 0, got {flag!r} for {name!r}")
                relation = relations.get(name)
                if relation is None or not relation.embeddable:
                    embeddable = sorted(n for n, r in relations.items() if r.embeddable)
                    raise BadRequest(
                        f"{name!r} cannot be embedded; embeddable fields: "
                        f"{', '.join(embeddable) or 'none'}"
                    )
                asked[name] = bool(flag)
        explicit = [relations[name] for name, on in asked.items() if on]
        default = [relations[n] for n in sorted(defaults) if asked.get(n, True) and n not in asked]
        return explicit, default

    async def embed(self, documents: list[Document], embeds: Mapping[Relation, Access]) -> None:
        """Replace each embedded reference with the document it names, in place
        (one query per relation for all the documents)."""
        for relation, access in embeds.items():
            values = [
                value for document in documents for _, value in reference_values(document, relation)
            ]
            if not values:
                continue
            found = await self._found(relation, values, access)
            for document in documents:
                _replace_at(document, relation.path, found)


def _replace_at(value: Any, path: tuple[str, ...], found: Mapping[Any, Document]) -> Any:
    if not path:
        return found.get(_key(value)) if _hashable(value) else value
    head, rest = path[0], path[1:]
    if head == ITEMS:
        if isinstance(value, list):
            return [_replace_at(item, rest, found) for item in value]
        return value
    if isinstance(value, dict) and head in value:
        value[head] = _replace_at(value[head], rest, found)
    return value
