"""The Data API's actions in OpenAPI terms, built from the routes the config serves.

Each action is its own operation (``POST /action/findOne`` ...), with its
request body, its answer in JSON and in canonical EJSON, and the Data API's
error body. Components are named ``DataApi.*``.
"""

from __future__ import annotations

import re
from typing import Any

from quart_schema import APIKeySecurityScheme

from ..dataapi import DEFAULT_LIMIT, MAX_LIMIT, Action, Route
from .components import BEARER, Schema, ref

TAG = "data-api"
API_KEY = "dataApiKey"
API_KEY_HYPHEN = "dataApiKeyHyphen"
EMAIL = "dataApiEmail"
PASSWORD = "dataApiPassword"  # noqa: S105 - the name of a security scheme

SECURITY_SCHEMES = {
    API_KEY: APIKeySecurityScheme(name="apiKey", in_="header"),
    API_KEY_HYPHEN: APIKeySecurityScheme(name="api-key", in_="header"),
    EMAIL: APIKeySecurityScheme(name="email", in_="header"),
    PASSWORD: APIKeySecurityScheme(name="password", in_="header"),
}
SECURITY_DESCRIPTIONS = {
    API_KEY: "Data API: a Shoal API key (`shoal apikeys create`) in the `apiKey` header.",
    API_KEY_HYPHEN: "Data API: the same key in the `api-key` header, as the Atlas UI's "
    "snippets sent it.",
    EMAIL: "Data API: a Shoal user's name in the `email` header (with `password`).",
    PASSWORD: "Data API: that user's password in the `password` header (with `email`).",
}
SECURITY: list[dict[str, list[str]]] = [
    {BEARER: []},
    {API_KEY: []},
    {API_KEY_HYPHEN: []},
    {EMAIL: [], PASSWORD: []},
]

_MEDIA_TYPES = ("application/json", "application/ejson")
_OBJECT: Schema = {"type": "object"}


def _optional(schema: Schema, description: str) -> Schema:
    """A field a client may leave out or send as null."""
    return {**schema, "type": [schema["type"], "null"], "description": description}


FIELDS: dict[str, Schema] = {
    "dataSource": {"type": "string", "minLength": 1, "description": "A data source of the config."},
    "database": {"type": "string", "minLength": 1},
    "collection": {"type": "string", "minLength": 1},
    "filter": {**_OBJECT, "description": "A MongoDB query filter (Extended JSON)."},
    "projection": _optional(_OBJECT, "Fields to include or exclude."),
    "sort": _optional(_OBJECT, 'Sort keys, e.g. `{"completedAt": 1}`.'),
    "limit": _optional(
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        f"Most documents to return (default {DEFAULT_LIMIT}).",
    ),
    "skip": _optional({"type": "integer", "minimum": 0}, "Documents to skip (default 0)."),
    "document": {**_OBJECT, "description": "The document to insert (Extended JSON)."},
    "documents": {"type": "array", "minItems": 1, "items": _OBJECT},
    "update": {
        **_OBJECT,
        "minProperties": 1,
        "description": 'Update operators, e.g. `{"$set": {"status": "complete"}}`.',
    },
    "replacement": {**_OBJECT, "description": "The whole new document."},
    "upsert": _optional({"type": "boolean"}, "Insert a document when none matches."),
    "pipeline": {"type": "array", "items": _OBJECT, "description": "Aggregation stages."},
}
_COUNTS: Schema = {
    "type": "object",
    "required": ["matchedCount", "modifiedCount"],
    "properties": {
        "matchedCount": {"type": "integer", "minimum": 0},
        "modifiedCount": {"type": "integer", "minimum": 0},
        "upsertedId": {"description": "The new document's `_id`, after an upsert only."},
    },
}
_DOCUMENTS: Schema = {
    "type": "object",
    "required": ["documents"],
    "properties": {"documents": {"type": "array", "items": _OBJECT}},
}
ANSWERS: dict[str, Schema] = {
    "findOne": {
        "type": "object",
        "required": ["document"],
        "properties": {"document": {"type": ["object", "null"]}},
    },
    "find": _DOCUMENTS,
    "aggregate": _DOCUMENTS,
    "insertOne": {
        "type": "object",
        "required": ["insertedId"],
        "properties": {"insertedId": {"description": "The `_id` (a hex string for an ObjectId)."}},
    },
    "insertMany": {
        "type": "object",
        "required": ["insertedIds"],
        "properties": {
            "insertedIds": {
                "type": "array",
                "items": {"description": "An `_id` (a hex string for an ObjectId)."},
                "description": "The `_id`s, in the order of the documents.",
            }
        },
    },
    "updateOne": _COUNTS,
    "updateMany": _COUNTS,
    "replaceOne": _COUNTS,
    "deleteOne": {
        "type": "object",
        "required": ["deletedCount"],
        "properties": {"deletedCount": {"type": "integer", "minimum": 0}},
    },
}
ANSWERS["deleteMany"] = ANSWERS["deleteOne"]

