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
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

from quart import Blueprint, Response, current_app, request

from ..auth import get_auth
from ..config import get_settings, joined_collections, lookup_pattern
from ..errors import (
    ApiError,
    BadRequest,
    NotFound,
    UnprocessableEntity,
    UnsupportedMediaType,
    error_body,
)
from ..http.conditional import (
    not_modified,
    not_modified_response,
    optional_etag,
    required_etag,
    with_validators,
)
from ..http.json import json_response as _json
from ..http.json import no_content, read_json
from ..http.methods import READ_METHODS
from ..http.net import base_url
from ..http.prefer import applied, preferences
from ..policies.idempotency import REPLAYED_HEADER, write_key
from ..resources import (
    BLUEPRINT,
    Access,
    Page,
    Resource,
    Resources,
    ResourceService,
    SoftDeleted,
)
from ..resources.changes import ChangeFeeds
from ..resources.documents import Document, etag_of
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
from ..resources.routes import Route
from ..resources.updates import UPDATE_MEDIA_TYPE
from ..resources.versioning import diff, version_of
from .streams import stream_view

View = Callable[..., Awaitable[Response]]


# -- what every view does first ----------------------------------------------


def _parent(resource: Resource, variables: dict[str, str], access: Access) -> Access:
    """A sub-resource's access: only the documents of the parent the URL names,
    and new documents get that parent."""
    if not variables:
        return access
    filters, fixed = [], {}
    for name, text in variables.items():
        value = _typed(resource, name, text)
        filters.append(equals(name, value))
        fixed[name] = value
    scope = filters[0] if len(filters) == 1 else {"$and": filters}
    return access.narrowed(scope, fixed=fixed)


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


async def _pre(
    service: ResourceService, method: str, access: Access, lookup: dict[str, Any]
) -> Access:
    """Run ``on_pre_<METHOD>`` hooks; what they add to ``lookup`` narrows access."""
    before = dict(lookup)
    if method == "POST":
        await service.hooks.fire("on_pre_POST", service.resource.name, request)
        return access
    await service.hooks.fire(f"on_pre_{method}", service.resource.name, request, lookup)
    added = {key: value for key, value in lookup.items() if before.get(key, _MISSING) != value}
    return access.narrowed(added) if added else access


_MISSING = object()


async def _post(service: ResourceService, response: Response) -> Response:
    if request.method != "HEAD":
        name = service.resource.name
        await service.hooks.fire(f"on_post_{request.method}", name, request, response)
    return response


def _query_args() -> dict[str, str]:
    """The query string, each parameter once (400 for one given twice: which
    one was meant cannot be told)."""
    args = request.args
    for name in args:
        if len(args.getlist(name)) > 1:
            raise BadRequest(f"{name} is given more than once; send it once")
    return args.to_dict(flat=True)


def _hook_method(method: str) -> str:
    return "GET" if method == "HEAD" else method


async def _embedding(
    resource: Resource, args: dict[str, str], service: ResourceService
) -> dict[Relation, Access]:
    """The references to embed, each with the caller's access to its target.
    Asked for explicitly, a target the caller may not read refuses the request;
    embedded by default (``embedded_fields``), it stays a plain reference."""
    explicit, default = service.relations.requested(args.get("embedded"))
    auth = get_auth(current_app)
    embeds: dict[Relation, Access] = {}
    for relation in [*explicit, *default]:
        target = resource.catalog[relation.resource]
        try:
            embeds[relation] = await auth.authorize(target, "GET", item=True)
        except ApiError as error:
            if relation in explicit:
                error.message = f"embedding {relation.name} reads {target.name}: {error.message}"
                raise
    return embeds


def _embedded_etag(
    etag: str, documents: list[dict[str, Any]], embeds: dict[Relation, Access]
) -> str:
    """An ETag that changes with the embedded documents too."""
    if not embeds:
        return etag
    return hashlib.sha1(
        f"{etag}|{content_etag(documents)}".encode(), usedforsecurity=False
    ).hexdigest()


def _show_deleted(resource: Resource, args: dict[str, str]) -> bool:
    if "show_deleted" not in args:
        return False
    if not resource.settings.soft_delete:
        raise BadRequest(f"{resource.name} has no soft delete; send no show_deleted")
    return parse_boolean(args, "show_deleted", False)


# -- /<resource> ----------------------------------------------------------------


