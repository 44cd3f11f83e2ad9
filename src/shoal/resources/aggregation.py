"""Aggregation endpoints (``datasource.aggregation``): ``GET /<resource>`` runs
a configured pipeline and answers with a page of its results, in the list
envelope (``_items``, ``_meta``, ``_links``).

What a client may change, and what it may not:

- ``?aggregate={"$author": "ann"}`` fills in the pipeline's **declared**
  variables (``aggregation.variables``, each with a JSON Schema its value must
  satisfy). A value is data, never an operator: an object with ``$`` keys is
  refused, and only whole strings equal to a declared name are replaced, so a
  client cannot rewrite the server's own literals as Eve allows. A variable
  left out takes its schema's ``default``; one sent as ``{}`` (or left out
  with no default) removes the condition that holds it, as Eve's ``{}`` does.
- The caller's owner filter (``auth_field``), the ``datasource.filter`` and a
  hook's lookup come first, as one ``$match``, before any configured stage.
- ``$lookup``, ``$graphLookup`` and ``$unionWith`` only reach collections of
  resources the caller may read, restricted as the caller's reads of them are.
- Pages come from a final ``$facet`` (the page and the total in one round
  trip); ``?count=false`` drops the total. MongoDB stops the pipeline after
  ``options.maxTimeMS`` (10 s by default): 503.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import orjson

from ..config import JOINING_STAGES
from ..errors import BadRequest
from ..schemas import compile_schema
from ..storage import Storage
from .access import Access
from .fields import FORMATS, to_native
from .hooks import Hooks
from .query import ListQuery

if TYPE_CHECKING:  # the service module imports this one
    from .service import Resource

Document = dict[str, Any]

#: Parameters of a list that an aggregation does not take.
_NOT_TAKEN = ("where", "sort", "projection", "embedded", "version", "show_deleted")


class _Pruned:
    """What a variable sent as ``{}`` leaves: the condition that holds it goes."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Pruned:
        return self  # one marker, compared by identity


PRUNED = _Pruned()


@dataclass(frozen=True)
class AggregationQuery:
    variables: dict[str, Any]
    page: ListQuery


