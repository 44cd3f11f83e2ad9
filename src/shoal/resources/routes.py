"""The route table: every route a resource is served at, described once.

Each ``Route`` says what the routing, the OpenAPI document, the renderer's
links and the request policies need to know about it: its URL rule and
endpoint, its methods, and, per method, whether anyone may call it, whether an
``Idempotency-Key`` makes it done once, whether the response cache answers it,
its rate-limit class, and which event hooks it fires. The blueprint registers
its views from the table (``api/resources.py``), the OpenAPI document builds
its paths from it (``openapi/resources.py``), the policies look routes up in
it by endpoint; nobody describes a route by hand a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ..config import RateLimitSettings
from .endpoints import BLUEPRINT
from .model import Resource

Kind = Literal["collection", "item", "lookup", "stream", "item_stream"]

#: The methods whose ``Idempotency-Key`` a write honours, by route kind: a POST
#: creates (its ids come from the key), a PATCH, PUT or DELETE changes one
#: document (its ETag comes from the key); see ``once.py``.
KEYED_METHODS: dict[str, frozenset[str]] = {
    "collection": frozenset({"POST"}),
    "item": frozenset({"PATCH", "PUT", "DELETE"}),
}
#: Methods that read: counted in the read class of rate limits, and cached.
READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Route:
    """One route of a resource."""

    resource: Resource
    kind: Kind
    #: The URL rule, as Quart routes it (``/books/<item_id>``).
    rule: str
    #: The methods it serves (HEAD is served with GET).
    methods: tuple[str, ...]
    #: The methods anyone may call, signed in or not.
    public: frozenset[str]

    @property
    def endpoint(self) -> str:
        """The endpoint inside the blueprint (``books:item``)."""
        return f"{self.resource.name}:{self.kind}"

    @property
    def qualified_endpoint(self) -> str:
        """``request.endpoint`` of the route (``resources.books:item``)."""
        return f"{BLUEPRINT}.{self.endpoint}"

    @property
    def path(self) -> str:
        """The path as the OpenAPI document writes it (``/books/{item_id}``)."""
        return self.rule.replace("<", "{").replace(">", "}")

    @property
    def streams(self) -> bool:
        return self.kind in ("stream", "item_stream")

    @property
    def item(self) -> bool:
        """Whether it names one document (access rules of items apply)."""
        return self.kind in ("item", "lookup", "item_stream")

    def keyed(self, method: str) -> bool:
        """Whether an ``Idempotency-Key`` makes ``method`` done once here."""
        return method in KEYED_METHODS.get(self.kind, frozenset()) and method in self.methods

    def cached(self, method: str) -> bool:
        """Whether the response cache answers ``method`` here."""
        return (
            self.resource.settings.cache_ttl is not None
            and method in READS
            and self.kind in ("collection", "item", "lookup")
        )

    def rate_class(self, method: str) -> Literal["read", "write"]:
        """The class of rate limits ``method`` counts in (opening a stream is a read)."""
        return "read" if method in READS or method == "OPTIONS" else "write"

    def limited(self, method: str, limits: RateLimitSettings) -> bool:
        """Whether a rate limit counts ``method`` here (``limits``: the global
        ``rate_limits``), so that it may answer 429."""
        rate, _ = limits.rate_of(self.rate_class(method), self.resource.settings.rate_limits)
        return rate is not None

    def hooks(self, method: str) -> tuple[str, ...]:
        """The event hooks a request of ``method`` here may fire, in Eve's names."""
        return _HOOKS.get((self.kind, "GET" if method == "HEAD" else method), ())


#: Event hooks by route kind and method (``hooks.py`` lists them all).
_HOOKS: dict[tuple[str, str], tuple[str, ...]] = {
    ("collection", "GET"): (
        "on_pre_GET",
        "on_fetched_resource",
        "before_aggregation",
        "after_aggregation",
        "on_post_GET",
    ),
    ("collection", "POST"): ("on_pre_POST", "on_insert", "on_inserted", "on_post_POST"),
    ("collection", "PATCH"): ("on_pre_PATCH", "on_post_PATCH"),
    ("collection", "DELETE"): (
        "on_pre_DELETE",
        "on_delete_resource",
        "on_deleted_resource",
        "on_post_DELETE",
    ),
    ("item", "GET"): ("on_pre_GET", "on_fetched_item", "on_fetched_diffs", "on_post_GET"),
    ("item", "PATCH"): ("on_pre_PATCH", "on_update", "on_updated", "on_post_PATCH"),
    ("item", "PUT"): ("on_pre_PUT", "on_replace", "on_replaced", "on_post_PUT"),
    ("item", "DELETE"): ("on_pre_DELETE", "on_delete_item", "on_deleted_item", "on_post_DELETE"),
    ("lookup", "GET"): ("on_pre_GET", "on_fetched_item", "on_post_GET"),
}


def resource_routes(resource: Resource) -> list[Route]:
    """Every route of ``resource``: its list, its items, its lookup and its
    streams, as its config asks (each at ``Resource.rule`` of its kind)."""
    settings = resource.settings
    public = frozenset(settings.public_methods)
    item_public = frozenset(settings.public_item_methods)
    rows: list[tuple[Kind, tuple[str, ...], frozenset[str]]] = [
        ("collection", tuple(dict.fromkeys(settings.resource_methods)), public)
    ]
    if settings.item_methods:
        rows.append(("item", tuple(dict.fromkeys(settings.item_methods)), item_public))
    if settings.additional_lookup is not None:
        rows.append(("lookup", ("GET",), item_public))
    if settings.streams:
        rows.append(("stream", ("GET",), public & READS))
        rows.append(("item_stream", ("GET",), item_public & READS))
    return [
        Route(resource, kind, resource.rule(kind), methods, open_) for kind, methods, open_ in rows
    ]


class RouteTable:
    """Every resource's routes, found by endpoint or by path."""

    def __init__(self, resources: dict[str, Resource]) -> None:
        self.routes = [
            route for resource in resources.values() for route in resource_routes(resource)
        ]
        self._by_endpoint = {route.qualified_endpoint: route for route in self.routes}
        # By first path segment: (pattern, route), fixed rules before those
        # with variables (as werkzeug prefers ``/books/_stream`` to
        # ``/books/<item_id>``), then the longest first.
        self._by_segment: dict[str, list[tuple[re.Pattern[str], Route]]] = {}
        for route in sorted(
            self.routes, key=lambda route: (route.rule.count("<"), -len(route.rule))
        ):
            head = route.rule.split("/", 2)[1]
            self._by_segment.setdefault(head, []).append((_pattern(route.rule), route))

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def by_endpoint(self, endpoint: str | None) -> Route | None:
        """The route ``request.endpoint`` names, if it is a resource's."""
        return self._by_endpoint.get(endpoint or "")

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route serving ``path`` (percent-decoded, as ASGI gives it) and
        its variables, as Quart's router would find them; None for none."""
        head = path.split("/", 2)[1] if path.startswith("/") and len(path) > 1 else ""
        for pattern, route in self._by_segment.get(head, ()):
            found = pattern.fullmatch(path)
            if found is not None:
                return route, found.groupdict()
        return None

    def of(self, name: str) -> list[Route]:
        """The routes of the resource ``name``."""
        return [route for route in self.routes if route.resource.name == name]


def _pattern(rule: str) -> re.Pattern[str]:
    """A URL rule as a pattern: each ``<name>`` one path segment (werkzeug's
    default converter)."""
    parts = re.split(r"<([A-Za-z_][A-Za-z0-9_]*)>", rule)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(pattern)
