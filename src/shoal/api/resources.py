"""The REST endpoints of every configured resource, in Eve's wire format.

    GET|HEAD|POST|PATCH|DELETE  /<resource>
    GET|HEAD|PATCH|PUT|DELETE   /<resource>/<id>
    GET|HEAD  /<resource>/by-<field>/<value>     (additional_lookup)
    GET  /<resource>/_stream, /<resource>/<id>/_stream   (streams: true)
    GET  /                 the resources, with links

A resource with a ``url`` is served there instead (``people/<person>/invoices``,
the parent's id in the path); an aggregation endpoint serves ``GET`` on its
list only. Only the methods a resource lists are routed; any other gets 405
with Allow. ``PATCH`` and ``DELETE`` with ``where`` on ``/<resource>`` write by
filter (``bulk_writes: true``); a ``PATCH`` of ``/<resource>/<id>`` sent as
``application/vnd.shoal.update+json`` applies update operators
(``atomic_updates: true``). ``Prefer`` (RFC 7240) chooses what a write answers
and how a list counts.

A view is an adapter: it turns a ``Call`` into one call on the resource
service and the result into a ``Reply``. ``ResourceViews.serve`` answers a
route's call; the lean path calls it straight from ASGI (``lean.py``), and the
blueprint, which Quart routes, calls it from Quart's request (the full path).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from quart import Blueprint, Response

from ..auth import Auth
from ..errors import ApiError, BadRequest, NotFound, UnprocessableEntity, UnsupportedMediaType
from ..http.call import Call, Reply, current_call, to_response
from ..http.conditional import (
    not_modified,
    not_modified_reply,
    optional_etag,
    required_etag,
    with_validators,
)
from ..http.json import json_reply, read_json
from ..http.methods import READ_METHODS
from ..http.net import Networks, base_url
from ..http.prefer import applied, preferences
from ..pipelines import joined_collections
from ..policies.idempotency import REPLAYED_HEADER, write_key
from ..resources import BLUEPRINT, Access, Resource, Resources, ResourceService, Route, SoftDeleted
from ..resources.aggregation import ruled_source
from ..resources.documents import Document
from ..resources.fields import Relation, equals, to_native
from ..resources.model import DELETED_MESSAGE
from ..resources.once import WriteKey
from ..resources.query import (
    CountMode,
    parse_boolean,
    parse_list_query,
    parse_projection,
    parse_where,
)
from ..resources.render import (
    content_etag,
    embedded_etag,
    item_etag,
    item_href,
    last_modified,
    page_etag,
    render_aggregation,
    render_deleted,
    render_page,
    render_single,
    render_version,
    render_versions,
    write_ack,
)
from ..resources.updates import UPDATE_MEDIA_TYPE
from ..resources.versioning import diff, version_of, version_page
from .uploads import MediaWrites

if TYPE_CHECKING:  # imported by create_app when a resource streams
    from ..resources.changes import ChangeFeeds

View = Callable[..., Awaitable[Response]]


class ResourceViews:
    """The views of one resource: each answers a ``Call`` with a ``Reply``."""

    def __init__(self, service: ResourceService, auth: Auth, proxies: Networks) -> None:
        self.service = service
        self.resource = service.resource
        self.auth = auth
        self.proxies = proxies
        lookup = self.resource.settings.additional_lookup
        self.lookup_pattern = lookup.pattern if lookup else None
        #: Bodies with files (multipart), and the files a write replaces.
        self.media = MediaWrites(service)

    async def serve(self, route: Route, call: Call) -> Reply:
        """The answer to ``call`` on ``route`` (a list, an item or a lookup)."""
        if route.kind == "collection":
            return await self.collection(call)
        if route.kind == "item":
            return await self.item(call)
        return await self.lookup(call)

    # -- what every view does first --------------------------------------

    async def _access(self, call: Call, method: str, *, item: bool) -> Access:
        """The caller's access, within a sub-resource's parent from the URL."""
        access = await self.auth.authorize(call, self.resource, method, item=item)
        variables = {k: v for k, v in call.view_args.items() if k not in ("item_id", "value")}
        if not variables:
            return access
        filters, fixed = [], {}
        for name, text in variables.items():
            value = _typed(self.resource, name, text)
            filters.append(equals(name, value))
            fixed[name] = value
        scope = filters[0] if len(filters) == 1 else {"$and": filters}
        return access.narrowed(scope, fixed=fixed)

    async def access(self, call: Call, method: str, *, item: bool) -> Access:
        """The caller's access (``_access``), for the views of files."""
        return await self._access(call, method, item=item)

    def _base(self, call: Call) -> str:
        variables = {k: v for k, v in call.view_args.items() if k not in ("item_id", "value")}
        return self.resource.href(variables)

    async def _pre(self, call: Call, access: Access, lookup: dict[str, Any]) -> Access:
        """Run ``on_pre_<METHOD>`` hooks; what they add to ``lookup`` narrows access."""
        method = "GET" if call.method == "HEAD" else call.method
        hooks, name = self.service.hooks, self.resource.name
        if not hooks.has(f"on_pre_{method}", name):
            return access
        if method == "POST":
            await hooks.fire("on_pre_POST", name, call.quart)
            return access
        before = dict(lookup)
        await hooks.fire(f"on_pre_{method}", name, call.quart, lookup)
        added = {key: value for key, value in lookup.items() if before.get(key, _MISSING) != value}
        return access.narrowed(added) if added else access

    async def _embedding(self, call: Call, args: dict[str, str]) -> dict[Relation, Access]:
        """The references to embed, each with the caller's access to its target.
        Asked for explicitly, a target the caller may not read refuses the request;
        embedded by default (``embedded_fields``), it stays a plain reference."""
        explicit, default = self.service.relations.requested(args.get("embedded"))
        embeds: dict[Relation, Access] = {}
        for relation in [*explicit, *default]:
            target = self.resource.catalog[relation.resource]
            try:
                embeds[relation] = await self.auth.authorize(call, target, "GET", item=True)
            except ApiError as error:
                if relation in explicit:
                    error.message = (
                        f"embedding {relation.name} reads {target.name}: {error.message}"
                    )
                    raise
        return embeds

    # -- /<resource> ----------------------------------------------------------

    async def collection(self, call: Call) -> Reply:
        service, resource, method = self.service, self.resource, call.method
        access = await self._access(call, method, item=False)
        access = await self._pre(call, access, {})
        prefer = preferences(call)
        if method in READ_METHODS:
            args = _query_args(call)
            if service.aggregation is not None:
                return await self._aggregate(call, access, args)
            return await self._list(call, access, args, prefer)
        if method == "POST":
            async with self.media.write(call) as body:
                return await self._create(call, body, access, prefer)
        where = call.args.get("where")
        if method == "PATCH":
            if not where:
                raise BadRequest("PATCH on a collection changes the documents where=... matches")
            filter = parse_where(where, resource.rules)
            changes = await read_json(call)
            if service.media is not None:
                service.media.refuse_files(changes)
            matched, modified = await service.patch_where(filter, changes, access)
            return _counts({"_matched": matched, "_modified": modified}, prefer)
        if where is not None:
            if not resource.settings.bulk_writes:
                raise BadRequest(
                    f"{resource.name} does not delete by filter (bulk_writes is off); "
                    "a DELETE without where deletes every document you may see"
                )
            filter = parse_where(where, resource.rules) if where else {}
            matched, deleted = await service.delete_where(filter, access)
            return _counts({"_matched": matched, "_deleted": deleted}, prefer)
        await service.delete_all(access)
        return Reply(204)

    async def _list(
        self, call: Call, access: Access, args: dict[str, str], prefer: dict[str, str]
    ) -> Reply:
        service, resource = self.service, self.resource
        if "version" in args:
            raise BadRequest("version is a parameter of items (/<resource>/<id>?version=all)")
        count = cast(CountMode | None, prefer.get("count"))
        query = parse_list_query(args, resource.rules, count=count)
        show_deleted = _show_deleted(resource, args)
        embeds = await self._embedding(call, args)
        page = await service.find(query, access, show_deleted=show_deleted)
        await service.relations.embed(page.items, embeds)
        etag = embedded_etag(page_etag(resource, page, query), page.items, embeds)
        updated = last_modified(page)
        counted = page.counted or "none"
        honoured = {"count": count} if count is not None and count == counted else {}
        if not_modified(call, etag):
            return applied(not_modified_reply(etag, updated), honoured)
        if service.media is not None:
            await service.media.inline(page.items)
        body = render_page(resource, page, query, args, self._base(call))
        await service.hooks.fire("on_fetched_resource", resource.name, body)
        reply = with_validators(json_reply(body), etag, updated)
        if page.total is not None:
            reply.headers["X-Total-Count"] = str(page.total)
        return applied(reply, honoured)

    async def _aggregate(self, call: Call, access: Access, args: dict[str, str]) -> Reply:
        service, resource = self.service, self.resource
        assert service.aggregation is not None
        paging: dict[str, str] = {
            key: args[key] for key in ("page", "max_results", "count") if key in args
        }
        page_query = parse_list_query(paging, resource.rules)
        query = service.aggregation.parse(args, page_query)
        joined = await self._joined(call)
        page = await service.aggregate(query, access, joined)
        body = render_aggregation(resource, page, page_query, args)
        etag = content_etag(body)
        if not_modified(call, etag):
            return not_modified_reply(etag)
        await service.hooks.fire("on_fetched_resource", resource.name, body)
        reply = with_validators(json_reply(body), etag)
        if page.total is not None:
            reply.headers["X-Total-Count"] = str(page.total)
        return reply

    async def _joined(self, call: Call) -> dict[str, Access]:
        """What the caller may read of each collection the pipeline joins, and
        of its own collection where a resource with rules serves it: the first
        resource serving it that the caller may read decides (403 if none)."""
        resource = self.resource
        aggregation = resource.settings.aggregation
        assert aggregation is not None
        joined: dict[str, Access] = {}
        read = [*ruled_source(resource), *joined_collections(aggregation.pipeline)]
        for collection in dict.fromkeys(read):
            refusal: ApiError | None = None
            for target in resource.catalog.values():
                if target.collection != collection or target.settings.aggregation is not None:
                    continue
                try:
                    access = await self.auth.authorize(call, target, "GET", item=False)
                except ApiError as error:
                    refusal = refusal or error
                    continue
                joined[collection] = access.narrowed(target.base_filter(include_deleted=False))
                break
            else:
                assert refusal is not None  # the config checks that a resource serves it
                refusal.message = f"{resource.name} joins {collection}: {refusal.message}"
                raise refusal
        return joined

    async def _create(self, call: Call, body: Any, access: Access, prefer: dict[str, str]) -> Reply:
        resource, base = self.resource, self._base(call)
        bulk = isinstance(body, list)
        bodies = body if bulk else [body]
        if bulk and not bodies:
            raise BadRequest("an empty list inserts nothing; send one or more documents")
        key = write_key(call)
        try:
            documents = await self.service.create(bodies, access, key)
        except UnprocessableEntity as error:
            per_item = error.issues if isinstance(error.issues, list) else [error.issues]
            if not bulk:
                raise UnprocessableEntity(error.message, issues=per_item[0]) from None
            items = [
                {"_status": "ERR", "_issues": issues} if issues else {"_status": "OK"}
                for issues in per_item
            ]
            return json_reply({**_failure(422, error.message), "_items": items}, 422)
        first = documents[0]
        returned = prefer.get("return")
        render = _representation if returned == "representation" else write_ack
        if returned == "minimal":
            reply = Reply(204)
        elif bulk:
            items = [render(resource, document, base) for document in documents]
            reply = json_reply({"_status": "OK", "_items": items}, 201)
        else:
            reply = json_reply(render(resource, first, base), 201)
        if not bulk:
            with_validators(reply, first["_etag"])
        # Eve's Location names the (first) created document, bulk or not.
        href = item_href(resource, first.get(resource.ids.field), base)
        reply.headers["Location"] = base_url(call, self.proxies) + href
        return _replayed(applied(reply, {"return": returned} if returned else {}), key)

    # -- /<resource>/<id> -------------------------------------------------------

    async def item(self, call: Call) -> Reply:
        service, resource, method = self.service, self.resource, call.method
        text = call.view_args["item_id"]
        try:
            item = resource.ids.parse(text)
        except NotFound:
            # As Eve routes it: a value no id can be, that the lookup's url
            # matches, is the additional_lookup's (reads only).
            if method in READ_METHODS and self._looked_up(text):
                return await self.lookup(call, text)
            raise
        access = await self._access(call, method, item=True)
        access = await self._pre(call, access, {resource.ids.field: item})
        if method in READ_METHODS:
            args = _query_args(call)
            if "version" in args:
                return await self._version(call, access, item, args)
            return await self._item(call, access, args, item=item)
        if method == "DELETE":
            etag = required_etag(call)
            async with self.media.write(call, item, access, body=False):
                await service.delete(item, etag, access)
            return Reply(204)
        prefer = preferences(call)
        key = write_key(call)
        if method == "PATCH" and call.mimetype == UPDATE_MEDIA_TYPE:
            if not resource.settings.atomic_updates:
                raise UnsupportedMediaType(
                    f"{resource.name} does not take update operators (atomic_updates is "
                    "off); send the changed fields as application/json"
                )
            # If-Match is optional: the update is one atomic write.
            changes = await read_json(call)
            document = await service.update(item, changes, optional_etag(call), access, key)
        else:
            etag = required_etag(call)
            write = service.patch if method == "PATCH" else service.replace
            async with self.media.write(call, item, access) as body:
                document = await write(item, body, etag, access, key)
        returned, base = prefer.get("return"), self._base(call)
        if returned == "minimal":
            reply = Reply(204)
        elif returned == "representation":
            reply = json_reply(_representation(resource, document, base))
        else:
            reply = json_reply(write_ack(resource, document, base))
        with_validators(reply, document["_etag"], document.get("_updated"))
        return _replayed(applied(reply, {"return": returned} if returned else {}), key)

    async def _item(
        self, call: Call, access: Access, args: dict[str, str], *, item: Any, by: str | None = None
    ) -> Reply:
        service, resource = self.service, self.resource
        projection = parse_projection(args.get("projection"), resource.rules)
        embeds = await self._embedding(call, args)
        try:
            document = await service.get(item, access, projection=projection, by=by)
        except SoftDeleted as gone:
            # Eve's 404 for a soft-deleted item shows it, with the error; never
            # a 304: a client's copy of a deleted document is not current.
            body = render_deleted(resource, gone.document, self._base(call))
            etag = gone.document.get("_etag") or ""
            return with_validators(json_reply(body, 404), etag, gone.document.get("_updated"))
        await service.relations.embed([document], embeds)
        etag = item_etag(resource, document, projection, [document] if embeds else None)
        updated = document.get("_updated")
        if not_modified(call, etag, updated):
            return not_modified_reply(etag, updated)
        if service.media is not None:
            await service.media.inline([document])
        body = render_single(resource, document, self._base(call))
        await service.hooks.fire("on_fetched_item", resource.name, body)
        return with_validators(json_reply(body), etag, updated)

    async def _version(self, call: Call, access: Access, item: Any, args: dict[str, str]) -> Reply:
        """``?version=N``, ``all`` or ``diffs`` of a versioned item."""
        service, resource, base = self.service, self.resource, self._base(call)
        versions = service.versions
        if versions is None:
            raise BadRequest(f"{resource.name} is not versioned; send no version")
        wanted = args["version"]
        current = await service.get(item, access, deleted_ok=True)
        updated = current.get("_updated")
        shown_of = access.version_view()
        if wanted in ("all", "diffs"):
            paging: dict[str, str] = {
                key: args[key] for key in ("page", "max_results") if key in args
            }
            # Versions come in pages, whether or not the resource's lists do.
            query = parse_list_query(paging, replace(resource.rules, pagination=True))
            query = replace(query, count="auto")
            first, last = query.skip + 1, query.skip + query.max_results
            diffs = wanted == "diffs"
            span, previous, page = await version_page(versions, current, first, last, diffs=diffs)
            items = []
            for version in span:
                rendered = render_version(resource, shown_of(version), base, listed=True)
                if diffs:
                    shown = shown_of(previous) if previous is not None else None
                    rendered, previous = diff(rendered, shown), rendered
                items.append(rendered)
            if diffs:
                await service.hooks.fire("on_fetched_diffs", resource.name, items)
            else:
                for rendered in items:
                    await service.hooks.fire("on_fetched_item", resource.name, rendered)
            body = render_versions(resource, item, items, page, query, args, base)
            etag = content_etag(body)
            if not_modified(call, etag):
                return not_modified_reply(etag, updated)
            return with_validators(json_reply(body), etag, updated)
        number = int(wanted) if wanted.isdigit() else 0
        if number < 1:
            raise BadRequest(f"version must be all, diffs or a whole number from 1, got {wanted!r}")
        found = await versions.get(current, number)
        if found is not None and not access.reads_version(found):
            found = None  # a version outside the role's read filter is not there for it
        if found is None:
            raise NotFound(
                f"no version {number} of {resource.singular} {item} "
                f"(its latest is {version_of(current)})"
            )
        body = render_version(resource, access.fields.strictest().apply(found), base)
        etag = content_etag(body)
        if found.get("_deleted") is True:
            body["_status"] = "ERR"
            body["_error"] = {"code": 404, "message": DELETED_MESSAGE}
            return with_validators(json_reply(body, 404), etag, updated)
        if not_modified(call, etag):
            return not_modified_reply(etag, updated)
        await service.hooks.fire("on_fetched_item", resource.name, body)
        return with_validators(json_reply(body), etag, updated)

    # -- /<resource>/by-<field>/<value> ---------------------------------------------

    def _looked_up(self, value: str) -> bool:
        """Whether ``value`` is one of the ``additional_lookup``'s (its ``url``
        regex matches it, or it has none)."""
        if self.resource.settings.additional_lookup is None:
            return False
        return self.lookup_pattern is None or re.fullmatch(self.lookup_pattern, value) is not None

    async def lookup(self, call: Call, value: str | None = None) -> Reply:
        """An item by its ``additional_lookup`` field (read only, as in Eve), at
        ``/<resource>/by-<field>/<value>``, or at ``/<resource>/<value>`` for a
        value that is no id (``value``)."""
        resource = self.resource
        lookup = resource.settings.additional_lookup
        assert lookup is not None
        access = await self._access(call, call.method, item=True)
        # A lookup by a field the caller may not read would test its values.
        access.fields.check_names([lookup.field], "this lookup")
        value = call.view_args["value"] if value is None else value
        if not self._looked_up(value):
            raise NotFound(f"no {resource.singular} with {lookup.field} {value!r}")
        typed = _typed(resource, lookup.field, value)
        access = await self._pre(call, access, {lookup.field: typed})
        args = _query_args(call)
        if "version" in args:
            raise BadRequest("version is a parameter of /<resource>/<id>")
        return await self._item(call, access, args, item=typed, by=lookup.field)


