"""Event hooks: a developer's own code around what the API does to documents.

    from shoal import create_app, shoal_hooks
    from shoal.errors import Forbidden

    app = create_app("shoal.yaml")
    hooks = shoal_hooks(app)

    @hooks.on_insert("books")
    async def stamp(documents):
        for document in documents:
            document["slug"] = document["title"].lower().replace(" ", "-")

    @hooks.on_pre_GET("books")
    async def only_published(request, lookup):
        lookup["published"] = True        # a filter every read of books adds

    @hooks.on("on_delete_item_books")     # Eve's own names work too
    def refuse(original):
        if original.get("locked"):
            raise Forbidden("this book is locked")

A hook may be a coroutine function or a plain function. Registered for one
resource, it gets the event's arguments (Eve's per-resource signature); with
no resource, it gets the resource's name first (Eve's generic signature).
Hooks of an event run in the order they were registered, the generic ones
first. Eve's names are checked: a misspelt one is an error, not a hook that
never runs.

What each event receives (all of it mutable, in place):

- ``on_pre_<METHOD>(request, lookup)`` (POST: ``request`` only): before the
  method, after access checks; keys a hook adds to ``lookup`` filter every
  document the request reads or writes.
- ``on_fetched_resource(response)``: the list (or aggregation) envelope.
- ``on_fetched_item(document)``: an item, each version for ``?version=``.
- ``on_fetched_diffs(versions)``: ``?version=diffs``.
- ``on_insert(documents)`` / ``on_inserted(documents)``: POST, validated.
- ``on_replace(document, original)`` / ``on_replaced``: PUT, validated.
- ``on_update(updates, original)`` / ``on_updated``: PATCH, validated.
- ``on_delete_item(original)`` / ``on_deleted_item``: DELETE of an item.
- ``on_delete_resource()`` / ``on_deleted_resource()``: DELETE of the resource.
- ``before_aggregation(pipeline)`` / ``after_aggregation(documents)``.
- ``on_post_<METHOD>(request, response)``: after the view answered (not
  when it raised).

A "before" hook refuses the request by raising an ``ApiError`` (``Forbidden``,
``Conflict``, ``UnprocessableEntity``...; Quart's ``abort`` works too): nothing
is written and the client gets that status and message. "Before" hooks run
before the conditional write, "after" hooks once it has succeeded: an error in
an "after" hook is logged and the client still gets the write's answer, since
the write cannot be taken back.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from quart import Quart

logger = logging.getLogger("shoal.hooks")

Hook = Callable[..., Awaitable[None] | None]
H = TypeVar("H", bound=Hook)

#: Events on documents and aggregations (Eve's names, without ``on_``/resource).
EVENTS = frozenset(
    {
        "on_fetched_resource",
        "on_fetched_item",
        "on_fetched_diffs",
        "on_insert",
        "on_inserted",
        "on_replace",
        "on_replaced",
        "on_update",
        "on_updated",
        "on_delete_item",
        "on_deleted_item",
        "on_delete_resource",
        "on_deleted_resource",
        "before_aggregation",
        "after_aggregation",
    }
)
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
#: Events whose errors cannot change the answer: the write is done.
AFTER_EVENTS = frozenset(
    {"on_inserted", "on_replaced", "on_updated", "on_deleted_item", "on_deleted_resource"}
)
_ALL = {*EVENTS, *(f"on_pre_{m}" for m in METHODS), *(f"on_post_{m}" for m in METHODS)}
_EVE_NAME = re.compile(
    r"^(?P<event>" + "|".join(sorted(_ALL, key=len, reverse=True)) + r")(?:_(?P<resource>.+))?$"
)


class Hooks:
    """The registry of one app's hooks (``shoal_hooks(app)``)."""

    def __init__(self, resources: frozenset[str] = frozenset()) -> None:
        self._resources = resources
        #: (event, resource or None for every resource) → hooks, in order.
        self._hooks: dict[tuple[str, str | None], list[Hook]] = {}

    # -- registering -----------------------------------------------------

    def add(self, event: str, hook: H, resource: str | None = None) -> H:
        """Register ``hook`` for ``event`` (of ``resource``, or of every one)."""
        if event not in _ALL:
            raise ValueError(f"{event!r} is not an event; events: {', '.join(sorted(_ALL))}")
        if resource is not None and self._resources and resource not in self._resources:
            names = ", ".join(sorted(self._resources))
            raise ValueError(f"no resource named {resource!r}; resources: {names}")
        self._hooks.setdefault((event, resource), []).append(hook)
        return hook

    def on(self, name: str, resource: str | None = None) -> Callable[[H], H]:
        """Register by Eve's name: ``on_insert``, ``on_insert_books``,
        ``on_pre_GET``, ``on_pre_GET_books``...::

            @hooks.on("on_fetched_item_books")
            def hide(document): ...
        """
        event, named = self.parse_name(name)
        if named is not None and resource is not None and named != resource:
            raise ValueError(f"{name!r} names {named!r}, not {resource!r}")
        target = named or resource
        if target is not None and self._resources and target not in self._resources:
            names = ", ".join(sorted(self._resources))
            raise ValueError(f"no resource named {target!r}; resources: {names}")

        def decorator(hook: H) -> H:
            return self.add(event, hook, target)

        return decorator

    # One decorator per event: ``@hooks.on_insert("books")`` for one resource,
    # ``@hooks.on_insert()`` for every resource (the hook gets its name first).

    def on_fetched_resource(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_fetched_resource", resource)

    def on_fetched_item(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_fetched_item", resource)

    def on_fetched_diffs(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_fetched_diffs", resource)

    def on_insert(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_insert", resource)

    def on_inserted(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_inserted", resource)

    def on_replace(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_replace", resource)

    def on_replaced(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_replaced", resource)

    def on_update(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_update", resource)

    def on_updated(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_updated", resource)

    def on_delete_item(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_delete_item", resource)

    def on_deleted_item(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_deleted_item", resource)

    def on_delete_resource(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_delete_resource", resource)

    def on_deleted_resource(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_deleted_resource", resource)

    def before_aggregation(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("before_aggregation", resource)

    def after_aggregation(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("after_aggregation", resource)

    def on_pre_GET(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_pre_GET", resource)

    def on_pre_POST(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_pre_POST", resource)

    def on_pre_PATCH(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_pre_PATCH", resource)

    def on_pre_PUT(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_pre_PUT", resource)

    def on_pre_DELETE(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_pre_DELETE", resource)

    def on_post_GET(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_post_GET", resource)

    def on_post_POST(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_post_POST", resource)

    def on_post_PATCH(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_post_PATCH", resource)

    def on_post_PUT(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_post_PUT", resource)

    def on_post_DELETE(self, resource: str | None = None) -> Callable[[H], H]:
        return self.on("on_post_DELETE", resource)

    def parse_name(self, name: str) -> tuple[str, str | None]:
        """Eve's hook name as (event, resource or None)."""
        match = _EVE_NAME.match(name)
        if match is None:
            raise ValueError(f"{name!r} is not an event name (e.g. on_insert_books)")
        event, resource = match.group("event"), match.group("resource")
        if resource is not None and self._resources and resource not in self._resources:
            # "on_delete_resource_books" would read as on_delete + "resource_books".
            raise ValueError(f"{name!r}: no resource named {resource!r}")
        return event, resource

    def __getattr__(self, name: str) -> Callable[[Hook], Hook]:
        """Eve's per-resource names as decorators: ``@hooks.on_insert_books``."""
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            _, resource = self.parse_name(name)
        except ValueError as error:
            raise AttributeError(str(error)) from None
        if resource is None:
            raise AttributeError(name)
        return self.on(name)

    # -- firing ------------------------------------------------------------

    def has(self, event: str, resource: str) -> bool:
        return bool(self._hooks.get((event, None)) or self._hooks.get((event, resource)))

    async def fire(self, event: str, resource: str, *arguments: Any) -> None:
        """Run the hooks of ``event`` for ``resource``: generic ones (with the
        resource's name first), then the resource's own. Errors of "before"
        hooks propagate (the request is refused); errors of "after" hooks are
        logged."""
        generic = self._hooks.get((event, None), [])
        own = self._hooks.get((event, resource), [])
        if not (generic or own):
            return
        calls = [(hook, (resource, *arguments)) for hook in generic]
        calls += [(hook, arguments) for hook in own]
        for hook, args in calls:
            if event in AFTER_EVENTS or event.startswith("on_post_"):
                try:
                    await _call(hook, args)
                except Exception:
                    logger.exception(
                        "hook %s of %s on %s failed after the write; the client "
                        "still gets the write's answer",
                        getattr(hook, "__name__", hook),
                        event,
                        resource,
                    )
            else:
                await _call(hook, args)


async def _call(hook: Hook, arguments: tuple[Any, ...]) -> None:
    result = hook(*arguments)
    if inspect.isawaitable(result):
        await result


#: Where an app keeps its hooks (``app.extensions``).
EXTENSION_KEY = "shoal.hooks"


def shoal_hooks(app: Quart) -> Hooks:
    """The hook registry of an app made by ``create_app``."""
    hooks: Hooks = app.extensions[EXTENSION_KEY]
    return hooks