def collection_view(service: ResourceService) -> View:
    resource = service.resource

    async def view(**variables: str) -> Response:
        method = request.method
        access = await get_auth(current_app).authorize(resource, method, item=False)
        access = _parent(resource, variables, access)
        access = await _pre(service, _hook_method(method), access, {})
        prefer = preferences()
        if method in READ_METHODS:
            args = _query_args()
            if service.aggregation is not None:
                return await _post(service, await _aggregate(service, access, args))
            return await _post(service, await _list(service, access, args, variables, prefer))
        if method == "POST":
            base = resource.href(variables)
            body = await read_json()
            return await _post(service, await _create(service, body, access, base, prefer))
        where = request.args.get("where")
        if method == "PATCH":
            if not where:
                raise BadRequest("PATCH on a collection changes the documents where=... matches")
            filter = parse_where(where, resource.rules)
            matched, modified = await service.patch_where(filter, await read_json(), access)
            counts = {"_matched": matched, "_modified": modified}
            return await _post(service, _counts(counts, prefer))
        if where is not None:
            if not resource.settings.bulk_writes:
                raise BadRequest(
                    f"{resource.name} does not delete by filter (bulk_writes is off); "
                    "a DELETE without where deletes every document you may see"
                )
            filter = parse_where(where, resource.rules) if where else {}
            matched, deleted = await service.delete_where(filter, access)
            counts = {"_matched": matched, "_deleted": deleted}
            return await _post(service, _counts(counts, prefer))
        await service.delete_all(access)
        return await _post(service, no_content())

    return view


def _counts(counts: dict[str, int], prefer: dict[str, str]) -> Response:
    """The answer of a write by filter: its counts, or nothing (return=minimal)."""
    if prefer.get("return") == "minimal":
        return applied(no_content(), {"return": "minimal"})
    return applied(_json({"_status": "OK", **counts}), {})


async def _list(
    service: ResourceService,
    access: Access,
    args: dict[str, str],
    variables: dict[str, str],
    prefer: dict[str, str],
) -> Response:
    resource = service.resource
    if "version" in args:
        raise BadRequest("version is a parameter of items (/<resource>/<id>?version=all)")
    count = cast(CountMode | None, prefer.get("count"))
    query = parse_list_query(args, resource.rules, count=count)
    show_deleted = _show_deleted(resource, args)
    embeds = await _embedding(resource, args, service)
    page = await service.find(query, access, show_deleted=show_deleted)
    await service.relations.embed(page.items, embeds)
    etag = _embedded_etag(page_etag(resource, page, query), page.items, embeds)
    updated = last_modified(page)
    honoured = {"count": count} if count is not None and count == (page.counted or "none") else {}
    if not_modified(etag):
        return applied(not_modified_response(etag, updated), honoured)
    body = render_page(resource, page, query, args, resource.href(variables))
    await service.hooks.fire("on_fetched_resource", resource.name, body)
    response = with_validators(_json(body), etag, updated)
    if page.total is not None:
        response.headers["X-Total-Count"] = str(page.total)
    return applied(response, honoured)


async def _aggregate(service: ResourceService, access: Access, args: dict[str, str]) -> Response:
    resource = service.resource
    assert service.aggregation is not None
    paging: dict[str, str] = {
        key: args[key] for key in ("page", "max_results", "count") if key in args
    }
    page_query = parse_list_query(paging, resource.rules)
    query = service.aggregation.parse(args, page_query)
    joined = await _joined(resource)
    page = await service.aggregate(query, access, joined)
    body = render_aggregation(resource, page, page_query, args)
    etag = content_etag(body)
    if not_modified(etag):
        return not_modified_response(etag)
    await service.hooks.fire("on_fetched_resource", resource.name, body)
    response = with_validators(_json(body), etag)
    if page.total is not None:
        response.headers["X-Total-Count"] = str(page.total)
    return response


async def _joined(resource: Resource) -> dict[str, Access]:
    """What the caller may read of each collection the pipeline joins: the
    first resource serving it that the caller may read decides (403 if none)."""
    aggregation = resource.settings.aggregation
    assert aggregation is not None
    auth = get_auth(current_app)
    joined: dict[str, Access] = {}
    for collection in dict.fromkeys(joined_collections(aggregation.pipeline)):
        refusal: ApiError | None = None
        for target in resource.catalog.values():
            if target.collection != collection or target.settings.aggregation is not None:
                continue
            try:
                access = await auth.authorize(target, "GET", item=False)
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