_MISSING = object()


def _typed(resource: Resource, name: str, text: str) -> Any:
    """A value from the URL as the schema types the field (404 if it cannot be)."""
    kind = resource.fields.kind_of(name)
    if kind is not None:
        value = to_native(kind, text)
        if value is None:
            raise NotFound(f"no {name} {text!r}")
        return value
    rule = resource.settings.json_schema.get("properties", {}).get(name, {})
    if rule.get("type") == "integer":
        try:
            number = int(text)
        except ValueError:
            raise NotFound(f"no {name} {text!r} (a whole number)") from None
        if not -(2**63) <= number < 2**63:  # MongoDB stores no larger integer
            raise NotFound(f"no {name} {text!r} (beyond a 64-bit integer)")
        return number
    return text


def _query_args(call: Call) -> dict[str, str]:
    """The query string, each parameter once (400 for one given twice: which
    one was meant cannot be told)."""
    args = call.args
    for name in args:
        if len(args.getlist(name)) > 1:
            raise BadRequest(f"{name} is given more than once; send it once")
    return args.to_dict(flat=True)


def _show_deleted(resource: Resource, args: dict[str, str]) -> bool:
    if "show_deleted" not in args:
        return False
    if not resource.settings.soft_delete:
        raise BadRequest(f"{resource.name} has no soft delete; send no show_deleted")
    return parse_boolean(args, "show_deleted", False)


