"""The REST endpoints of every configured resource, in Eve's wire format.

    GET|HEAD|POST|PATCH|DELETE  /<resource>
    GET|HEAD|PATCH|PUT|DELETE   /<resource>/<id>
    GET  /<resource>/_stream, /<resource>/<id>/_stream   (streams: true)
    GET  /                 the resources, with links

Only the methods a resource lists are routed; any other gets 405 with Allow.
``PATCH`` and ``DELETE`` with ``where`` on ``/<resource>`` write by filter
(``bulk_writes: true``); a ``PATCH`` of ``/<resource>/<id>`` sent as
``application/vnd.shoal.update+json`` applies update operators
(``atomic_updates: true``). ``Prefer`` (RFC 7240) chooses what a write answers
and how a list counts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from quart import Blueprint, Response, current_app, request

from ..auth import get_auth
from ..config import get_settings
from ..errors import BadRequest, UnprocessableEntity, UnsupportedMediaType, error_body
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
    STREAM_SEGMENT,
    Access,
    Resource,
    Resources,
    ResourceService,
    collection_endpoint,
    item_endpoint,
    stream_endpoint,
)
from ..resources.changes import ChangeFeeds
from ..resources.documents import Document, parse_id
from ..resources.once import WriteKey
from ..resources.query import CountMode, parse_list_query, parse_where
from ..resources.render import (
    last_modified,
    page_etag,
    render_page,
    render_single,
    write_ack,
)
from ..resources.updates import UPDATE_MEDIA_TYPE
from .streams import stream_view

View = Callable[..., Awaitable[Response]]


def collection_view(service: ResourceService) -> View:
    resource = service.resource

    async def view() -> Response:
        method = request.method
        access = await get_auth(current_app).authorize(resource, method, item=False)
        prefer = preferences()
        if method in READ_METHODS:
            return await _list(service, access, prefer)
        if method == "POST":
            return await _create(service, await read_json(), access, prefer)
        where = request.args.get("where")
        if method == "PATCH":
            if not where:
                raise BadRequest("PATCH on a collection changes the documents where=... matches")
            filter = parse_where(where, resource.rules)
            matched, modified = await service.patch_where(filter, await read_json(), access)
            counts = {"_matched": matched, "_modified": modified}
            return _counts(counts, prefer)
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
        return no_content()

    return view


async def _list(service: ResourceService, access: Access, prefer: dict[str, str]) -> Response:
    resource = service.resource
    args = request.args.to_dict(flat=True)
    count = cast(CountMode | None, prefer.get("count"))
    query = parse_list_query(args, resource.rules, count=count)
    page = await service.find(query, access)
    etag, updated = page_etag(page, query), last_modified(page)
    honoured = {"count": count} if count is not None and count == (page.counted or "none") else {}
    if not_modified(etag):
        return applied(not_modified_response(etag, updated), honoured)
    body = render_page(resource, page, query, args)
    response = with_validators(_json(body), etag, updated)
    if page.total is not None:
        response.headers["X-Total-Count"] = str(page.total)
    return applied(response, honoured)


def _counts(counts: dict[str, int], prefer: dict[str, str]) -> Response:
    """The answer of a write by filter: its counts, or nothing (return=minimal)."""
    if prefer.get("return") == "minimal":
        return applied(no_content(), {"return": "minimal"})
    return applied(_json({"_status": "OK", **counts}), {})


async def _create(
    service: ResourceService, body: Any, access: Access, prefer: dict[str, str]
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
    if returned == "minimal":
        response = no_content()
    elif bulk:
        render = _representation if returned == "representation" else write_ack
        items = [render(resource, document) for document in documents]
        response = _json({"_status": "OK", "_items": items}, 201)
    else:
        render = _representation if returned == "representation" else write_ack
        response = _json(render(resource, first), 201)
    if not bulk:
        with_validators(response, first["_etag"])
    # Eve's Location names the (first) created document, bulk or not.
    proxies = get_settings(current_app).trusted_proxies
    response.headers["Location"] = f"{base_url(request, proxies)}{resource.name}/{first['_id']}"
    return _replayed(applied(response, {"return": returned} if returned else {}), key)


def _replayed(response: Response, key: WriteKey | None) -> Response:
    """Marked as a replay when the keyed write had been done before (by a
    request whose answer was lost): nothing was written now."""
    if key is not None and key.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def _representation(resource: Resource, document: Document) -> Document:
    """A written document as a read renders it, marked as a write's answer."""
    return {**render_single(resource, document), "_status": "OK"}


def item_view(service: ResourceService) -> View:
    resource = service.resource

    async def view(item_id: str) -> Response:
        method = request.method
        access = await get_auth(current_app).authorize(resource, method, item=True)
        object_id = parse_id(item_id)
        if method in READ_METHODS:
            document = await service.get(object_id, access)
            etag, updated = document["_etag"], document.get("_updated")
            if not_modified(etag, updated):
                return not_modified_response(etag, updated)
            return with_validators(_json(render_single(resource, document)), etag, updated)
        if method == "DELETE":
            await service.delete(object_id, required_etag(), access)
            return no_content()
        prefer = preferences()
        key = write_key()
        if method == "PATCH" and request.mimetype == UPDATE_MEDIA_TYPE:
            if not resource.settings.atomic_updates:
                raise UnsupportedMediaType(
                    f"{resource.name} does not take update operators (atomic_updates is "
                    "off); send the changed fields as application/json"
                )
            # If-Match is optional: the update is one atomic write.
            etag = optional_etag()
            document = await service.update(object_id, await read_json(), etag, access, key)
        elif method == "PATCH":
            etag = required_etag()
            document = await service.patch(object_id, await read_json(), etag, access, key)
        else:
            etag = required_etag()
            document = await service.replace(object_id, await read_json(), etag, access, key)
        returned = prefer.get("return")
        if returned == "minimal":
            response = no_content()
        elif returned == "representation":
            response = _json(_representation(resource, document))
        else:
            response = _json(write_ack(resource, document))
        with_validators(response, document["_etag"], document.get("_updated"))
        return _replayed(applied(response, {"return": returned} if returned else {}), key)

    return view


def resource_blueprint(resources: Resources, feeds: ChangeFeeds) -> Blueprint:
    """The blueprint serving ``/`` and every resource's routes."""
    blueprint = Blueprint(BLUEPRINT, __name__)

    @blueprint.get("/")
    async def home() -> dict[str, Any]:
        return {"_links": {"child": [{"title": name, "href": name} for name in resources.services]}}

    for name, service in resources.services.items():
        settings = service.resource.settings
        blueprint.add_url_rule(
            f"/{name}",
            endpoint=collection_endpoint(name, qualified=False),
            view_func=collection_view(service),
            methods=list(dict.fromkeys(settings.resource_methods)),
        )
        blueprint.add_url_rule(
            f"/{name}/<item_id>",
            endpoint=item_endpoint(name, qualified=False),
            view_func=item_view(service),
            methods=list(dict.fromkeys(settings.item_methods)),
        )
        if settings.streams:
            for item, path in (
                (False, f"/{name}/{STREAM_SEGMENT}"),
                (True, f"/{name}/<item_id>/{STREAM_SEGMENT}"),
            ):
                blueprint.add_url_rule(
                    path,
                    endpoint=stream_endpoint(name, item=item, qualified=False),
                    view_func=stream_view(service, feeds, item=item),
                    methods=["GET"],
                )
    return blueprint
