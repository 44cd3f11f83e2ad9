"""Query parameters of list requests: ``where``, ``sort``, ``projection``,
``page``, ``max_results`` and ``count``, parsed and made safe.

Filters pass an operator allowlist: server-side JavaScript (``$where``,
``$function``, ``$accumulator``), ``$expr`` and any operator not listed are
refused; ``$regex`` only where the resource allows it; nesting depth is bounded.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ..errors import BadRequest
from ..pipelines import FILTER_REFUSED_OPERATORS
from .fields import DATE_MESSAGE, OBJECTID_MESSAGE, Kind, to_native

#: Query operators a client may use in ``where``.
ALLOWED_OPERATORS = frozenset(
    {
        # comparison
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        # logical
        "$and", "$or", "$nor", "$not",
        # element
        "$exists", "$type",
        # array
        "$all", "$elemMatch", "$size",
        # evaluation (safe ones)
        "$mod", "$text", "$search", "$language", "$caseSensitive", "$diacriticSensitive",
        # geospatial
        "$geoWithin", "$geoIntersects", "$near", "$nearSphere", "$geometry",
        "$maxDistance", "$minDistance", "$box", "$center", "$centerSphere", "$polygon",
    }
)  # fmt: skip
REGEX_OPERATORS = frozenset({"$regex", "$options"})

#: Fields Shoal maintains on every document.
META_FIELDS = ("_id", "_created", "_updated", "_etag")
#: Fields Shoal keeps on documents of resources with soft delete or versioning.
FEATURE_FIELDS = ("_deleted", "_version")
#: Operators whose operands are values of the field (so a date field's operand
#: is a date); the operands of the others ($type, $size, $regex...) are not.
_VALUE_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$all"})
_META_KINDS = {"_created": Kind.DATE, "_updated": Kind.DATE}


#: ``none``: no count; ``auto``: the collection's own count when nothing
#: filters the list, else an exact count; ``estimated``: the collection's own
#: count; ``exact``: a count of the matching documents.
CountMode = Literal["none", "auto", "estimated", "exact"]


@dataclass(frozen=True)
class ListQuery:
    """A parsed, validated list request."""

    filter: dict[str, Any]
    sort: list[tuple[str, int]] | None
    projection: dict[str, int] | None
    page: int
    max_results: int
    #: How to count the matching documents (see ``CountMode``).
    count: CountMode
    #: Keyset pagination: None for pages by number, "" for the first page by
    #: cursor, else the (signed, still encoded) cursor of the page to read.
    cursor: str | None = None
    #: False where the resource turns pagination off: every document, one page.
    paginated: bool = True

    @property
    def skip(self) -> int:
        if self.cursor is not None or not self.paginated:
            return 0
        return (self.page - 1) * self.max_results


@dataclass(frozen=True)
class QueryRules:
    """What a resource permits in its queries."""

    pagination_limit: int
    default_max_results: int
    count: bool
    allow_regex: bool
    max_depth: int
    #: Fields (dotted) whose values are native BSON types, by kind.
    kinds: Mapping[str, Kind] = field(default_factory=dict)
    #: Fields ``where`` may name (a dotted name passes if a prefix is listed);
    #: None: any field.
    allowed_filters: frozenset[str] | None = None
    sorting: bool = True
    pagination: bool = True
    default_sort: list[tuple[str, int]] | None = None
    #: The resource's own projection (``datasource.projection``).
    projection: Mapping[str, int] | None = None
    #: Fields every document is returned with, whatever is projected.
    meta_fields: tuple[str, ...] = META_FIELDS
    #: What ``_id`` holds: ObjectIds, or (None) strings or numbers as they are.
    id_kind: Kind | None = Kind.OBJECTID

    def kind_of(self, name: str) -> Kind | None:
        if name == "_id":
            return self.id_kind
        kind = self.kinds.get(name) or _META_KINDS.get(name)
        if kind is None and name.endswith("._id"):
            kind = Kind.OBJECTID
        return kind


#: The deepest a list may be paged into (MongoDB's skip is a 64-bit integer, and
#: skipping this many documents is already far slower than a ``where`` filter).
MAX_SKIP = 2**31 - 1


def parse_list_query(
    args: Mapping[str, str], rules: QueryRules, *, count: CountMode | None = None
) -> ListQuery:
    """Parse the query string of ``GET /<resource>``; bad input is a 400.

    ``count`` (a client's ``Prefer: count=...``) overrides the ``count``
    argument and the resource's default.
    """
    where = args.get("where")
    cursor = args.get("cursor")
    if cursor is not None and args.get("page"):
        raise BadRequest("page and cursor cannot be combined: follow _links.next")
    if args.get("sort") and not rules.sorting:
        raise BadRequest("sorting is off on this resource; send no sort")
    if not rules.pagination:
        for name in ("page", "max_results", "cursor"):
            if args.get(name) is not None:
                raise BadRequest(
                    f"pagination is off on this resource: every document "
                    f"comes in one answer; send no {name}"
                )
    sort = parse_sort(args["sort"]) if args.get("sort") else None
    query = ListQuery(
        filter=parse_where(where, rules) if where else {},
        sort=sort or (rules.default_sort if rules.sorting else None),
        projection=parse_projection(args.get("projection"), rules),
        page=_positive_int(args, "page", 1),
        max_results=min(
            _positive_int(args, "max_results", rules.default_max_results), rules.pagination_limit
        ),
        count=count or ("auto" if _boolean(args, "count", rules.count) else "none"),
        cursor=cursor,
        paginated=rules.pagination,
    )
    if query.skip > MAX_SKIP:
        raise BadRequest(
            f"page {query.page} is too deep (more than {MAX_SKIP} documents to skip); "
            "narrow the list with where instead"
        )
    return query


def _positive_int(args: Mapping[str, str], name: str, default: int) -> int:
    text = args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {text!r}") from None
    if value < 1:
        raise BadRequest(f"{name} must be 1 or more, got {value}")
    return value


def parse_boolean(args: Mapping[str, str], name: str, default: bool) -> bool:
    """A true/false parameter; present without a value (``?show_deleted``) is true."""
    if name in args and args[name] == "":
        return True
    return _boolean(args, name, default)


def _boolean(args: Mapping[str, str], name: str, default: bool) -> bool:
    text = args.get(name)
    if text is None or text == "":
        return default
    lowered = text.lower()
    if lowered in {"1", "true", "yes"}:
        return True
    if lowered in {"0", "false", "no"}:
        return False
    raise BadRequest(f"{name} must be true or false, got {text!r}")


def parse_where(text: str, rules: QueryRules) -> dict[str, Any]:
    """``where`` as MongoDB JSON, checked against the operator allowlist."""
    if rules.allowed_filters is not None and not rules.allowed_filters:
        raise BadRequest("filtering is off on this resource; send no where")
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"where is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise BadRequest('where must be a JSON object, e.g. {"year": {"$gte": 2000}}')
    checked: dict[str, Any] = _check_filter(parsed, rules, depth=1, field=None, operator=None)
    return checked


def check_filter(value: Any, rules: QueryRules) -> Any:
    """A filter (parsed JSON) checked against the allowlist, with its ids and
    dates as BSON values; 400 naming what is refused."""
    return _check_filter(value, rules, depth=1, field=None, operator=None)


def _check_filter(
    value: Any, rules: QueryRules, *, depth: int, field: str | None, operator: str | None
) -> Any:
    if depth > rules.max_depth:
        raise BadRequest(f"where is nested too deeply (more than {rules.max_depth} levels)")
    if isinstance(value, list):
        return [
            _check_filter(item, rules, depth=depth + 1, field=field, operator=operator)
            for item in value
        ]
    if not isinstance(value, dict):
        if operator is None or operator in _VALUE_OPERATORS:
            return _coerce(value, field, rules)
        return value
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if key.startswith("$"):
            _check_operator(key, rules)
            checked[key] = _check_filter(item, rules, depth=depth + 1, field=field, operator=key)
        else:
            if not key or "\x00" in key:
                raise BadRequest(f"where has an invalid field name {key!r}")
            # Inside $elemMatch, names are relative to the array's field.
            nested = operator == "$elemMatch" and field is not None
            name = f"{field}.{key}" if nested else key
            if not nested:
                _check_allowed(key, rules)
            checked[key] = _check_filter(item, rules, depth=depth + 1, field=name, operator=None)
    return checked


def _check_allowed(name: str, rules: QueryRules) -> None:
    allowed = rules.allowed_filters
    if allowed is None:
        return
    parts = name.split(".")
    if not any(".".join(parts[:end]) in allowed for end in range(1, len(parts) + 1)):
        raise BadRequest(f"filter on {name!r} not allowed; allowed: {', '.join(sorted(allowed))}")


def _check_operator(operator: str, rules: QueryRules) -> None:
    if operator in ALLOWED_OPERATORS:
        return
    if operator in REGEX_OPERATORS:
        if rules.allow_regex:
            return
        raise BadRequest(f"{operator} is not allowed on this resource")
    if operator in FILTER_REFUSED_OPERATORS:
        raise BadRequest(f"{operator} is not allowed in queries")
    raise BadRequest(f"unknown or unsupported query operator {operator}")


def _coerce(value: Any, field: str | None, rules: QueryRules) -> Any:
    """JSON has no ObjectId or date: turn the strings that mean one into one,
    by the field's type in the schema (a string field's strings stay strings)."""
    if not isinstance(value, str) or field is None:
        return value
    kind = rules.kind_of(field)
    if kind is None:
        return value
    native = to_native(kind, value)
    if native is not None:
        return native
    if field not in rules.kinds or field == "_id":
        return value  # Shoal's own fields: a string that is none matches nothing
    message = DATE_MESSAGE if kind is Kind.DATE else OBJECTID_MESSAGE
    raise BadRequest(f"where: {field} {message}")


def _field_name(name: Any, parameter: str) -> str:
    if not isinstance(name, str) or not name or name.startswith("$") or "\x00" in name:
        raise BadRequest(f"{parameter} has an invalid field name {name!r}")
    return name


def parse_sort(text: str) -> list[tuple[str, int]]:
    """``a,-b`` or Eve's ``[("a", 1), ("b", -1)]``."""
    text = text.strip()
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise BadRequest(f"sort does not parse: {text!r}") from None
        if not isinstance(parsed, list) or not parsed:
            raise BadRequest('sort must be a list like [("year", -1)]')
        keys = []
        for item in parsed:
            if not (isinstance(item, tuple | list) and len(item) in (1, 2)):
                raise BadRequest(f"sort items are (field, 1 or -1) pairs, got {item!r}")
            direction = item[1] if len(item) == 2 else 1
            if direction not in (1, -1) or isinstance(direction, bool):
                raise BadRequest(f"sort direction must be 1 or -1, got {direction!r}")
            keys.append((_field_name(item[0], "sort"), int(direction)))
        return keys
    keys = []
    for part in text.split(","):
        part = part.strip()
        descending = part.startswith("-")
        name = _field_name(part.lstrip("-+"), "sort")
        keys.append((name, -1 if descending else 1))
    return keys