async def _create(
    service: ResourceService, body: Any, access: Access, base: str, prefer: dict[str, str]
) -> Response:
    resource = service.resource
    bulk = isinstance(body, list)
    bodies = body if bulk else [body]
    if bulk and not bodies:
        raise BadRequest("an empty list inserts nothing; send one or more documents")
    key = write_key()
    try:
        documents = await service.create(bodies, access, key)
    except UnprocessableEntity as error:
        per_item = error.issues if isinstance(error.issues, list) else [error.issues]
        if not bulk:
            raise UnprocessableEntity(error.message, issues=per_item[0]) from None
        items = [
            {"_status": "ERR", "_issues": issues} if issues else {"_status": "OK"}
            for issues in per_item
        ]
        failure = error_body(422, error.message)
        failure["_items"] = items
        return _json(failure, 422)
    first = documents[0]
    returned = prefer.get("return")
    render = _representation if returned == "representation" else write_ack
    if returned == "minimal":
        response = no_content()
    elif bulk:
        items = [render(resource, document, base) for document in documents]
        response = _json({"_status": "OK", "_items": items}, 201)
    else:
        response = _json(render(resource, first, base), 201)
    if not bulk:
        with_validators(response, first["_etag"])
    # Eve's Location names the (first) created document, bulk or not.
    proxies = get_settings(current_app).trusted_proxies
    response.headers["Location"] = base_url(request, proxies) + item_href(
        resource, first.get(resource.ids.field), base
    )
    return _replayed(applied(response, {"return": returned} if returned else {}), key)


def _replayed(response: Response, key: WriteKey | None) -> Response:
    """Marked as a replay when the keyed write had been done before (by a
    request whose answer was lost): nothing was written now."""
    if key is not None and key.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def _representation(resource: Resource, document: Document, base: str | None = None) -> Document:
    """A written document as a read renders it, marked as a write's answer."""
    return {**render_single(resource, document, base), "_status": "OK"}


# -- /<resource>/<id> -------------------------------------------------------------


def item_view(service: ResourceService) -> View:
    resource = service.resource

    async def view(item_id: str, **variables: str) -> Response:
        method = request.method
        access = await get_auth(current_app).authorize(resource, method, item=True)
        access = _parent(resource, variables, access)
        item = resource.ids.parse(item_id)
        access = await _pre(service, _hook_method(method), access, {resource.ids.field: item})
        base = resource.href(variables)
        if method in READ_METHODS:
            args = _query_args()
            if "version" in args:
                response = await _version(service, access, item, args, base)
            else:
                response = await _item(service, access, args, base, item=item)
            return await _post(service, response)
        if method == "DELETE":
            await service.delete(item, required_etag(), access)
            return await _post(service, no_content())
        prefer = preferences()
        key = write_key()
        if method == "PATCH" and request.mimetype == UPDATE_MEDIA_TYPE:
            if not resource.settings.atomic_updates:
                raise UnsupportedMediaType(
                    f"{resource.name} does not take update operators (atomic_updates is "
                    "off); send the changed fields as application/json"
                )
            # If-Match is optional: the update is one atomic write.
            document = await service.update(item, await read_json(), optional_etag(), access, key)
        elif method == "PATCH":
            etag = required_etag()
            document = await service.patch(item, await read_json(), etag, access, key)
        else:
            etag = required_etag()
            document = await service.replace(item, await read_json(), etag, access, key)
        returned = prefer.get("return")
        if returned == "minimal":
            response = no_content()
        elif returned == "representation":
            response = _json(_representation(resource, document, base))
        else:
            response = _json(write_ack(resource, document, base))
        with_validators(response, document["_etag"], document.get("_updated"))
        answer = applied(response, {"return": returned} if returned else {})
        return await _post(service, _replayed(answer, key))

    return view


async def _item(
    service: ResourceService,
    access: Access,
    args: dict[str, str],
    base: str,
    *,
    item: Any,
    by: str | None = None,
) -> Response:
    resource = service.resource
    projection = parse_projection(args.get("projection"), resource.rules)
    embeds = await _embedding(resource, args, service)
    try:
        document = await service.get(item, access, projection=projection, by=by)
    except SoftDeleted as gone:
        return _deleted_answer(resource, gone.document, base)
    await service.relations.embed([document], embeds)
    etag = _embedded_etag(etag_of(document, resource.etag_key), [document], embeds)
    if projection:
        etag = hashlib.sha1(
            f"{etag}|{sorted(projection.items())}".encode(), usedforsecurity=False
        ).hexdigest()
    updated = document.get("_updated")
    if not_modified(etag, updated):
        return not_modified_response(etag, updated)
    body = render_single(resource, document, base)
    await service.hooks.fire("on_fetched_item", resource.name, body)
    return with_validators(_json(body), etag, updated)


def _deleted_answer(resource: Resource, document: dict[str, Any], base: str) -> Response:
    """Eve's 404 for a soft-deleted item: the document, with the error. Never a
    304: a client's copy of a deleted document is not current."""
    response = _json(render_deleted(resource, document, base), 404)
    return with_validators(response, document.get("_etag") or "", document.get("_updated"))


