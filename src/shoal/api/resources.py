"""The REST endpoints of every configured resource, in Eve's wire format.

    GET|HEAD|POST|DELETE  /<resource>
    GET|HEAD|PATCH|PUT|DELETE  /<resource>/<id>
    GET  /                 the resources, with links

Only the methods a resource lists are routed; any other gets 405 with Allow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from quart import Blueprint, Quart, Response, current_app, request

from ..auth import get_auth
from ..encoding import http_date
from ..errors import BadRequest, PreconditionRequired, UnprocessableEntity, error_body
from ..resources import (
    BLUEPRINT,
    Resources,
    ResourceService,
    Scope,
    collection_endpoint,
    item_endpoint,
)
from ..resources.documents import parse_id
from ..resources.query import parse_http_date, parse_list_query
from ..resources.render import (
    last_modified,
    page_etag,
    render_page,
    render_single,
    write_ack,
)
from .common import base_url, no_content, read_json
from .common import json_response as _json

View = Callable[..., Awaitable[Response]]


def _etag_values(header: str) -> list[str]:
    values = []
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        values.append(part.strip('"'))
    return [value for value in values if value]


def required_etag() -> str | None:
    """The ETag a write is conditional on (``If-Match``); None means ``*``."""
    header = request.headers.get("If-Match")
    if header is None or not header.strip():
        raise PreconditionRequired(
            "To edit a document its etag must be provided using the If-Match header"
        )
    values = _etag_values(header)
    if "*" in values:
        return None
    if len(values) != 1:
        raise BadRequest("If-Match takes exactly one ETag for a document")
    return values[0]


def is_not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified: Any
) -> bool:
    """Whether a client holding these validators has the current representation
    (``If-None-Match`` decides when present, as RFC 9110 says)."""
    if if_none_match is not None:
        values = _etag_values(if_none_match)
        return "*" in values or etag in values
    if if_modified_since and last_modified is not None:
        parsed = parse_http_date(if_modified_since)
        if parsed is None or not isinstance(last_modified, datetime):
            return False
        return last_modified.replace(microsecond=0) <= parsed
    return False


def not_modified(etag: str, last_modified: Any = None) -> bool:
    """Whether the current request's cached copy is current."""
    headers = request.headers
    return is_not_modified(
        headers.get("If-None-Match"), headers.get("If-Modified-Since"), etag, last_modified
    )


def _with_validators(response: Response, etag: str, last_modified: Any = None) -> Response:
    response.headers["ETag"] = f'"{etag}"'
    # Only a real date: documents written by other tools may hold anything.
    if isinstance(last_modified, datetime):
        response.headers["Last-Modified"] = http_date(last_modified)
    return response


def _not_modified_response(etag: str, last_modified: Any = None) -> Response:
    return _with_validators(no_content(304), etag, last_modified)


def collection_view(service: ResourceService) -> View:
    resource = service.resource

    async def view() -> Response:
        method = request.method
        scope = await get_auth(current_app).authorize(resource, method, item=False)
        if method in ("GET", "HEAD"):
            args = request.args.to_dict(flat=True)
            query = parse_list_query(args, resource.rules)
            page = await service.find(query, scope)
            etag, updated = page_etag(page, query), last_modified(page)
            if not_modified(etag):
                return _not_modified_response(etag, updated)
            body = render_page(resource, page, query, args)
            response = _with_validators(_json(body), etag, updated)
            if page.total is not None:
                response.headers["X-Total-Count"] = str(page.total)
            return response
        if method == "POST":
            return await _create(service, await read_json(), scope)
        await service.delete_all(scope)
        return no_content()

    return view


async def _create(service: ResourceService, body: Any, scope: Scope) -> Response:
    resource = service.resource
    bulk = isinstance(body, list)
    bodies = body if bulk else [body]
    if bulk and not bodies:
        raise BadRequest("an empty list inserts nothing; send one or more documents")
    try:
        documents = await service.create(bodies, scope)
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
        response = _with_validators(_json(write_ack(resource, first), 201), first["_etag"])
    # Eve's Location names the (first) created document, bulk or not.
    response.headers["Location"] = f"{base_url()}{resource.name}/{first['_id']}"
    return response


def item_view(service: ResourceService) -> View:
    resource = service.resource

    async def view(item_id: str) -> Response:
        method = request.method
        scope = await get_auth(current_app).authorize(resource, method, item=True)
        object_id = parse_id(item_id)
        if method in ("GET", "HEAD"):
            document = await service.get(object_id, scope)
            etag, updated = document["_etag"], document.get("_updated")
            if not_modified(etag, updated):
                return _not_modified_response(etag, updated)
            return _with_validators(_json(render_single(resource, document)), etag, updated)
        if method == "DELETE":
            await service.delete(object_id, required_etag(), scope)
            return no_content()
        etag = required_etag()
        body = await read_json()
        if method == "PATCH":
            document = await service.patch(object_id, body, etag, scope)
        else:
            document = await service.replace(object_id, body, etag, scope)
        response = _json(write_ack(resource, document))
        return _with_validators(response, document["_etag"], document["_updated"])

    return view


def register_resource_routes(app: Quart, resources: Resources) -> None:
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
    app.register_blueprint(blueprint)
