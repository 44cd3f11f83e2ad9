"""Wire-format comparisons with Eve: one scripted client, two servers.

A scenario is an async function that drives an ``Adapter`` (Eve's Flask test
client or Shoal's Quart test client behind the same small interface) and
records what a client sees at each step. A recording keeps what a client can
rely on and drops what differs by nature between two runs (ids, ETags, dates),
so two recordings compare with ``==`` and differ only where a client would
notice:

- the status code;
- the shape of the JSON body: every key path, with its JSON type at the leaves;
- the values a client acts on: ``_status``, ``_error.code``, ``_meta``, the
  client's own fields, link targets (ids replaced by ``<id>``), and whether
  ``_created``/``_updated`` are RFC 1123 dates;
- the headers a step names (present or not; ``Location`` as a link target).

Free text meant for people (``_error.message``, ``_issues`` messages,
``_links.*.title``) is compared by type only: Eve's wording comes from Cerberus
and Flask, and no client branches on it.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from eve import Eve  # type: ignore[import-untyped]
from flask import Flask
from flask.testing import FlaskClient
from quart.typing import TestClientProtocol

_OBJECT_ID = re.compile(r"\b[0-9a-f]{24}\b")
#: The id used when an earlier step failed to return one, so the scenario goes on.
MISSING_ID = "0" * 24


#: The ``books`` resource of examples/bookstore/shoal.yaml, in Eve's terms
#: (Cerberus rules for its JSON Schema; Eve's ``unique`` for Shoal's ``unique``).
EVE_BOOKS: dict[str, Any] = {
    "schema": {
        "title": {"type": "string", "required": True, "minlength": 1, "maxlength": 200},
        "year": {"type": "integer", "min": 0},
        "isbn": {"type": "string", "regex": "^[0-9X-]{10,17}$", "unique": True},
        "author": {"type": "string", "maxlength": 120},
        "tags": {"type": "list", "maxlength": 20, "schema": {"type": "string", "maxlength": 40}},
        "price": {"type": "number", "min": 0},
        "in_stock": {"type": "boolean", "default": True},
    },
    "resource_methods": ["GET", "POST", "DELETE"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "pagination_limit": 50,
}


def with_database(uri: str, database: str) -> str:
    """``uri`` naming ``database`` (Eve prefers a URI's database to MONGO_DBNAME);
    a database the URI named before stays its authSource."""
    parts = urlsplit(uri)
    query = parts.query
    previous = parts.path.strip("/")
    if previous and "authsource=" not in query.lower():
        query = "&".join(filter(None, [query, urlencode({"authSource": previous})]))
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", query, ""))


@contextmanager
def eve_app(mongodb_uri: str, settings: Mapping[str, Any] | None = None) -> Iterator[Flask]:
    """Eve 2.3 serving ``books`` like Shoal's example (or the given settings,
    an Eve settings module's names), in a database of its own (dropped
    afterwards)."""
    database = f"eve_{uuid.uuid4().hex[:12]}"
    chosen: dict[str, Any] = {
        "DOMAIN": {"books": EVE_BOOKS},
        "RESOURCE_METHODS": ["GET", "POST", "DELETE"],
        "ITEM_METHODS": ["GET", "PATCH", "PUT", "DELETE"],
        "PAGINATION": True,
        "PAGINATION_LIMIT": 50,
        "PAGINATION_DEFAULT": 25,  # Shoal's default_max_results
        **(settings or {}),
    }
    chosen.update(
        {
            "MONGO_URI": with_database(mongodb_uri, database),
            "MONGO_DBNAME": database,
            "IF_MATCH": True,
            "ENFORCE_IF_MATCH": True,
            "BULK_ENABLED": True,
        }
    )
    app: Flask = Eve(settings=chosen)
    try:
        yield app
    finally:
        for client, _ in app.extensions.get("pymongo", {}).values():
            client.drop_database(database)
            client.close()


class Reply(NamedTuple):
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: Any  # parsed JSON; None when empty; a "<not JSON: ...>" marker otherwise


class Adapter(Protocol):
    """What a scenario needs from a server: one request, one reply."""

    name: str

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Reply: ...


def _lower_case(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _parse_body(data: bytes, content_type: str | None) -> Any:
    if not data.strip():
        return None
    try:
        return jsonlib.loads(data)
    except ValueError:
        return f"<not JSON: {content_type or 'no Content-Type'}>"


class EveAdapter:
    """Eve's Flask test client; its blocking calls run in a worker thread."""

    name = "Eve"

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def _open(
        self,
        method: str,
        path: str,
        json: Any,
        headers: Mapping[str, str] | None,
        query: Mapping[str, str] | None,
    ) -> Reply:
        extra: dict[str, Any] = {} if json is None else {"json": json}
        response = self._client.open(
            path,
            method=method,
            headers=dict(headers or {}),
            query_string=dict(query or {}),
            **extra,
        )
        return Reply(
            response.status_code,
            _lower_case(response.headers.items()),
            _parse_body(response.get_data(), response.content_type),
        )

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Reply:
        return await asyncio.to_thread(self._open, method, path, json, headers, query)


class ShoalAdapter:
    """Shoal's Quart test client."""

    name = "Shoal"

    def __init__(self, client: TestClientProtocol) -> None:
        self._client = client

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Reply:
        # Quart sends ``json=None`` as a JSON null body, so pass it only when set.
        extra: dict[str, Any] = {} if json is None else {"json": json}
        response = await self._client.open(
            path,
            method=method,
            headers=dict(headers or {}),
            query_string=dict(query or {}),
            **extra,
        )
        return Reply(
            response.status_code,
            _lower_case(response.headers.items()),
            _parse_body(await response.get_data(as_text=False), response.content_type),
        )


# -- what a client sees ------------------------------------------------------


