"""Update operators in a PATCH body: what a client may send, checked before
MongoDB sees it.

    PATCH /books/<id>
    Content-Type: application/vnd.shoal.update+json

    {"$inc": {"stock": -1}, "$push": {"tags": "sale"}, "$currentDate": {"sold": true}}

The operators: ``$set``, ``$unset``, ``$inc``, ``$min``, ``$max``, ``$push``,
``$pull``, ``$addToSet`` and ``$currentDate``. Paths may be dotted; fields Shoal
owns (``_``-prefixed, the owner field) and read-only fields are refused, and so
is a path named under two operators (MongoDB refuses the conflict too). The
whole document after the update is still checked against the schema (see
``ResourceService.update``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, UnprocessableEntity
from .documents import name_issues, storable_issues
from .query import QueryRules, check_filter
from .schema import DocumentSchema

Document = dict[str, Any]

#: The media type of a PATCH body of update operators.
UPDATE_MEDIA_TYPE = "application/vnd.shoal.update+json"

#: The update operators a client may use.
OPERATORS = frozenset(
    {"$set", "$unset", "$inc", "$min", "$max", "$push", "$pull", "$addToSet", "$currentDate"}
)
_NUMBER_OPERATORS = frozenset({"$inc"})
_EACH_OPERATORS = frozenset({"$push", "$addToSet"})
#: Operators whose values are stored as they are (so their field names count).
_STORED_OPERATORS = frozenset({"$set", "$push", "$addToSet"})

UPDATE_FAILURE = "Update failure: the document contains error(s)"


def check_update(body: Any, schema: DocumentSchema, rules: QueryRules) -> Document:
    """The update document a client's operator body asks for; 400 for a body
    that is not one, 422 naming each field that may not be changed so."""
    if not isinstance(body, dict) or not body:
        raise BadRequest(
            'an update is a non-empty JSON object of operators, e.g. {"$inc": {"stock": 1}}'
        )
    unknown = sorted(key for key in body if key not in OPERATORS)
    if unknown:
        raise BadRequest(
            f"unsupported update operator(s): {', '.join(unknown)}; "
            f"use {', '.join(sorted(OPERATORS))}"
        )
    issues: dict[str, str] = {}
    seen: dict[str, str] = {}
    update: Document = {}
    for operator, fields in body.items():
        if not isinstance(fields, dict) or not fields:
            raise BadRequest(f"{operator} takes a non-empty object of field paths and values")
        for path, value in fields.items():
            top = path.split(".", 1)[0]
            parts = path.split(".")
            if any(not part or part.startswith("$") or "\x00" in part for part in parts):
                issues[path] = "invalid field name"
            elif top.startswith("_") or top in schema.server_fields or top in schema.readonly:
                issues[path] = "field is read-only"
            elif path in seen or any(_overlap(path, other) for other in seen):
                issues[path] = f"changed by both {seen.get(path, 'another path')} and {operator}"
            problem = _value_problem(operator, value, rules)
            if problem is not None:
                issues.setdefault(path, problem)
            elif operator in _STORED_OPERATORS:
                each = isinstance(value, Mapping) and "$each" in value
                stored = value["$each"] if each else value
                for name, message in name_issues({"v": stored}).items():
                    issues.setdefault(path + name.removeprefix("v"), message)
            seen.setdefault(path, operator)
        update[operator] = dict(fields)
    if not issues:
        issues = storable_issues(update)
    if issues:
        raise UnprocessableEntity(UPDATE_FAILURE, issues=issues)
    return update


def _overlap(path: str, other: str) -> bool:
    """Whether one path lies inside the other (``a`` and ``a.b`` conflict)."""
    return path.startswith(other + ".") or other.startswith(path + ".")


def _value_problem(operator: str, value: Any, rules: QueryRules) -> str | None:
    if operator in _NUMBER_OPERATORS and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        return f"{operator} takes a number"
    if operator == "$currentDate" and value is not True and value != {"$type": "date"}:
        return '$currentDate takes true or {"$type": "date"}'
    each = operator in _EACH_OPERATORS and isinstance(value, Mapping) and "$each" in value
    if each and (set(value) != {"$each"} or not isinstance(value["$each"], list)):
        return f'{operator} takes a value, or {{"$each": [values]}} alone'
    if operator == "$pull" and isinstance(value, Mapping):
        try:
            check_filter(value, rules)
        except BadRequest as error:
            return error.message
    return None