def _counts(counts: dict[str, int], prefer: dict[str, str]) -> Reply:
    """The answer of a write by filter: its counts, or nothing (return=minimal)."""
    if prefer.get("return") == "minimal":
        return applied(Reply(204), {"return": "minimal"})
    return applied(json_reply({"_status": "OK", **counts}), {})


def _failure(status: int, message: str) -> Document:
    return {"_status": "ERR", "_error": {"code": status, "message": message}}


def _replayed(reply: Reply, key: WriteKey | None) -> Reply:
    """Marked as a replay when the keyed write had been done before (by a
    request whose answer was lost): nothing was written now."""
    if key is not None and key.replayed:
        reply.headers[REPLAYED_HEADER] = "true"
    return reply


def _representation(resource: Resource, document: Document, base: str | None = None) -> Document:
    """A written document as a read renders it, marked as a write's answer."""
    return {**render_single(resource, document, base), "_status": "OK"}


# -- the blueprint (the full path) -----------------------------------------------------


def _quart_view(route: Route, views: ResourceViews) -> View:
    """The Quart view of ``route``: the same views, on Quart's request, and the
    ``on_post_<METHOD>`` hooks, which take Eve's ``request`` and ``response``."""
    hooks, name = views.service.hooks, views.resource.name

    async def view(**_: str) -> Response:
        call = current_call()
        response = to_response(await views.serve(route, call))
        method = "GET" if call.method == "HEAD" else call.method
        if call.method != "HEAD" and hooks.has(f"on_post_{method}", name):
            await hooks.fire(f"on_post_{method}", name, call.quart, response)
        return response

    return view