def describe_date(value: Any) -> str:
    """``RFC 1123`` when ``value`` is an HTTP date in GMT, else what it is."""
    if isinstance(value, str) and value.endswith(" GMT"):
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            pass
        else:
            if parsed.utcoffset() == timedelta(0):
                return "RFC 1123"
    return f"not an RFC 1123 date: {value!r}"


def describe_href(href: Any) -> str:
    """A link target as a client follows it: its path (ids as ``<id>``), its
    ``page``, and scheme and host as ``<host>`` when absolute.

    Other query parameters are left out: Eve rebuilds them unencoded, in its own
    order and without ``projection``; Shoal percent-encodes and keeps them all.
    Either form reaches the same page when followed.
    """
    if not isinstance(href, str):
        return f"not a string: {href!r}"
    parts = urlsplit(href)
    target = _OBJECT_ID.sub("<id>", parts.path)
    if parts.scheme or parts.netloc:
        target = f"{parts.scheme}://<host>{target}"
    page = parse_qs(parts.query).get("page")
    return f"{target}?page={page[-1]}" if page else target


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _leaf(path: Sequence[str], value: Any) -> Any:
    names = [part for part in path if not part.startswith("[")]
    last = names[-1] if names else ""
    meta = any(name.startswith("_") and name != "_items" for name in names)
    if not meta:
        if isinstance(value, str) and _OBJECT_ID.fullmatch(value):
            return "<id>"  # a reference: ids differ between two runs by nature
        return value  # the client's own data: the same input gives the same value
    if last in ("_created", "_updated"):
        return describe_date(value)
    if last == "href":
        return describe_href(value)
    if last == "_status" or names[:1] == ["_meta"] or names == ["_error", "code"]:
        return value
    return _json_type(value)


def flatten(value: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{"_links.self.href": "books/<id>", "_items[0].title": "Dune", ...}``."""
    label = "".join(part if part.startswith("[") else f".{part}" for part in path).lstrip(".")
    if isinstance(value, dict):
        if not value:
            return {label or "(body)": "empty object"}
        flat: dict[str, Any] = {}
        for key, child in value.items():
            flat.update(flatten(child, (*path, str(key))))
        return flat
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        flat = {f"{label}.length": len(value)}
        for index, child in enumerate(value):
            flat.update(flatten(child, (*path, f"[{index}]")))
        return flat
    return {label or "(body)": _leaf(path, value)}


@dataclass
class Step:
    name: str
    facts: dict[str, Any]


@dataclass
class Recording:
    """What one client saw, step by step."""

    server: str
    steps: list[Step] = field(default_factory=list)

    def record(self, name: str, reply: Reply, *, headers: Sequence[str] = ()) -> Reply:
        """Keep what a client sees of ``reply``; ``headers`` names the headers
        this step compares (present or not)."""
        facts: dict[str, Any] = {"status": reply.status}
        for header in headers:
            value = reply.headers.get(header.lower())
            if value is None:
                facts[f"header {header}"] = "absent"
            elif header.lower() == "location":
                facts[f"header {header}"] = describe_href(value)
            else:
                facts[f"header {header}"] = "present"
        etag = reply.headers.get("etag")
        body = reply.body
        if "ETag" in headers and etag is not None and isinstance(body, dict) and "_etag" in body:
            facts["header ETag is the quoted _etag"] = etag == f'"{body["_etag"]}"'
        if reply.body is None:
            facts["body"] = "none"
        elif isinstance(reply.body, dict):
            facts.update({f"body {key}": value for key, value in flatten(reply.body).items()})
        else:
            facts["body"] = reply.body if isinstance(reply.body, str) else _json_type(reply.body)
        self.steps.append(Step(name, facts))
        return reply

    def note(self, fact: str, value: Any) -> None:
        """Add a fact the scenario derives (e.g. across steps) to the last step."""
        self.steps[-1].facts[fact] = value

    def statuses(self) -> list[tuple[str, int]]:
        return [(step.name, step.facts["status"]) for step in self.steps]


def differences(
    expected: Recording,
    actual: Recording,
    improvements: Mapping[tuple[str, str], str] | None = None,
) -> list[str]:
    """One readable line per fact where ``actual`` differs from ``expected``,
    except the ``improvements``: (step name, fact) pairs where Shoal answers
    differently on purpose (each with the reason, which the docs give too)."""
    allowed = dict(improvements or {})
    lines: list[str] = []
    ours, theirs = expected.server, actual.server
    expected_names = [step.name for step in expected.steps]
    actual_names = [step.name for step in actual.steps]
    if expected_names != actual_names:
        return [f"the scenarios ran different steps: {expected_names} / {actual_names}"]
    for number, (mine, other) in enumerate(zip(expected.steps, actual.steps, strict=True), 1):
        for key in dict.fromkeys([*mine.facts, *other.facts]):
            if key not in other.facts:
                shown = f"{ours} {mine.facts[key]!r}, {theirs} has none"
            elif key not in mine.facts:
                shown = f"{ours} has none, {theirs} {other.facts[key]!r}"
            elif mine.facts[key] != other.facts[key]:
                shown = f"{ours} {mine.facts[key]!r}, {theirs} {other.facts[key]!r}"
            else:
                continue
            if (mine.name, key) in allowed:
                continue
            lines.append(f"{number:2}. {mine.name}: {key}: {shown}")
    return lines


def differing(expected: Recording, actual: Recording) -> set[tuple[str, str]]:
    """The (step name, fact) pairs where the two recordings differ."""
    found = set()
    for mine, other in zip(expected.steps, actual.steps, strict=False):
        for key in {*mine.facts, *other.facts}:
            if mine.facts.get(key, "<none>") != other.facts.get(key, "<none>"):
                found.add((mine.name, key))
    return found
