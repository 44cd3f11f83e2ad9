"""MongoDB's aggregation pipeline, as Shoal reads it: which stages write,
which operators run JavaScript, which stages join another collection, and how
MongoDB reads each part of a stage.

One vocabulary for every place that looks into a pipeline: the config's
validation of a configured pipeline (``shoal.config.resources``), the Data
API's refusals of a client's pipeline (``shoal.dataapi.refusals``), and an
aggregation endpoint filling in its variables and restricting its joins
(``shoal.resources.aggregation``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

#: Stages that write to a collection: never in a pipeline Shoal runs.
WRITING_STAGES = frozenset({"$out", "$merge"})
#: Operators that run JavaScript on the server: never in a pipeline or filter.
JAVASCRIPT_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
#: Stages that read another collection, and the key that names it.
JOINING_STAGES = {"$lookup": "from", "$graphLookup": "from", "$unionWith": "coll"}
#: Operators a filter (``?where=``, a datasource's ``filter``) may not hold:
#: JavaScript, and ``$expr``, which computes over any field of the document.
FILTER_REFUSED_OPERATORS = JAVASCRIPT_OPERATORS | {"$expr"}


class Part(Enum):
    """How MongoDB reads a part of a pipeline."""

    #: A query, as in ``$match``: a string is a value.
    QUERY = "query"
    #: An expression: a string starting with ``$`` is a field path or a variable.
    EXPRESSION = "expression"
    #: A pipeline (a list of stages).
    PIPELINE = "pipeline"
    #: One stage of a pipeline.
    STAGE = "stage"
    #: Named pipelines (``$facet``'s branches).
    PIPELINES = "pipelines"
    #: Named expressions (``$lookup``'s ``let``).
    EXPRESSIONS = "expressions"
    #: A stage's own settings: names and numbers (``$limit``, ``$sort``, a join's ``from``).
    SETTING = "setting"


#: The stages whose parts are not all expressions, part by part ("*": the
#: whole stage, or any part not named). Stages not listed are expressions.
STAGE_PARTS: dict[str, dict[str, Part]] = {
    "$match": {"*": Part.QUERY},
    "$facet": {"*": Part.PIPELINES},
    "$lookup": {"let": Part.EXPRESSIONS, "pipeline": Part.PIPELINE, "*": Part.SETTING},
    "$graphLookup": {
        "startWith": Part.EXPRESSION,
        "restrictSearchWithMatch": Part.QUERY,
        "*": Part.SETTING,
    },
    "$unionWith": {"pipeline": Part.PIPELINE, "*": Part.SETTING},
    "$bucket": {"groupBy": Part.EXPRESSION, "output": Part.EXPRESSION, "*": Part.SETTING},
    "$bucketAuto": {"groupBy": Part.EXPRESSION, "output": Part.EXPRESSION, "*": Part.SETTING},
    "$limit": {"*": Part.SETTING},
    "$skip": {"*": Part.SETTING},
    "$sample": {"*": Part.SETTING},
    "$count": {"*": Part.SETTING},
    "$sort": {"*": Part.SETTING},
    "$unwind": {"*": Part.SETTING},
    "$unset": {"*": Part.SETTING},
}
_EXPRESSION_STAGE = {"*": Part.EXPRESSION}


def stage_parts(stage: str) -> dict[str, Part]:
    """How MongoDB reads the parts of ``stage`` (``"*"``: any part not named)."""
    return STAGE_PARTS.get(stage, _EXPRESSION_STAGE)


def join_target(stage: str, spec: Any) -> str | None:
    """The collection a joining stage reads (``$unionWith`` may name it alone),
    or None when ``stage`` joins nothing or names no collection."""
    key = JOINING_STAGES.get(stage)
    if key is None:
        return None
    target = spec if stage == "$unionWith" and isinstance(spec, str) else None
    if isinstance(spec, Mapping):
        target = spec.get(key)
    return target if isinstance(target, str) else None


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair inside a pipeline or filter, at any depth."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def joined_collections(pipeline: list[dict[str, Any]]) -> list[str]:
    """The collections a pipeline reads besides its own (``$lookup``,
    ``$graphLookup``, ``$unionWith``, at any depth)."""
    names = (join_target(key, value) for key, value in walk(pipeline))
    return [name for name in names if name is not None]


def pipeline_strings(node: Any) -> Iterator[str]:
    """Every string value in a pipeline (keys excluded), at any depth."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from pipeline_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from pipeline_strings(item)