def resource_blueprint(
    resources: Resources, feeds: ChangeFeeds | None, views: dict[str, ResourceViews]
) -> Blueprint:
    """The blueprint serving ``/`` and every resource's routes (``feeds``: the
    change streams, None when no resource streams)."""
    blueprint = Blueprint(BLUEPRINT, __name__)

    @blueprint.get("/")
    async def home() -> dict[str, Any]:
        children = [
            {"title": name, "href": service.resource.path}
            for name, service in resources.services.items()
        ]
        return {"_links": {"child": children}}

    for route in resources.routes:
        service = resources.services[route.resource.name]
        if route.streams:
            view = _stream_view(service, feeds, item=route.kind == "item_stream")
        else:
            view = _quart_view(route, views[route.resource.name])
        blueprint.add_url_rule(
            route.rule, endpoint=route.endpoint, view_func=view, methods=list(route.methods)
        )
    return blueprint


def _stream_view(service: ResourceService, feeds: ChangeFeeds | None, *, item: bool) -> View:
    """A stream route's view, at start-up."""
    # Imported for a config whose resources stream only: streams.py loads RE2.
    from .streams import stream_view

    if feeds is None:
        raise RuntimeError(f"{service.resource.name} streams, but the app has no change feeds")
    return stream_view(service, feeds, item=item)
