"""Aggregation endpoints (``datasource.aggregation``): ``GET /<resource>`` runs
a configured pipeline and answers with a page of its results, in the list
envelope (``_items``, ``_meta``, ``_links``).

What a client may change, and what it may not:

- ``?aggregate={"$author": "ann"}`` fills in the pipeline's **declared**
  variables (``aggregation.variables``, each with a JSON Schema its value must
  satisfy). A value is data, never an operator or a field: an object with
  ``$`` keys is refused, a value read as an expression goes in as
  ``$literal`` (so ``"$$ROOT"`` is a string, not the document), and only whole
  strings equal to a declared name are replaced, so a client cannot rewrite
  the server's own literals as Eve allows. A variable left out takes its
  schema's ``default``, or with none stays as written, as in Eve (``{"role":
  "$kind"}`` then matches no document); one sent as ``{}`` removes the
  condition that holds it, as Eve's ``{}`` does.
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
from typing import Any

import jsonschema_rs
import orjson

from ..errors import BadRequest, Forbidden
from ..pipelines import JOINING_STAGES, Part, join_target, pipeline_strings, stage_parts
from ..schemas import compile_schema
from ..storage import Storage
from .access import Access
from .fields import FORMATS, to_native
from .hooks import Hooks
from .model import Resource
from .query import ListQuery

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
                # No default: the name stays as written, as Eve leaves it.
                if "default" in schema:
                    values[name] = copy.deepcopy(schema["default"])
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
        joined: Mapping[str, Access],
    ) -> list[Document]:
        """The configured stages, filled in and restricted (without the page)."""
        stages: list[Document] = []
        scope = self.resource.base_filter(include_deleted=True)
        first = access.restrict(scope) if scope else dict(access.filter)
        if first:
            stages.append({"$match": first})
        for source in ruled_source(self.resource):
            # Its collection is a resource's with rules: the caller's role there
            # decides which documents and fields the pipeline starts from.
            reach = joined[source]
            if reach.filter:
                stages.append({"$match": dict(reach.filter)})
            stages.extend(reach.fields.stages())
        for stage in _substitute(self.settings.pipeline, query.variables):
            filled = _prune(stage)
            if filled is not PRUNED:
                stages.append(_restrict_joins(filled, joined))
        return stages

    async def run(
        self, query: AggregationQuery, access: Access, joined: Mapping[str, Access]
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


def ruled_source(resource: Resource) -> list[str]:
    """The aggregation's own collection, when a resource with rules serves it
    (then the caller's role there restricts what the pipeline starts from)."""
    collection = resource.collection
    ruled = any(
        other.collection == collection
        and other.settings.aggregation is None
        and other.settings.rules is not None
        for other in resource.catalog.values()
    )
    return [collection] if ruled else []


def _has_operator(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(key).startswith("$") or _has_operator(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_operator(item) for item in value)
    return False


def _substitute(pipeline: list[Any], values: Mapping[str, Any]) -> list[Any]:
    """The pipeline with its declared variables filled in: whole-string values
    equal to a variable's name (never keys) become the client's value, always
    as data. In a query a string is a value already; in an expression a
    value holding a string that starts with ``$`` goes in as ``{"$literal":
    value}``, so that ``"$salary"`` or ``"$$ROOT"`` stays a string instead of
    reading a field (any other value is a literal there as it is); in a
    stage's own settings such a string is refused (400)."""
    filled: list[Any] = _fill(pipeline, Part.PIPELINE, values)
    return filled


def _fill(node: Any, context: Part, values: Mapping[str, Any]) -> Any:
    if isinstance(node, str):
        if node not in values:
            return node
        value = copy.deepcopy(values[node])
        if value is PRUNED or context == Part.QUERY:
            return value
        dollar = any(text.startswith("$") for text in pipeline_strings(value))
        if context == Part.SETTING and dollar:
            raise BadRequest(
                f"aggregate: {node} sets a part of a stage here; it cannot start with $"
            )
        # Only a string starting with $ reads anything in an expression.
        return {"$literal": value} if dollar and context != Part.SETTING else value
    if isinstance(node, list):
        inner = Part.STAGE if context == Part.PIPELINE else context
        return [_fill(item, inner, values) for item in node]
    if not isinstance(node, dict):
        return node
    if context == Part.STAGE:
        filled: Document = {}
        for name, spec in node.items():
            parts = stage_parts(name)
            if isinstance(spec, dict) and set(parts) != {"*"}:
                filled[name] = {
                    part: _fill(value, parts.get(part, parts["*"]), values)
                    for part, value in spec.items()
                }
            else:
                filled[name] = _fill(spec, parts["*"], values)
        return filled
    if context == Part.PIPELINES:
        return {name: _fill(branch, Part.PIPELINE, values) for name, branch in node.items()}
    if context == Part.EXPRESSIONS:
        return {name: _fill(value, Part.EXPRESSION, values) for name, value in node.items()}
    if context == Part.QUERY:
        return {
            key: _fill(value, Part.EXPRESSION if key == "$expr" else Part.QUERY, values)
            for key, value in node.items()
        }
    return {key: _fill(value, context, values) for key, value in node.items()}


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


def _restrict_joins(node: Any, joined: Mapping[str, Access]) -> Any:
    """Limit every join to what the caller may read of the joined collection:
    its documents (a ``$match`` first) and their fields (the stages of its
    ``FieldMask`` next)."""
    if isinstance(node, list):
        return [_restrict_joins(item, joined) for item in node]
    if not isinstance(node, dict):
        return node
    restricted = {key: _restrict_joins(value, joined) for key, value in node.items()}
    for stage in JOINING_STAGES:
        spec: Any = restricted.get(stage)
        name = join_target(stage, spec)
        access = joined.get(name) if name is not None else None
        if access is None:
            continue
        scope = dict(access.filter)
        masking = access.fields.stages()
        if stage == "$graphLookup":
            if masking:
                # Its results come straight from the collection: nothing can
                # drop the fields the caller may not read on the way.
                raise Forbidden(
                    f"this aggregation's $graphLookup reads {name}, whose documents have "
                    "fields the caller may not read"
                )
            if scope:
                current = spec.get("restrictSearchWithMatch")
                spec["restrictSearchWithMatch"] = {"$and": [current, scope]} if current else scope
            continue
        inner = [{"$match": scope}] if scope else []
        inner += masking
        if not inner:
            continue
        if stage == "$unionWith" and isinstance(spec, str):
            restricted[stage] = {"coll": spec, "pipeline": inner}
        else:
            spec["pipeline"] = [*inner, *spec.get("pipeline", [])]
    return restricted
