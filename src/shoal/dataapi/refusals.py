"""What the Data API refuses in filters, updates and pipelines, as the hosted
service did: server-side JavaScript (``$where``, ``$function``,
``$accumulator``), stages that write elsewhere (``$out``, ``$merge``), and joins
(``$lookup``, ``$graphLookup``, ``$unionWith``) into collections the caller may
not read. Every refusal is a 400 naming the operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import BadRequest
from ..pipelines import JAVASCRIPT_OPERATORS, JOINING_STAGES, WRITING_STAGES, join_target

#: Deeper documents are refused rather than walked (and never reach MongoDB).
MAX_DEPTH = 100

#: Says why a pipeline may not read ``collection``, or None when it may.
JoinCheck = Callable[[str], str | None]


def _refused(message: str) -> BadRequest:
    return BadRequest(message, code="InvalidParameter")


def check_expression(value: Any, where: str, depth: int = 0) -> None:
    """Refuse the operators that run JavaScript anywhere in ``value``."""
    if depth > MAX_DEPTH:
        raise _refused(f"{where} is nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(value, dict):
        for key, item in value.items():
            if key in JAVASCRIPT_OPERATORS:
                raise _refused(
                    f"{key} is not allowed (in {where}): the Data API runs no JavaScript"
                )
            check_expression(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_expression(item, where, depth + 1)


def check_pipeline(pipeline: list[Any], may_join: JoinCheck, depth: int = 0) -> None:
    """Refuse what a pipeline may not do; ``may_join`` decides each join."""
    if depth > MAX_DEPTH:
        raise _refused(f"pipeline is nested too deeply (more than {MAX_DEPTH} levels)")
    for index, stage in enumerate(pipeline):
        if not isinstance(stage, dict) or len(stage) != 1:
            raise _refused(
                f"pipeline[{index}] must be an object with exactly one stage, "
                'e.g. {"$match": {...}}'
            )
        ((name, spec),) = stage.items()
        if name in WRITING_STAGES:
            raise _refused(f"{name} is not allowed: the Data API writes only through its actions")
        if name in JOINING_STAGES:
            _check_join(name, spec, may_join, depth)
        elif name == "$facet":
            if not isinstance(spec, dict):
                raise _refused("$facet takes an object of named pipelines")
            for branch in spec.values():
                if not isinstance(branch, list):
                    raise _refused("each $facet branch is a pipeline (an array of stages)")
                check_pipeline(branch, may_join, depth + 1)
            continue
        check_expression(spec, f"pipeline[{index}]", depth + 1)


def _check_join(name: str, spec: Any, may_join: JoinCheck, depth: int) -> None:
    key = JOINING_STAGES[name]
    target = join_target(name, spec)
    if name == "$unionWith" and isinstance(spec, str):
        spec = {"coll": spec}
    if not isinstance(spec, dict):
        raise _refused(f"{name} takes an object")
    if not target:
        raise _refused(f"{name} needs {key}: the name of a collection of the same database")
    reason = may_join(target)
    if reason is not None:
        raise _refused(f"{name} into {target} is not allowed: {reason}")
    inner = spec.get("pipeline")
    if inner is not None:
        if not isinstance(inner, list):
            raise _refused(f"{name}.pipeline must be an array of stages")
        check_pipeline(inner, may_join, depth + 1)
    rest = {k: v for k, v in spec.items() if k != "pipeline"}
    check_expression(rest, name, depth + 1)