class Aggregation:
    """The aggregation of one resource."""

    def __init__(self, resource: Resource, storage: Storage, hooks: Hooks) -> None:
        settings = resource.settings.aggregation
        assert settings is not None
        self.resource = resource
        self.settings = settings
        self.storage = storage
        self.hooks = hooks
        self._validators: dict[str, jsonschema_rs.Draft202012Validator] = {
            name: compile_schema(dict(schema)) for name, schema in settings.variables.items()
        }
        options = settings.options.model_dump(exclude_none=True)
        if not options.get("allowDiskUse"):
            options.pop("allowDiskUse", None)
        self.options = options

    # -- the request -------------------------------------------------------

    def parse(self, args: Mapping[str, str], page: ListQuery) -> AggregationQuery:
        for name in _NOT_TAKEN:
            if name in args:
                raise BadRequest(
                    f"{name} is not taken by an aggregation endpoint; it takes aggregate, "
                    "page, max_results and count"
                )
        return AggregationQuery(self._variables(args.get("aggregate")), page)

    def _variables(self, text: str | None) -> dict[str, Any]:
        sent: Any = {}
        if text:
            try:
                sent = orjson.loads(text)
            except orjson.JSONDecodeError as error:
                raise BadRequest(f"aggregate is not valid JSON: {error}") from None
            if not isinstance(sent, dict):
                raise BadRequest('aggregate must be a JSON object like {"$author": "ann"}')
        declared = self.settings.variables
        unknown = sorted(set(sent) - set(declared))
        if unknown:
            takes = ", ".join(sorted(declared)) or "no variables"
            raise BadRequest(
                f"aggregate: unknown variable {unknown[0]}; this endpoint takes {takes}"
            )
        values: dict[str, Any] = {}
        for name, schema in declared.items():
            if name not in sent:
                values[name] = copy.deepcopy(schema["default"]) if "default" in schema else PRUNED
                continue
            value = sent[name]
            if value == {}:
                values[name] = PRUNED
                continue
            if _has_operator(value):
                raise BadRequest(f"aggregate: {name} is a value; it cannot hold operators ($...)")
            if not self._validators[name].is_valid(value):
                problem = next(iter(self._validators[name].iter_errors(value)))
                raise BadRequest(f"aggregate: {name}: {problem.message}")
            kind = FORMATS.get(schema.get("format", ""))
            values[name] = to_native(kind, value) if kind is not None else value
        return values

    # -- the pipeline --------------------------------------------------------

    def pipeline(
        self,
        query: AggregationQuery,
        access: Access,
        joined: Mapping[str, Document],
    ) -> list[Document]:
        """The configured stages, filled in and restricted (without the page)."""
        stages: list[Document] = []
        scope = self.resource.base_filter(include_deleted=True)
        first = access.restrict(scope) if scope else dict(access.filter)
        if first:
            stages.append({"$match": first})
        for stage in self.settings.pipeline:
            filled = _prune(_substitute(copy.deepcopy(stage), query.variables))
            if filled is not PRUNED:
                stages.append(_restrict_joins(filled, joined))
        return stages

    async def run(
        self, query: AggregationQuery, access: Access, joined: Mapping[str, Document]
    ) -> tuple[list[Document], int | None, bool]:
        """(the page's documents, the total or None, whether a next page exists)."""
        stages = self.pipeline(query, access, joined)
        await self.hooks.fire("before_aggregation", self.resource.name, stages)
        page = query.page
        total: int | None = None
        if not page.paginated:
            items = await self.storage.run_aggregation(
                self.resource.collection, stages, self.options
            )
            total = len(items)
            has_next = False
        elif page.count != "none":
            facet = {
                "$facet": {
                    "items": [{"$skip": page.skip}, {"$limit": page.max_results}],
                    "total": [{"$count": "count"}],
                }
            }
            result = await self.storage.run_aggregation(
                self.resource.collection, [*stages, facet], self.options
            )
            # One document: the page and the count (read by name; nothing else).
            head = result[0] if result else {}
            items = list(head.get("items") or [])
            counted = head.get("total") or []
            total = int(counted[0]["count"]) if counted else 0
            has_next = page.skip + len(items) < total
        else:
            window = [{"$skip": page.skip}, {"$limit": page.max_results + 1}]
            items = await self.storage.run_aggregation(
                self.resource.collection, [*stages, *window], self.options
            )
            has_next = len(items) > page.max_results
            items = items[: page.max_results]
        await self.hooks.fire("after_aggregation", self.resource.name, items)
        return items, total, has_next


def _has_operator(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(key).startswith("$") or _has_operator(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_operator(item) for item in value)
    return False


def _substitute(node: Any, values: Mapping[str, Any]) -> Any:
    """Replace whole-string values equal to a declared variable (never keys)."""
    if isinstance(node, str):
        return copy.deepcopy(values[node]) if node in values else node
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    return node


def _prune(node: Any) -> Any:
    """Drop what holds a pruned variable; a container left empty by that goes too."""
    if isinstance(node, dict):
        kept = {}
        for key, value in node.items():
            pruned = _prune(value)
            if pruned is not PRUNED:
                kept[key] = pruned
        return PRUNED if node and not kept else kept
    if isinstance(node, list):
        items = [pruned for pruned in (_prune(item) for item in node) if pruned is not PRUNED]
        return PRUNED if node and not items else items
    return node


def _restrict_joins(node: Any, joined: Mapping[str, Document]) -> Any:
    """Limit every join to what the caller may read of the joined collection."""
    if isinstance(node, list):
        return [_restrict_joins(item, joined) for item in node]
    if not isinstance(node, dict):
        return node
    restricted = {key: _restrict_joins(value, joined) for key, value in node.items()}
    for stage, key in JOINING_STAGES.items():
        spec = restricted.get(stage)
        if spec is None:
            continue
        name = spec if isinstance(spec, str) else spec.get(key)
        scope = joined.get(name) if isinstance(name, str) else None
        if not scope:
            continue
        match = {"$match": scope}
        if stage == "$unionWith" and isinstance(spec, str):
            restricted[stage] = {"coll": spec, "pipeline": [match]}
        elif stage == "$graphLookup":
            current = spec.get("restrictSearchWithMatch")
            spec["restrictSearchWithMatch"] = {"$and": [current, scope]} if current else scope
        else:
            spec["pipeline"] = [match, *spec.get("pipeline", [])]
    return restricted
