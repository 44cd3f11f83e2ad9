"""The response cache: GET and HEAD answers of items and lists, in shared state.

Opt-in per resource (``cache_ttl: 30`` in its config). A cached answer is keyed
by the resource, the caller's access (``Access.cache_key``: "public", "all" or
"owner:<id>", so an owner-restricted resource never answers one user with
another's documents; with ``rules``, also the role that applied and a digest
of its read filter with the caller's expansion values filled in, and nothing
is cached when that filter uses ``%%now``) and the normalised request (item id, query arguments in
sorted order). It keeps the body and the headers a client relies on (ETag,
Last-Modified, X-Total-Count), so ``If-None-Match`` still gives 304.

Every resource has a **generation**, a counter in Redis that every write
increments (a ``ResourceService`` write listener, which runs before the write's
response is sent). A write to a collection bumps every resource whose answers
show its documents: the resources on that collection, those that embed its
documents, and aggregations that read or join it. Where an answer also shows
documents of other resources (embedded, or joined by an aggregation), the key
also holds the caller's access to each of those.

An entry records the generation it was computed under; a read fetches the
current generation and the entry in one ``MGET`` and uses the entry only if
the two match. So after a write through any instance, no
instance serves an answer computed before it. (The generation sits in the
entry rather than in the key's name: one round trip without a script, entries
are replaced in place instead of piling up until their TTL.)

Redis down: reads bypass the cache (``X-Cache: BYPASS``) and writes succeed.
A write whose generation bump failed leaves a debt on the instance that made
it: that instance bumps the generation as soon as Redis answers again (before
its own next cache read, and from a background retry every second). An
instance that saw Redis fail also bumps every cached resource once Redis is
back, before it reads the cache again, since others' bumps may have failed
too. What remains: an instance that saw no failure may serve an entry from
before a write made during the outage until the writer's debt is paid (about
a second after Redis returns), and never longer than the resource's
``cache_ttl``, which bounds every staleness (also a writer that died owing, a
network partition between one instance and Redis, or a Redis restored from an
older snapshot).

With ``cache_tier: worker``, each worker also keeps the resource's answers in
its memory and answers from there without asking Redis, until Redis pushes a
change of the resource's generation (``cache_tier.py`` says what that costs in
coherence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from bson import ObjectId
from quart import Quart

from ..auth import Auth
from ..config import Settings
from ..dates import parse_http_date
from ..errors import ApiError
from ..hashing import sha256_hex
from ..http.asgi import Scope, Send
from ..http.call import Answer, Call, Reply, ReplyHeaders, send_reply
from ..http.conditional import is_not_modified
from ..http.methods import READ_METHODS
from ..http.metrics import ROUTE_SCOPE_KEY
from ..metrics import cache_lookup
from ..pipelines import joined_collections
from ..resources import Resource, Resources, ResourceService
from ..resources.aggregation import ruled_source
from ..state import Breaker, SharedState, StateUnavailable, bump_generation, generation_key
from ..tasks import cancel
from .base import Policy
from .cache_tier import WorkerTier

logger = logging.getLogger("shoal.cache")

EXTENSION_KEY = "shoal.cache"
#: Response headers a cached answer keeps (besides its body and status 200).
KEPT_HEADERS = ("Content-Type", "ETag", "Last-Modified", "X-Total-Count")


def route_target(view_args: dict[str, Any]) -> str:
    """What a route's path names: the item id, a sub-resource's parent, a
    lookup's value (``item_id=…``), in a stable order."""
    return "&".join(f"{name}={value}" for name, value in sorted(view_args.items()))


def entry_key(resource: str, *, item: bool, access: str, args: dict[str, str], target: str) -> str:
    """The key of one cached answer: resource, kind, access, the path's values
    (``route_target``) and sorted query arguments (as
    ``request.args.to_dict(flat=True)`` gives them)."""
    query = urlencode(sorted(args.items()))
    digest = sha256_hex(f"{access}\0{target}\0{query}")[:40]
    return f"cache:{{{resource}}}:{'item' if item else 'list'}:{digest}"


@dataclass(frozen=True)
class _Pending:
    """A miss the after-request hook stores, if the answer is a 200."""

    resource: str
    key: str
    generation: int
    ttl: int