ERROR: Schema = {
    "type": "object",
    "description": "Every Data API error: a message, a code, and a link to this API's docs page.",
    "required": ["error", "error_code"],
    "properties": {
        "error": {"type": "string"},
        "error_code": {
            "type": "string",
            "examples": ["InvalidParameter", "MissingParameter", "InvalidSession"],
        },
        "link": {"type": "string"},
    },
}

SUMMARIES = {
    "findOne": "Find one document",
    "find": "Find documents",
    "insertOne": "Insert one document",
    "insertMany": "Insert documents",
    "updateOne": "Update one document",
    "updateMany": "Update documents",
    "replaceOne": "Replace one document",
    "deleteOne": "Delete one document",
    "deleteMany": "Delete documents",
    "aggregate": "Run an aggregation pipeline",
}

_ERRORS = {
    "400": "A body that cannot be used, a refused operator or stage, an unknown data source, "
    "no credentials (`InvalidParameter`), or a missing field (`MissingParameter`).",
    "401": "Credentials that are not valid (`InvalidSession`).",
    "403": "A collection not served, or not to this caller's roles (`NoMatchingRuleFound`).",
    "409": "A document with the same unique value exists (`DuplicateKey`), or an "
    "`updateMany`/`deleteMany` on a resource's collection matches more documents than "
    "its `max_affected` (`TooManyMatches`: nothing is changed).",
    "429": "Too many requests (`TooManyRequests`); retry after `Retry-After` seconds.",
}


def schemas(routes: list[Route]) -> dict[str, Schema]:
    """The components the actions refer to: each action's request body (one
    schema for both media types, so a generator makes one type of it) and
    answer, and the error body."""
    components: dict[str, Schema] = {"DataApi.Error": ERROR}
    for name, answer in ANSWERS.items():
        components[f"DataApi.{name}.answer"] = answer
    for route in routes:
        if route.documented:
            components[f"DataApi.{route.action.name}.body"] = request_schema(route.action)
    return components


def request_schema(action: Action) -> Schema:
    names = ["dataSource", "database", "collection", *action.required, *action.optional]
    return {
        "type": "object",
        "required": ["dataSource", "database", "collection", *action.required],
        "properties": {name: FIELDS[name] for name in names},
        "additionalProperties": False,
    }


def _error_response(description: str) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": ref("DataApi.Error")}},
    }


def operation(route: Route) -> Schema:
    action = route.action
    answer = ref(f"DataApi.{action.name}.answer")
    responses: dict[str, Any] = {
        str(action.status): {
            "description": "Done. `Accept: application/ejson` gets canonical Extended JSON "
            '(counts too: `{"$numberInt": "1"}`); anything else gets plain JSON.',
            "content": {
                "application/json": {"schema": answer},
                "application/ejson": {"schema": _OBJECT},
            },
        }
    }
    for status, description in _ERRORS.items():
        responses[status] = _error_response(description)
    responses["default"] = _error_response("Any other error, in the Data API's error body.")
    operation: Schema = {
        "tags": [TAG],
        "summary": SUMMARIES[action.name],
        # snake_case (data_api_find_one_v1): generators make method names of it as it is.
        "operationId": "data_api_" + _snake(route.endpoint.replace(":", "_")),
        "requestBody": {
            "required": True,
            "description": "Extended JSON (relaxed or canonical) in either media type.",
            "content": {
                media: {"schema": ref(f"DataApi.{action.name}.body")} for media in _MEDIA_TYPES
            },
        },
        "responses": responses,
        "security": SECURITY,
    }
    if action.writes:
        operation["parameters"] = [ref("Idempotency-Key", "parameters")]
    return operation


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def paths(routes: list[Route]) -> dict[str, Schema]:
    """The path items of the documented routes."""
    return {route.path: {"post": operation(route)} for route in routes if route.documented}