def parse_projection(text: str | None, rules: QueryRules) -> dict[str, int] | None:
    """The client's ``projection`` (``{"title": 1}`` to include, ``{"title": 0}``
    to exclude, not both) within the resource's own: a client cannot widen an
    inclusive ``datasource.projection`` nor see what an exclusive one hides."""
    client = (_client_projection(text) or None) if text else None
    own = dict(rules.projection) if rules.projection else None
    if client is None and own is None:
        return None
    if own is None:
        projection = client or {}
    elif client is None:
        projection = own
    elif 1 in own.values():
        if 1 in client.values():
            projection = {name: 1 for name in client if own.get(name) == 1}
        else:
            projection = {name: 1 for name in own if name not in client}
    elif 1 in client.values():
        projection = {name: 1 for name in client if name not in own}
    else:
        projection = {**own, **client}
    if 1 in projection.values() or not projection:
        # Documents always carry their meta fields, whatever is projected.
        included = dict.fromkeys(projection, 1)
        included.update(dict.fromkeys(rules.meta_fields, 1))
        return included
    for meta in rules.meta_fields:
        projection.pop(meta, None)
    return projection or None


def _client_projection(text: str) -> dict[str, int]:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"projection is not valid JSON: {error}") from None
    if not isinstance(parsed, dict) or not parsed:
        raise BadRequest('projection must be a JSON object like {"title": 1}')
    projection: dict[str, int] = {}
    for name, flag in parsed.items():
        if flag not in (0, 1) or isinstance(flag, float):
            raise BadRequest(f"projection values are 1 or 0, got {flag!r} for {name!r}")
        projection[_field_name(name, "projection")] = int(flag)
    user_flags = {flag for name, flag in projection.items() if not name.startswith("_")}
    if len(user_flags) > 1:
        raise BadRequest("projection cannot mix inclusion (1) and exclusion (0)")
    meta = [name for name in projection if name.startswith("_")]
    if user_flags:
        for name in meta:
            projection.pop(name)
    return projection