class ResponseCache(Policy):
    """The cache extension: looks up before the view, stores after it."""

    def __init__(
        self, resources: Resources, state: SharedState, settings: Settings, auth: Auth
    ) -> None:
        self.state = state
        self.auth = auth
        self.services: dict[str, tuple[ResourceService, bool]] = {}
        self.cached: list[str] = []
        #: Resources whose public GETs the fast path may answer: (list public, item public).
        self.fast: dict[str, tuple[bool, bool]] = {}
        #: Per cached resource: the other resources its answers show.
        self.dependencies: dict[str, list[Resource]] = {}
        #: The URL rules of those resources (list, item), for the metrics' route label.
        self.fast_rules: dict[str, tuple[str, str]] = {}
        for name, service in resources.services.items():
            if service.resource.settings.cache_ttl is None:
                continue
            self.dependencies[name] = _dependencies(service.resource)
            self.cached.append(name)
        for route in resources.routes:
            if route.cached("GET"):
                service = resources.services[route.resource.name]
                self.services[route.qualified_endpoint] = (service, route.item)
        for name in self.cached:
            resource = resources.services[name].resource
            if _fast_path_allowed(resource, settings) and not self.dependencies[name]:
                config = resource.settings
                self.fast[name] = (
                    "GET" in config.public_methods,
                    "GET" in config.public_item_methods,
                )
                rules = {route.kind: route.rule for route in resources.routes.of(name)}
                self.fast_rules[name] = (rules["collection"], rules.get("item", ""))
        #: Collection → the cached resources a write to it makes stale.
        self.stale_after: dict[str, list[str]] = {
            collection: [name for name in names if name in self.dependencies]
            for collection, names in resources.readers.items()
        }
        for service in resources.services.values():
            if self.stale_after.get(service.collection):
                service.write_listeners.append(self.invalidate)
        #: Resources whose generation this instance still has to bump.
        self.owed: set[str] = set()
        self.breaker = Breaker()
        self._repayer: asyncio.Task[None] | None = None
        #: The resources with ``cache_tier: worker``, in this worker's memory.
        self.tier = WorkerTier(
            {
                name: services.resource.settings.cache_worker_entries
                for name, services in resources.services.items()
                if name in self.dependencies and services.resource.settings.cache_tier == "worker"
            },
            state,
        )

    def init_app(self, app: Quart) -> None:
        """Register the extension; the app factory registers its request hooks
        (``before_request``, ``after_request``) in the pipeline's order, and
        its fast path in the ASGI stack."""
        app.extensions[EXTENSION_KEY] = self
        app.after_serving(self._stop)

    # -- writes ------------------------------------------------------------

    async def invalidate(self, resource: Resource) -> None:
        """Bump the generation of every cached resource that shows documents of
        ``resource``'s collection; never fail the write that called it."""
        names = self.stale_after.get(resource.collection, [])
        if not names:
            return
        kept = [name for name in names if name in self.tier]
        for name in kept:
            self.tier.forget(name)
        try:
            await bump_generation(self.state, *names)
        except StateUnavailable:
            logger.warning("cache of %s not invalidated (Redis unreachable); owed", names)
            self._owe(names)
            return
        for name in kept:
            # A read of this worker that began before the bump may have read
            # the old generation: trust none of them.
            self.tier.forget(name)

    def _owe(self, names: list[str]) -> None:
        self.owed.update(names)
        self.breaker.trip()
        if self._repayer is None or self._repayer.done():
            self._repayer = asyncio.create_task(self._repay_in_background())

    async def _repay(self) -> None:
        """Bump every owed generation; StateUnavailable if Redis still fails."""
        for name in sorted(self.owed):
            await bump_generation(self.state, name)
            self.owed.discard(name)
        logger.info("cache generations bumped after Redis came back")

    async def _repay_in_background(self) -> None:
        while self.owed:
            await asyncio.sleep(self.breaker.pause)
            with contextlib.suppress(StateUnavailable):
                await self._repay()

    async def _stop(self) -> None:
        task, self._repayer = self._repayer, None
        await cancel(task)

    # -- reads -------------------------------------------------------------

    async def before(self, call: Call) -> Reply | None:
        """Before the view: answer from the cache, or note what to store after it."""
        if call.method not in READ_METHODS or "Prefer" in call.headers:
            # A preference (say, count=exact) changes the answer, and the
            # cache keys on the query alone.
            return None
        route = self.services.get(call.endpoint or "")
        if route is None:
            return None
        service, item = route
        resource = service.resource
        access = await self.auth.authorize(call, resource, call.method, item=item)
        if not access.cacheable:
            return None  # the answer depends on the time (rules that use %%now)
        scope = access.cache_key
        for other in self.dependencies[resource.name]:
            try:
                seen = (await self.auth.authorize(call, other, "GET", item=True)).cache_key
            except ApiError:
                seen = "none"
            scope += f"|{other.name}:{seen}"
        args = call.args.to_dict(flat=True)
        target = route_target(call.view_args)
        key = entry_key(resource.name, item=item, access=scope, args=args, target=target)
        call.state["cache_status"] = "BYPASS"
        if not self.breaker.closed:
            cache_lookup(resource.name, "bypass", "app").inc()
            return None
        if self.owed:
            try:
                await self._repay()
            except StateUnavailable:
                self._owe(self.cached)
                cache_lookup(resource.name, "bypass", "app").inc()
                return None
        found = await self._find(resource.name, key)
        if found is None:
            # Others' generation bumps may be failing too: bump them all on recovery.
            self._owe(self.cached)
            cache_lookup(resource.name, "bypass", "app").inc()
            return None
        generation, decoded, where = found
        if decoded is not None:
            call.state["cache_status"] = "HIT"
            cache_lookup(resource.name, where, "app").inc()
            return self._answer(call, decoded, item=item)
        call.state["cache_status"] = "MISS"
        cache_lookup(resource.name, "miss", "app").inc()
        ttl = resource.settings.cache_ttl
        assert ttl is not None
        call.state["cache_pending"] = _Pending(resource.name, key, generation, ttl)
        return None

    async def fast_answer(self, scope: Scope, send: Send) -> bool:
        """The fast path, before admission and Quart: answer an anonymous public GET from the
        cache, or return False to leave the request to the app.

        Only what needs no caller identity is answered here: no credentials, no
        cookie, no ``Origin`` (CORS), no rate limit on the resource, a plain
        ASCII query. Everything else, misses included, takes the full path.
        """
        if scope["method"] != "GET" or self.owed or not self.breaker.closed:
            return False
        parts = scope["path"].split("/")
        if len(parts) not in (2, 3) or parts[0] != "":
            return False
        route = self.fast.get(parts[1])
        if route is None:
            return False
        item = len(parts) == 3
        target = parts[2] if item else ""
        if not route[1 if item else 0] or (item and not ObjectId.is_valid(target)):
            return False
        if_none_match = if_modified_since = None
        for name, value in scope["headers"]:
            if name in _IDENTITY_HEADERS:
                return False
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"if-modified-since":
                if_modified_since = value.decode("latin-1")
        query: bytes = scope["query_string"]
        if not query.isascii():
            return False
        args: dict[str, str] = {}
        for key, value in parse_qsl(query.decode("ascii"), keep_blank_values=True):
            args.setdefault(key, value)
        resource = parts[1]
        path_target = route_target({"item_id": target} if item else {})
        key = entry_key(resource, item=item, access="public", args=args, target=path_target)
        found = await self._find(resource, key)
        if found is None:
            return False
        _, decoded, where = found
        if decoded is None:
            return False
        status, headers, body = _conditional(
            *decoded, item=item, if_none_match=if_none_match, if_modified_since=if_modified_since
        )
        reply = Reply(status, body, ReplyHeaders(headers))
        reply.headers["X-Cache"] = "HIT"
        scope[ROUTE_SCOPE_KEY] = self.fast_rules[resource][1 if item else 0]
        cache_lookup(resource, where, "fast_path").inc()
        await send_reply(send, reply)
        return True

    async def _find(
        self, resource: str, key: str
    ) -> tuple[int, tuple[dict[str, str], bytes] | None, str] | None:
        """The resource's current generation (-1 for an answer from this
        worker's memory, which did not ask), the entry of ``key`` computed under
        it (or None) and where it was found ("local_hit" in this worker's
        memory, "hit" in Redis); None when Redis cannot be asked."""
        tier = resource in self.tier
        if tier:
            kept = self.tier.lookup(resource, key)
            if kept is not None:
                return -1, kept, "local_hit"
            version = self.tier.version(resource)
        try:
            current, entry = await self.state.get_many(generation_key(resource), key)
        except StateUnavailable:
            return None
        generation = int(current or 0)
        decoded = None if entry is None else _decode(entry, generation)
        if tier:
            self.tier.learn(resource, generation, version)
            if decoded is not None:
                self.tier.keep(resource, key, generation, *decoded)
        return generation, decoded, "hit"

    def _answer(self, call: Call, decoded: tuple[dict[str, str], bytes], *, item: bool) -> Reply:
        status, headers, body = _conditional(
            *decoded,
            item=item,
            if_none_match=call.headers.get("If-None-Match"),
            if_modified_since=call.headers.get("If-Modified-Since"),
        )
        return Reply(status, body, ReplyHeaders(headers))

    async def after(self, call: Call, answer: Answer) -> None:
        """After the view: mark the answer, and keep a fresh 200 for ``cache_ttl``."""
        status = call.state.get("cache_status")
        if status is None:
            return
        answer.headers["X-Cache"] = status
        pending: _Pending | None = call.state.get("cache_pending")
        if pending is None or answer.status != 200:
            return
        kept = answer.headers
        headers = {name: kept[name] for name in KEPT_HEADERS if name in kept}
        body = await answer.data()
        value = orjson.dumps({"g": pending.generation, "h": headers}) + b"\n" + body
        try:
            await self.state.set(pending.key, value, ttl=pending.ttl)
        except StateUnavailable:
            self._owe(self.cached)
            return
        if pending.resource in self.tier:
            self.tier.keep(pending.resource, pending.key, pending.generation, headers, body)