async def _version(
    service: ResourceService, access: Access, item: Any, args: dict[str, str], base: str
) -> Response:
    """``?version=N``, ``all`` or ``diffs`` of a versioned item."""
    resource = service.resource
    versions = service.versions
    if versions is None:
        raise BadRequest(f"{resource.name} is not versioned; send no version")
    wanted = args["version"]
    current = await service.get(item, access, deleted_ok=True)
    if wanted in ("all", "diffs"):
        paging: dict[str, str] = {key: args[key] for key in ("page", "max_results") if key in args}
        # Versions come in pages, whether or not the resource's lists do.
        query = parse_list_query(paging, replace(resource.rules, pagination=True))
        query = replace(query, count="auto")
        first, last = query.skip + 1, query.skip + query.max_results
        latest = version_of(current)
        span = await versions.span(current, max(1, first - 1) if wanted == "diffs" else first, last)
        span = [access.fields.apply(version) for version in span]
        previous = span.pop(0) if wanted == "diffs" and first > 1 and span else None
        page = Page(span, latest, last < latest)
        items = []
        for version in span:
            rendered = render_version(resource, version, base, listed=True)
            if wanted == "diffs":
                rendered, previous = diff(rendered, previous), rendered
            items.append(rendered)
        if wanted == "diffs":
            await service.hooks.fire("on_fetched_diffs", resource.name, items)
        else:
            for rendered in items:
                await service.hooks.fire("on_fetched_item", resource.name, rendered)
        body = render_versions(resource, item, items, page, query, args, base)
        etag = content_etag(body)
        updated = current.get("_updated")
        if not_modified(etag):
            return not_modified_response(etag, updated)
        return with_validators(_json(body), etag, updated)
    try:
        number = int(wanted)
    except ValueError:
        number = 0
    if number < 1:
        raise BadRequest(f"version must be all, diffs or a whole number from 1, got {wanted!r}")
    found = await versions.get(current, number)
    if found is not None:
        found = access.fields.apply(found)
    if found is None:
        raise NotFound(
            f"no version {number} of {resource.singular} {item} "
            f"(its latest is {version_of(current)})"
        )
    body = render_version(resource, found, base)
    etag = content_etag(body)
    if found.get("_deleted") is True:
        body["_status"] = "ERR"
        body["_error"] = {"code": 404, "message": DELETED_MESSAGE}
        return with_validators(_json(body, 404), etag, current.get("_updated"))
    if not_modified(etag):
        return not_modified_response(etag, current.get("_updated"))
    await service.hooks.fire("on_fetched_item", resource.name, body)
    return with_validators(_json(body), etag, current.get("_updated"))


# -- /<resource>/by-<field>/<value> ---------------------------------------------------


def lookup_view(service: ResourceService) -> View:
    """An item by its ``additional_lookup`` field (read only, as in Eve)."""
    resource = service.resource
    lookup = resource.settings.additional_lookup
    assert lookup is not None
    pattern = lookup_pattern(lookup.url) if lookup.url else None

    async def view(value: str, **variables: str) -> Response:
        access = await get_auth(current_app).authorize(resource, request.method, item=True)
        access = _parent(resource, variables, access)
        if pattern is not None and re.fullmatch(pattern, value) is None:
            raise NotFound(f"no {resource.singular} with {lookup.field} {value!r}")
        typed = _typed(resource, lookup.field, value)
        access = await _pre(service, "GET", access, {lookup.field: typed})
        args = _query_args()
        if "version" in args:
            raise BadRequest("version is a parameter of /<resource>/<id>")
        base = resource.href(variables)
        response = await _item(service, access, args, base, item=typed, by=lookup.field)
        return await _post(service, response)

    return view


# -- the blueprint ------------------------------------------------------------------


def _view(route: Route, service: ResourceService, feeds: ChangeFeeds) -> View:
    """The view that serves ``route``."""
    if route.kind == "collection":
        return collection_view(service)
    if route.kind == "item":
        return item_view(service)
    if route.kind == "lookup":
        return lookup_view(service)
    return stream_view(service, feeds, item=route.kind == "item_stream")


def resource_blueprint(resources: Resources, feeds: ChangeFeeds) -> Blueprint:
    """The blueprint serving ``/`` and every resource's routes."""
    blueprint = Blueprint(BLUEPRINT, __name__)

    @blueprint.get("/")
    async def home() -> dict[str, Any]:
        children = [
            {"title": name, "href": service.resource.path}
            for name, service in resources.services.items()
        ]
        return {"_links": {"child": children}}

    for route in resources.routes:
        blueprint.add_url_rule(
            route.rule,
            endpoint=route.endpoint,
            view_func=_view(route, resources.services[route.resource.name], feeds),
            methods=list(route.methods),
        )
    return blueprint
