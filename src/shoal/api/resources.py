"""The REST endpoints of every configured resource, in Eve's wire format.

    GET|HEAD|POST|DELETE  /<resource>
    GET|HEAD|PATCH|PUT|DELETE  /<resource>/<id>
    GET  /                 the resources, with links

Only the methods a resource lists are routed; any other gets 405 with Allow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, Response, current_app, request

from ..auth import get_auth
from ..config import get_settings
from ..errors import BadRequest, UnprocessableEntity, error_body
from ..http.conditional import (
    not_modified,
    not_modified_response,
    required_etag,
    with_validators,
)
from ..http.json import json_response as _json
from ..http.json import no_content, read_json
from ..http.methods import READ_METHODS
from ..http.net import base_url
from ..resources import (
    BLUEPRINT,
    STREAM_SEGMENT,
    Access,
    Resources,
    ResourceService,
    collection_endpoint,
    item_endpoint,
    stream_endpoint,
)
from ..resources.changes import ChangeFeeds
from ..resources.documents import parse_id
from ..resources.query import parse_list_query
from ..resources.render import (
    last_modified,
    page_etag,
    render_page,
    render_single,
    write_ack,
)
from .streams import stream_view

View = Callable[..., Awaitable[Response]]


def collection_view(service: ResourceService) -> View:
    resource = service.resource

    async def view() -> Response:
        method = request.method
        access = await get_auth(current_app).authorize(resource, method, item=False)
        if method in READ_METHODS:
            args = request.args.to_dict(flat=True)
            query = parse_list_query(args, resource.rules)
            page = await service.find(query, access)
            etag, updated = page_etag(page, query), last_modified(page)
            if not_modified(etag):
                return not_modified_response(etag, updated)
            body = render_page(resource, page, query, args)
            response = with_validators(_json(body), etag, updated)
            if page.total is not None:
                response.headers["X-Total-Count"] = str(page.total)
            return response
        if method == "POST":
            return await _create(service, await read_json(), access)
        await service.delete_all(access)
        return no_content()

    return view


async def _create(service: ResourceService, body: Any, access: Access) -> Response:
    resource = service.resource
    bulk = isinstance(body, list)
    bodies = body if bulk else [body]
    if bulk and not bodies:
        raise BadRequest("an empty list inserts nothing; send one or more documents")
    try:
        documents = await service.create(bodies, access)
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
    if bulk:
        acks = [write_ack(resource, document) for document in documents]
        response = _json({"_status": "OK", "_items": acks}, 201)
    else:
        response = with_validators(_json(write_ack(resource, first), 201), first["_etag"])
    # Eve's Location names the (first) created document, bulk or not.
    proxies = get_settings(current_app).trusted_proxies
    response.headers["Location"] = f"{base_url(request, proxies)}{resource.name}/{first['_id']}"
    return response


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
        etag = required_etag()
        body = await read_json()
        if method == "PATCH":
            document = await service.patch(object_id, body, etag, access)
        else:
            document = await service.replace(object_id, body, etag, access)
        response = _json(write_ack(resource, document))
        return with_validators(response, document["_etag"], document["_updated"])

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