#: Request headers that make an answer depend on who asks (or on CORS, or on
#: a preference the cache does not key on).
_IDENTITY_HEADERS = frozenset({b"authorization", b"x-api-key", b"cookie", b"origin", b"prefer"})


def _decode(entry: bytes, generation: int) -> tuple[dict[str, str], bytes] | None:
    """A cached entry's headers and body, if it was computed under ``generation``."""
    meta_raw, _, body = entry.partition(b"\n")
    try:
        meta: dict[str, Any] = orjson.loads(meta_raw)
        current, headers = meta["g"] == generation, dict(meta["h"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        logger.warning("an unreadable cache entry was ignored")
        return None
    return (headers, body) if current else None


def _conditional(
    headers: dict[str, str],
    body: bytes,
    *,
    item: bool,
    if_none_match: str | None,
    if_modified_since: str | None,
) -> tuple[int, dict[str, str], bytes]:
    """A cached answer for a request with these validators: the entry itself
    (200), or a 304 that keeps only ETag and Last-Modified."""
    etag = headers.get("ETag", "").strip('"')
    modified = headers.get("Last-Modified")
    # Parsed only when it decides: If-Modified-Since on an item, no If-None-Match.
    asks_date = item and if_modified_since and if_none_match is None
    since = parse_http_date(modified) if asks_date and modified else None
    if etag and is_not_modified(if_none_match, if_modified_since, etag, since):
        kept: dict[str, str] = {
            name: headers[name] for name in ("ETag", "Last-Modified") if name in headers
        }
        return 304, kept, b""
    return 200, headers, body


def _fast_path_allowed(resource: Resource, settings: Settings) -> bool:
    """Whether the fast path can answer the resource's anonymous reads: served at
    its name with ObjectId ids, and no rate limit or CORS rule applies."""
    if resource.path != resource.name or resource.ids.kind != "objectid":
        return False
    if resource.settings.rules is not None:
        # Its answers are keyed by role; never the plain public entries the fast
        # path reads (one kept from before the rules were added included).
        return False
    if resource.ids.field != "_id":
        return False
    own = resource.settings.rate_limits
    limited = (own.read if own is not None else None) or settings.rate_limits.read
    return not limited and not settings.cors.allow_origins


def _dependencies(resource: Resource) -> list[Resource]:
    """The other resources whose documents the resource's answers may show."""
    names = [
        relation.resource for relation in resource.fields.relations.values() if relation.embeddable
    ]
    if resource.settings.aggregation is not None:
        joined = set(joined_collections(resource.settings.aggregation.pipeline))
        joined.update(ruled_source(resource))
        names += [
            other.name
            for other in resource.catalog.values()
            if other.collection in joined and other.settings.aggregation is None
        ]
    return [resource.catalog[name] for name in dict.fromkeys(names) if name != resource.name]


def get_cache(app: Quart) -> ResponseCache:
    cache: ResponseCache = app.extensions[EXTENSION_KEY]
    return cache
