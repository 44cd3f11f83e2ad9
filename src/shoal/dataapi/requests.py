"""The Data API's actions and their request bodies, parsed into typed values.

Every body names its namespace (``dataSource``, ``database``, ``collection``,
each required); the other fields depend on the action. A field left out, or
sent as ``null``, takes its default; a required one missing is a 400
``MissingParameter``, a field of the wrong type or an unknown one a 400
``InvalidParameter``. Filters, updates and pipelines are then checked for
what the hosted service refused (``refusals``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import BadRequest, NotFound

Document = dict[str, Any]

#: ``find``'s limit when the body gives none, and the most it may ask for.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 50_000

_NAMESPACE = ("dataSource", "database", "collection")


@dataclass(frozen=True)
class Action:
    """One action: its name, whether it writes, the REST method it stands for
    (whose rules apply on a resource's collection), and its body's fields."""

    name: str
    writes: bool
    method: Literal["GET", "POST", "PATCH", "PUT", "DELETE"]
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    #: Status of a success: the hosted service answered inserts with 201.
    status: int = 200

    @property
    def fields(self) -> frozenset[str]:
        return frozenset((*_NAMESPACE, *self.required, *self.optional))


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("findOne", False, "GET", optional=("filter", "projection", "sort")),
        Action("find", False, "GET", optional=("filter", "projection", "sort", "limit", "skip")),
        Action("insertOne", True, "POST", required=("document",), status=201),
        Action("insertMany", True, "POST", required=("documents",), status=201),
        Action("updateOne", True, "PATCH", required=("filter", "update"), optional=("upsert",)),
        Action("updateMany", True, "PATCH", required=("filter", "update"), optional=("upsert",)),
        Action("replaceOne", True, "PUT", required=("filter", "replacement"), optional=("upsert",)),
        Action("deleteOne", True, "DELETE", required=("filter",)),
        Action("deleteMany", True, "DELETE", required=("filter",)),
        Action("aggregate", False, "GET", required=("pipeline",)),
    )
}


@dataclass(frozen=True)
class Namespace:
    data_source: str
    database: str
    collection: str

    def __str__(self) -> str:
        return f"{self.database}.{self.collection}"


@dataclass(frozen=True)
class ActionRequest:
    """A parsed, type-checked request body (not yet checked against the config)."""

    action: Action
    namespace: Namespace
    filter: Document = field(default_factory=dict)
    projection: Document | None = None
    sort: Document | None = None
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    document: Document | None = None
    documents: list[Document] = field(default_factory=list)
    update: Document | None = None
    replacement: Document | None = None
    upsert: bool = False
    pipeline: list[Document] = field(default_factory=list)


def unknown_action(name: str) -> NotFound:
    known = ", ".join(ACTIONS)
    return NotFound(f"there is no action {name!r}; the actions are {known}", code="NotFound")


def parse_request(action: Action, body: Any) -> ActionRequest:
    """The body of ``action`` as an ``ActionRequest``; 400 when it is not usable."""
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    unknown = sorted(set(body) - action.fields)
    if unknown:
        raise _invalid(
            f"{action.name} does not take {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(action.fields))}"
        )
    present = {key: value for key, value in body.items() if value is not None}
    for name in (*_NAMESPACE, *action.required):
        if name not in present:
            raise BadRequest(f"{name} is required", code="MissingParameter")
    namespace = Namespace(*(_name(present, key) for key in _NAMESPACE))
    values: dict[str, Any] = {}
    for name in ("filter", "projection", "sort", "document", "update", "replacement"):
        if name in present:
            values[name] = _object(present, name)
    if "sort" in values:
        _check_sort(values["sort"])
    if "limit" in present:
        values["limit"] = _whole(present, "limit", minimum=1)
        if values["limit"] > MAX_LIMIT:
            raise _invalid(f"limit is at most {MAX_LIMIT}; page with skip for more")
    if "skip" in present:
        values["skip"] = _whole(present, "skip", minimum=0)
    if "upsert" in present:
        if not isinstance(present["upsert"], bool):
            raise _invalid("upsert must be true or false")
        values["upsert"] = present["upsert"]
    if "documents" in present:
        values["documents"] = _objects(present, "documents")
        if not values["documents"]:
            raise _invalid("documents must hold one document or more")
    if "pipeline" in present:
        values["pipeline"] = _objects(present, "pipeline")
    if "update" in values:
        _check_update(values["update"])
    if "replacement" in values:
        operators = [key for key in values["replacement"] if key.startswith("$")]
        if operators:
            raise _invalid(
                f"replacement is a whole document, without update operators ({operators[0]}); "
                "use updateOne to apply operators"
            )
    return ActionRequest(action=action, namespace=namespace, **values)


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="InvalidParameter")


def _name(body: Mapping[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise _invalid(f"{key} must be a non-empty string")
    return value


def _object(body: Mapping[str, Any], key: str) -> Document:
    value = body[key]
    if not isinstance(value, dict):
        raise _invalid(f"{key} must be a JSON object, not {_kind(value)}")
    return value


def _objects(body: Mapping[str, Any], key: str) -> list[Document]:
    value = body[key]
    if not isinstance(value, list):
        raise _invalid(f"{key} must be an array of objects, not {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"{key}[{index}] must be a JSON object, not {_kind(item)}")
    return value


def _whole(body: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = body[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{key} must be a whole number, not {_kind(value)}")
    if value < minimum:
        raise _invalid(f"{key} must be {minimum} or more, not {value}")
    return int(value)


def _check_sort(sort: Document) -> None:
    for key, direction in sort.items():
        ascending_or_descending = direction in (1, -1) and not isinstance(direction, bool)
        if not ascending_or_descending and not (
            isinstance(direction, dict) and "$meta" in direction
        ):
            raise _invalid(
                f"sort: {key} must be 1 (ascending) or -1 (descending), not {direction!r}"
            )


def _check_update(update: Document) -> None:
    if not update:
        raise _invalid('update must name at least one operator, e.g. {"$set": {"done": true}}')
    for key, value in update.items():
        if not key.startswith("$"):
            raise _invalid(
                f"update takes update operators ($set, $inc...), not the field {key!r}; "
                "use replaceOne to replace a whole document"
            )
        if not isinstance(value, dict):
            raise _invalid(f"update: {key} takes an object of fields, not {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
