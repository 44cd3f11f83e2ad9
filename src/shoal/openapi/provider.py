"""The OpenAPI provider: quart-schema's document of static routes, plus every
configured resource and the Data API's actions, built once per process.

quart-schema documents the routes registered with its decorators (health,
auth, a developer's own blueprints). Resource routes are made at start-up from
the config, so their operations are built here from each resource's settings
and JSON Schema (see ``resources.py``) rather than from decorators.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

from ..config import SETTINGS_KEY, Settings
from ..dataapi import BLUEPRINT as DATA_API_BLUEPRINT
from ..dataapi import EXTENSION_KEY as DATA_API_KEY
from ..dataapi import DataApi, routes
from ..resources import EXTENSION_KEY as RESOURCES_KEY
from ..resources import Resources
from . import data_api
from .components import (
    ERROR_STATUSES,
    SECURITY_DESCRIPTIONS,
    Schema,
    error_schema,
    ref,
    shared_components,
)
from .resources import ResourceDocument

F = TypeVar("F", bound=Callable[..., Any])

_NO_CONTENT_ATTRIBUTE = "_shoal_openapi_no_content"
_ERRORS_ATTRIBUTE = "_shoal_openapi_errors"
_OPTIONAL_BODY_ATTRIBUTE = "_shoal_openapi_optional_body"
#: What any route behind the request policies may answer: 429 from a rate limit,
#: 503 when limits fail closed and Redis is down (see policies/ratelimit.py).
POLICY_ERRORS = (429, 503)
#: Endpoints of the resource blueprint; their paths are built from the config.
_RESOURCE_BLUEPRINT = "resources"
#: Blueprints whose operations are built here rather than by quart-schema.
_BUILT_HERE = frozenset({_RESOURCE_BLUEPRINT, DATA_API_BLUEPRINT})


def document_no_content(status: int = 204, description: str = "No content.") -> Callable[[F], F]:
    """Document a response without a body, which quart-schema's
    ``document_response`` (it needs a model) cannot::

        @auth.post("/logout")
        @document_no_content(204, "Logged out.")
        async def logout() -> Response: ...
    """

    def decorator(func: F) -> F:
        responses: dict[int, str] = dict(getattr(func, _NO_CONTENT_ATTRIBUTE, {}))
        responses[status] = description
        setattr(func, _NO_CONTENT_ATTRIBUTE, responses)
        return func

    return decorator


def document_errors(*statuses: int) -> Callable[[F], F]:
    """Document every error a route answers, each with the shared response of its
    status (``components.RESPONSES``). A route documented so is complete: it gets
    no catch-all ``default`` response, so an undocumented status is a defect a
    checker can see::

        @auth.get("/me")
        @document_errors(401, 429, 503)
        async def me() -> Response: ...
    """

    unknown = [status for status in statuses if status not in ERROR_STATUSES]
    if unknown:
        raise ValueError(f"no shared OpenAPI response for status {unknown}")

    def decorator(func: F) -> F:
        known: set[int] = set(getattr(func, _ERRORS_ATTRIBUTE, set()))
        setattr(func, _ERRORS_ATTRIBUTE, known | set(statuses))
        return func

    return decorator


def optional_body(func: F) -> F:
    """Document the route's request body (``document_request``) as optional."""
    setattr(func, _OPTIONAL_BODY_ATTRIBUTE, True)
    return func


class ShoalOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider with the resources added; the document is built
    on first use and kept (the routes and the config do not change while the
    process runs). Callers must not modify the returned document."""

    _document: dict[str, Any] | None = None

    def schema(self) -> dict[str, Any]:
        if self._document is None:
            self._document = self._build()
        return self._document

    def generate_rules(self) -> Iterable[Rule]:
        for rule in super().generate_rules():
            if rule.endpoint.split(".", 1)[0] not in _BUILT_HERE:
                yield rule

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        blueprint = rule.endpoint.rsplit(".", 1)[0] if "." in rule.endpoint else "meta"
        no_content: dict[int, str] = getattr(func, _NO_CONTENT_ATTRIBUTE, {})
        errors: set[int] | None = getattr(func, _ERRORS_ATTRIBUTE, None)
        for path_item in paths.values():
            for method, operation in list(path_item.items()):
                operation = path_item[method] = dict(operation)
                operation.setdefault("tags", [blueprint])
                # quart-schema keeps the blank line after a docstring's summary.
                description = operation.pop("description", "").strip()
                if description:
                    operation["description"] = description
                responses = dict(operation.get("responses", {}))
                for status, description in no_content.items():
                    responses[str(status)] = {"description": description}
                if errors is None:
                    # Whatever else the route answers is an error, and every error
                    # leaves Shoal in one envelope (see errors.py).
                    responses.setdefault("default", ref("Error", "responses"))
                else:
                    for status in sorted(errors):
                        responses.setdefault(str(status), ref(ERROR_STATUSES[status], "responses"))
                operation["responses"] = dict(
                    sorted((str(key), value) for key, value in responses.items())
                )
                if "requestBody" in operation:
                    body = dict(operation["requestBody"])
                    body["required"] = not getattr(func, _OPTIONAL_BODY_ATTRIBUTE, False)
                    operation["requestBody"] = body
                if not operation.get("parameters"):
                    operation.pop("parameters", None)
        return paths, components

    def _build(self) -> dict[str, Any]:
        document = super().schema()
        static_paths: dict[str, Any] = dict(document["paths"])
        components: dict[str, dict[str, Any]] = document["components"]
        for kind, entries in shared_components().items():
            _merge(components.setdefault(kind, {}), entries, kind)
        descriptions = {**SECURITY_DESCRIPTIONS, **data_api.SECURITY_DESCRIPTIONS}
        for name, scheme in components.get("securitySchemes", {}).items():
            if name in descriptions:
                scheme.setdefault("description", descriptions[name])

        paths: dict[str, Any] = {}
        if f"{_RESOURCE_BLUEPRINT}.home" in self._app.view_functions:
            paths["/"] = {"get": _home_operation()}
        tags: list[Schema] = []
        # quart-schema holds the app through a weak proxy; the extension is the same object.
        resources: Resources = self._app.extensions[RESOURCES_KEY]
        settings: Settings = self._app.extensions[SETTINGS_KEY]
        limits = settings.rate_limits
        for resource_service in resources.services.values():
            name = resource_service.resource.name
            resource = ResourceDocument(
                resource_service.resource,
                resources.routes.of(name),
                lambda route, method: route.limited(method, limits),
            )
            paths.update(resource.paths())
            _merge(components["schemas"], resource.schemas(), "schemas")
            tags.append(
                {
                    "name": resource.name,
                    "description": f"The `{resource.name}` resource "
                    f"(MongoDB collection `{resource_service.collection}`).",
                }
            )
        service: DataApi = self._app.extensions[DATA_API_KEY]
        if service.enabled:
            served = routes(service.settings)
            paths.update(data_api.paths(served))
            _merge(components["schemas"], data_api.schemas(served), "schemas")
            tags.append(
                {
                    "name": data_api.TAG,
                    "description": "The Atlas Data API v1 drop-in: the same actions, request "
                    "and response bodies and credential headers, at `/action/<action>`.",
                }
            )
        for path_item in static_paths.values():
            for operation in path_item.values():
                if isinstance(operation, dict):
                    _name_bodies(operation, components["schemas"])
        paths.update(static_paths)
        if self._extension.openapi_path is not None:
            paths[self._extension.openapi_path] = {"get": _openapi_operation()}

        known = {tag["name"] for tag in tags}
        for path_item in paths.values():
            for operation in path_item.values():
                for name in operation.get("tags", []) if isinstance(operation, dict) else []:
                    if name not in known:
                        known.add(name)
                        tags.append({"name": name})
        document["tags"] = [*tags, *document.get("tags", [])]
        document["paths"] = paths
        _open_objects(document)
        return document


def _merge(target: dict[str, Any], entries: dict[str, Any], kind: str) -> None:
    for name, value in entries.items():
        if name in target and target[name] != value:
            raise RuntimeError(
                f"two different OpenAPI components are named {kind}/{name}; rename one"
            )
        target[name] = value


#: A component name a generator can use as it is.
_COMPONENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _name_bodies(operation: Schema, schemas: dict[str, Schema]) -> None:
    """Move the models quart-schema writes inline in an operation (a body, an
    answer) into ``components/schemas`` under their title, and refer to them
    there: a generator then makes one type of each (``TokenResponse``, not one
    per operation that answers it). Shoal's error envelope becomes a reference to
    ``Error``. A title already naming another schema stays inline."""
    contents: list[Schema] = []
    body = operation.get("requestBody")
    if isinstance(body, dict):
        contents.append(body.get("content", {}))
    for response in operation.get("responses", {}).values():
        if isinstance(response, dict):
            contents.append(response.get("content", {}))
    error = error_schema()
    for content in contents:
        for media in content.values():
            schema = media.get("schema")
            if not isinstance(schema, dict) or "$ref" in schema:
                continue
            if schema == error:
                media["schema"] = ref("Error")
                continue
            title = schema.get("title")
            if not isinstance(title, str) or not _COMPONENT_NAME.match(title):
                continue
            if schemas.setdefault(title, schema) == schema:
                media["schema"] = ref(title)


#: JSON Schema keywords whose values are data, not schemas.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "example", "examples"})


def _open_objects(node: Any) -> None:
    """Say ``additionalProperties: true`` on every object schema that names no
    properties: JSON Schema means the same without it, but generators read such
    an object as an empty one (openapi-typescript: ``Record<string, never>``)."""
    if isinstance(node, list):
        for item in node:
            _open_objects(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object and not _OBJECT_KEYWORDS & node.keys():
        node["additionalProperties"] = True
    for key, value in node.items():
        if key not in _DATA_KEYWORDS:
            _open_objects(value)


#: What already says which properties an object schema has.
_OBJECT_KEYWORDS = frozenset(
    {
        "properties",
        "additionalProperties",
        "patternProperties",
        "unevaluatedProperties",
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
    }
)


def _home_operation() -> Schema:
    return {
        "tags": ["meta"],
        "summary": "The resources this API serves, with links",
        "operationId": "get_home",
        "security": [],
        "responses": {
            "200": {
                "description": "One link per resource.",
                "content": {"application/json": {"schema": ref("Home")}},
            },
            **_policy_errors(),
        },
    }


def _policy_errors() -> dict[str, Schema]:
    return {str(status): ref(ERROR_STATUSES[status], "responses") for status in POLICY_ERRORS}


def _openapi_operation() -> Schema:
    return {
        "tags": ["meta"],
        "summary": "This OpenAPI document",
        "operationId": "get_openapi",
        "security": [],
        "responses": {
            "200": {
                "description": "The OpenAPI 3.1 document of this API.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **_policy_errors(),
        },
    }
