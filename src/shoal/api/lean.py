"""The lean path: a resource's request served from the raw ASGI messages, by
the same request policies and views as Quart's full path, without Quart's
request context, routing, hooks and response objects (which cost a read's
worth of CPU: see docs/benchmarks.md).

Every request to a resource's list, item or lookup takes it, reads and writes,
anonymous or not, unless something needs Quart's request:

- a request hook a developer registered on the app that ``create_app``
  returned (``@app.before_request``): the hook runs, as the README promises;
- an event hook that takes Eve's ``request`` (``on_pre_<METHOD>``,
  ``on_post_<METHOD>``) on the resource;
- a cross-origin request where CORS is on (quart-cors marks the answer);
- an event stream, a method the route does not serve (405 with ``Allow``), or
  a path no resource route matches.

Those go on to Quart, which runs the same steps as request hooks
(``policies/base.py``) around the same views (``resources.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from quart import Quart

from ..errors import ApiError
from ..http.asgi import ASGIApp, Receive, Scope, Send, header
from ..http.call import Call, ClientGone, Reply, send_reply
from ..http.errors import error_reply, unexpected_reply
from ..http.metrics import ROUTE_SCOPE_KEY
from ..policies.base import Policy
from ..resources import BLUEPRINT, RouteTable
from .resources import ResourceViews

#: Quart's registries of request hooks: one entry more than Shoal's own, for
#: the app or the resources' blueprint, sends requests down the full path.
_HOOK_REGISTRIES = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "url_value_preprocessors",
)


def request_hooks(app: Quart) -> tuple[int, ...]:
    """How many request hooks the app and the resources' blueprint have."""
    counts: list[int] = []
    for registry in _HOOK_REGISTRIES:
        hooks: Mapping[str | None, Sequence[object]] = getattr(app, registry)
        counts += [len(hooks.get(None, ())), len(hooks.get(BLUEPRINT, ()))]
    return tuple(counts)


class LeanPath:
    """ASGI middleware: serve resource requests itself (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        quart: Quart,
        routes: RouteTable,
        views: dict[str, ResourceViews],
        policies: list[Policy],
        own_hooks: tuple[int, ...],
        cors: bool,
        max_body: int,
    ) -> None:
        self.app = app
        self.quart = quart
        self.routes = routes
        self.views = views
        self.policies = policies
        self.own_hooks = own_hooks
        self.cors = cors
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self.routes.match(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        route, variables = found
        method = scope["method"]
        served = method in route.methods or (method == "HEAD" and "GET" in route.methods)
        if (
            not served
            or route.streams
            or request_hooks(self.quart) != self.own_hooks
            or (self.cors and header(scope, b"origin") is not None)
            or self._takes_request(route.resource.name, route.hooks(method))
        ):
            await self.app(scope, receive, send)
            return
        call = Call.from_scope(
            scope,
            receive,
            endpoint=route.qualified_endpoint,
            view_args=variables,
            blueprint=BLUEPRINT,
            max_body=self.max_body,
        )
        # The route template, for the metrics (as the full path's RouteLabel).
        scope[ROUTE_SCOPE_KEY] = route.rule
        try:
            reply = await self._answer(call)
        except ClientGone:
            return  # nothing to answer: the client left before its body came
        await send_reply(send, reply)

    def _takes_request(self, resource: str, events: tuple[str, ...]) -> bool:
        """Whether a registered event hook takes Eve's ``request``."""
        hooks = self.views[resource].service.hooks
        return any(
            event.startswith(("on_pre_", "on_post_")) and hooks.has(event, resource)
            for event in events
        )

    async def _answer(self, call: Call) -> Reply:
        """The policies' steps around the view, as Quart runs its hooks: each
        policy's ``before`` in order until one answers, the view, then every
        policy's ``after`` in the opposite order (errors answered first)."""
        route = self.routes.by_endpoint(call.endpoint)
        assert route is not None
        try:
            reply = None
            for policy in self.policies:
                reply = await policy.before(call)
                if reply is not None:
                    break
            if reply is None:
                reply = await self.views[route.resource.name].serve(route, call)
        except ClientGone:
            raise
        except ApiError as error:
            reply = error_reply(error, call.request_id)
        except Exception as error:  # a JSON 500 with the request id, never a traceback
            reply = unexpected_reply(error, call.request_id)
        try:
            for policy in reversed(self.policies):
                await policy.after(call, reply)
        except Exception as error:
            reply = unexpected_reply(error, call.request_id)
        return reply
