"""Eve's wire format in OpenAPI terms: the components every resource shares.

Envelopes (``Error``, ``ValidationError``, ``WriteAck``, ``BulkWriteAck``, links,
``PageMeta``), the query and header parameters of resource routes, the error
responses and the security schemes. Resource-specific schemas are built in
``resources.py`` and refer to these by ``$ref``.
"""

from __future__ import annotations

import copy
from typing import Any

from quart_schema import APIKeySecurityScheme, HttpSecurityScheme

from ..auth import CSRF_HEADER

Schema = dict[str, Any]

BEARER = "bearerAuth"
API_KEY = "apiKeyAuth"
SESSION = "sessionCookie"
CSRF = "csrfToken"
Security = list[dict[str, list[str]]]
#: What a read accepts; any one will do (the entries of ``security`` are alternatives).
AUTHENTICATED_READ: Security = [{BEARER: []}, {API_KEY: []}, {SESSION: []}]
#: What a write accepts: a cookie session only with its CSRF token (both, together).
AUTHENTICATED_WRITE: Security = [{BEARER: []}, {API_KEY: []}, {SESSION: [], CSRF: []}]
PUBLIC: Security = []


def security_schemes(session_cookie: str) -> dict[str, Any]:
    """The credentials Shoal accepts, as OpenAPI security schemes."""
    return {
        BEARER: HttpSecurityScheme(scheme="bearer", bearer_format="JWT"),
        API_KEY: APIKeySecurityScheme(name="X-API-Key", in_="header"),
        SESSION: APIKeySecurityScheme(name=session_cookie, in_="cookie"),
        CSRF: APIKeySecurityScheme(name=CSRF_HEADER, in_="header"),
    }


#: quart-schema's scheme classes have no description field; these are added after.
SECURITY_DESCRIPTIONS = {
    BEARER: "An access token from `POST /auth/login` (or `/auth/refresh`), sent as "
    "`Authorization: Bearer <token>`.",
    API_KEY: "An API key made with `shoal apikeys create`, sent as `X-API-Key: <key>`.",
    SESSION: 'A browser session from `POST /auth/login` with `"mode": "cookie"`: an '
    "HttpOnly cookie the browser sends by itself (this page cannot set it; log in "
    'with "Try it out" and its requests carry it).',
    CSRF: f"The `csrf_token` of a cookie-mode login, sent as `{CSRF_HEADER}` with the "
    "session cookie on POST, PATCH, PUT and DELETE.",
}


def ref(name: str, kind: str = "schemas") -> Schema:
    """A ``$ref`` to ``#/components/<kind>/<name>``."""
    return {"$ref": f"#/components/{kind}/{name}"}


_DAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"

LINK: Schema = {
    "type": "object",
    "description": "A link, relative to the API root, as Eve writes them.",
    "required": ["title", "href"],
    "properties": {"title": {"type": "string"}, "href": {"type": "string"}},
}

ERROR_DETAIL: Schema = {
    "type": "object",
    "description": "What went wrong: the status and a message; a 500 adds `request_id` "
    "(quote it when reporting the error).",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "description": "The HTTP status code."},
        "message": {"type": "string"},
        "request_id": {
            "type": "string",
            "description": "The request's id (`X-Request-ID`), on a 500.",
        },
    },
}

ERROR: Schema = {
    "type": "object",
    "description": 'Every error: `{"_status": "ERR", "_error": {"code", "message"}}`.',
    "required": ["_status", "_error"],
    "properties": {
        "_status": {"const": "ERR"},
        "_error": ref("ErrorDetail"),
    },
}

SCHEMAS: dict[str, Schema] = {
    "ObjectId": {
        "type": "string",
        "pattern": "^[0-9a-fA-F]{24}$",
        "description": "A MongoDB ObjectId: 24 hexadecimal digits.",
        "examples": ["6650f1c2a3b4c5d6e7f80912"],
    },
    "HttpDate": {
        "type": "string",
        "pattern": rf"^({_DAYS}), \d{{2}} ({_MONTHS}) \d{{4}} \d{{2}}:\d{{2}}:\d{{2}} GMT$",
        "description": "An RFC 1123 date, as HTTP and Eve write dates.",
        "examples": ["Tue, 24 Nov 2026 10:00:00 GMT"],
    },
    "ETag": {
        "type": "string",
        "description": "The document's current ETag; send it back in `If-Match` to change it.",
    },
    "Link": LINK,
    "ItemLinks": {
        "type": "object",
        "required": ["self"],
        "properties": {
            "self": ref("Link"),
            "parent": ref("Link"),
            "collection": ref("Link"),
        },
    },
    "PageLinks": {
        "type": "object",
        "required": ["parent", "self"],
        "properties": {name: ref("Link") for name in ("parent", "self", "next", "prev", "last")},
    },
    "PageMeta": {
        "type": "object",
        "required": ["max_results"],
        "properties": {
            "page": {
                "type": "integer",
                "minimum": 1,
                "description": "The page number; absent on a page read by `cursor`.",
            },
            "max_results": {"type": "integer", "minimum": 1},
            "total": {
                "type": "integer",
                "minimum": 0,
                "description": "Matching documents; absent when counting is off (`count=false`).",
            },
        },
    },
    "AckLinks": {
        "type": "object",
        "description": "The written document's own link.",
        "required": ["self"],
        "properties": {"self": ref("Link")},
        "additionalProperties": False,
    },
    "WriteAck": {
        "type": "object",
        "description": "What a write answers for one document.",
        "required": ["_status", "_id", "_created", "_updated", "_etag", "_links"],
        "properties": {
            "_status": {"const": "OK"},
            "_id": ref("ObjectId"),
            "_created": ref("HttpDate"),
            "_updated": ref("HttpDate"),
            "_etag": ref("ETag"),
            "_links": ref("AckLinks"),
        },
        "additionalProperties": False,
    },
    "BulkWriteAck": {
        "type": "object",
        "description": "What a bulk insert (a JSON array) answers: one ack per document.",
        "required": ["_status", "_items"],
        "properties": {
            "_status": {"const": "OK"},
            "_items": {"type": "array", "items": ref("WriteAck")},
        },
    },
    "WriteCounts": {
        "type": "object",
        "description": "What a write by filter answers: the documents it matched and "
        "those it changed (`_modified`) or deleted (`_deleted`).",
        "required": ["_status", "_matched"],
        "properties": {
            "_status": {"const": "OK"},
            "_matched": {"type": "integer", "minimum": 0},
            "_modified": {"type": "integer", "minimum": 0},
            "_deleted": {"type": "integer", "minimum": 0},
        },
    },
    "UpdateOperators": {
        "type": "object",
        "description": "Update operators, applied in one atomic write: each maps field "
        "paths (dotted for nested fields) to values. The document after the update must "
        "still match the schema (else 422, and the update is undone).",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            name: {"type": "object", "minProperties": 1}
            for name in (
                "$set",
                "$unset",
                "$inc",
                "$min",
                "$max",
                "$push",
                "$pull",
                "$addToSet",
                "$currentDate",
            )
        },
    },
    "ErrorDetail": ERROR_DETAIL,
    "Error": ERROR,
    "ValidationError": {
        "type": "object",
        "description": "A document that breaks its resource's schema: `_issues` maps each "
        "field (dotted for nested ones) to its problem. A bulk insert reports each "
        "document in `_items`, in order, and inserts none of them.",
        "required": ["_status", "_error"],
        "properties": {
            "_status": {"const": "ERR"},
            "_error": ref("ErrorDetail"),
            "_issues": ref("Issues"),
            "_items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["_status"],
                    "properties": {
                        "_status": {"enum": ["OK", "ERR"]},
                        "_issues": ref("Issues"),
                    },
                },
            },
        },
    },
    "Issues": {
        "type": "object",
        "description": "Each field (dotted for nested ones) and its problem.",
        "additionalProperties": {"type": "string"},
    },
    "FilterValidationError": {
        "type": "object",
        "description": "A write by filter refused, nothing written: `_issues` maps a field "
        "to its problem when no document may take the change, or the `_id` of each "
        "document the change would break to that document's problems.",
        "required": ["_status", "_error"],
        "properties": {
            "_status": {"const": "ERR"},
            "_error": ref("ErrorDetail"),
            "_issues": {
                "type": "object",
                "additionalProperties": {"anyOf": [{"type": "string"}, ref("Issues")]},
            },
        },
    },
    "Home": {
        "type": "object",
        "required": ["_links"],
        "properties": {
            "_links": {
                "type": "object",
                "required": ["child"],
                "properties": {"child": {"type": "array", "items": ref("Link")}},
            }
        },
    },
}


def _header(description: str, schema: Schema | None = None) -> Schema:
    return {"description": description, "schema": schema or {"type": "string"}}


HEADERS: dict[str, Schema] = {
    "ETag": _header('The representation\'s ETag, quoted (`"3a9c..."`).'),
    "Last-Modified": _header("When the document last changed (RFC 1123)."),
    "Location": _header("The URL of the created document (the first one, for a bulk insert)."),
    "X-Total-Count": _header(
        "Matching documents (absent when counting is off).", {"type": "integer", "minimum": 0}
    ),
    "Retry-After": _header("Seconds to wait before retrying.", {"type": "integer", "minimum": 0}),
    "WWW-Authenticate": _header("The authentication challenge (`Bearer`)."),
    "Idempotent-Replayed": _header(
        "`true` when this is the kept answer to an earlier request with the same `Idempotency-Key`."
    ),
    "Preference-Applied": _header("The `Prefer` preferences this answer honoured."),
    "X-Request-ID": _header(
        "The request's id (the client's own `X-Request-ID` when it sent a usable one); "
        "every answer carries it, and the server's log lines name it."
    ),
    "RateLimit-Limit": _header(
        "Requests the closest limit allows per window.", {"type": "integer", "minimum": 0}
    ),
    "RateLimit-Remaining": _header(
        "Requests left in that limit's window.", {"type": "integer", "minimum": 0}
    ),
    "RateLimit-Reset": _header(
        "Seconds until that limit is whole again.", {"type": "integer", "minimum": 0}
    ),
}

#: What every answer of a route a rate limit counts carries.
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def header_ref(name: str) -> Schema:
    return ref(name, "headers")


def query_parameter(name: str, description: str, schema: Schema) -> Schema:
    """An optional query parameter; sent empty (``?page=``), it takes its default."""
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": schema,
        "allowEmptyValue": True,
    }


def header_parameter(name: str, description: str) -> Schema:
    """An optional request header holding a string."""
    return {"name": name, "in": "header", "description": description, "schema": {"type": "string"}}


PARAMETERS: dict[str, Schema] = {
    "where": query_parameter(
        "where",
        'A MongoDB filter as JSON, e.g. `{"year": {"$gte": 2000}}`. '
        "Comparison, logical, element, array and geospatial operators are allowed; "
        "`$where`, `$function`, `$accumulator`, `$expr` and unknown operators answer 400, "
        "and `$regex` is refused unless the resource allows it.",
        {"type": "string"},
    ),
    "sort": query_parameter(
        "sort",
        'Sort keys: `year,-title` or Eve\'s `[("year", 1), ("title", -1)]`.',
        {"type": "string"},
    ),
    "projection": query_parameter(
        "projection",
        'Fields to include (`{"title": 1}`) or exclude (`{"tags": 0}`), as JSON. '
        "`_id`, `_created`, `_updated` and `_etag` are always returned.",
        {"type": "string"},
    ),
    "page": query_parameter(
        "page", "The page to return, from 1.", {"type": "integer", "minimum": 1}
    ),
    "If-None-Match": {
        "name": "If-None-Match",
        "in": "header",
        "description": "ETags of the copy you hold: when one is current the answer is 304 "
        "with no body.",
        "schema": {"type": "string"},
    },
    "If-Modified-Since": {
        "name": "If-Modified-Since",
        "in": "header",
        "description": "An RFC 1123 date: 304 when the document has not changed since "
        "(ignored when `If-None-Match` is sent).",
        "schema": {"type": "string"},
    },
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "Any unique string (a UUID): send the same write again with the same "
        "key and it is done once; the retry gets the first answer, with "
        "`Idempotent-Replayed: true`. The same key with another body: 422; while the first "
        "is still running: 409.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    },
    "If-Match": {
        "name": "If-Match",
        "in": "header",
        "required": True,
        "description": "The document's current `_etag` (or `*`). Missing: 428; no longer "
        "current (someone changed the document since you read it): 412. The check is "
        "atomic in the database write, so of two writers with the same ETag one wins.",
        "schema": {"type": "string"},
    },
    "cursor": query_parameter(
        "cursor",
        "Keyset pagination: empty for the first page, then the cursor `_links.next` "
        "carries. Deep pages cost what the first costs; a cursor works only with the "
        "`where`, `sort` and `projection` it was made for. Not with `page`.",
        {"type": "string"},
    ),
    "PreferReturn": {
        "name": "Prefer",
        "in": "header",
        "description": "`return=representation`: answer with the stored document; "
        "`return=minimal`: answer 204 with the headers only.",
        "schema": {"type": "string"},
    },
    "PreferCount": {
        "name": "Prefer",
        "in": "header",
        "description": "`count=none` (no total), `count=estimated` (the collection's own "
        "count, without a filter) or `count=exact`.",
        "schema": {"type": "string"},
    },
    "item_id": {
        "name": "item_id",
        "in": "path",
        "required": True,
        "description": "The document's `_id`.",
        "schema": ref("ObjectId"),
    },
}


def _error(description: str, *, schema: str = "Error", headers: tuple[str, ...] = ()) -> Schema:
    return {
        "description": description,
        "headers": {name: header_ref(name) for name in (*headers, "X-Request-ID")},
        "content": {"application/json": {"schema": ref(schema)}},
    }


RESPONSES: dict[str, Schema] = {
    "Error": _error("An error, in Shoal's error envelope."),
    "NotModified": {
        "description": "Not modified: the copy you hold (`If-None-Match`) is current.",
        "headers": {"ETag": header_ref("ETag")},
    },
    "BadRequest": _error("Bad request: a query parameter, header or body that cannot be used."),
    "Unauthorized": _error(
        "Not authenticated: no credentials where they are needed, or credentials that are "
        "invalid, expired or revoked.",
        headers=("WWW-Authenticate",),
    ),
    "Forbidden": _error("Forbidden: the caller's roles do not allow this."),
    "NotFound": _error("No document with this id (or not one the caller may see)."),
    "Conflict": _error("Conflict: a value that must be unique is taken."),
    "PreconditionFailed": _error(
        "Precondition failed: the `If-Match` ETag is no longer current; read the document "
        "again and retry."
    ),
    "PayloadTooLarge": _error("The request body is larger than the server accepts."),
    "UnsupportedMediaType": _error("The body is not JSON (`Content-Type: application/json`)."),
    "UnprocessableEntity": _error(
        "The document breaks the resource's schema.", schema="ValidationError"
    ),
    "UnprocessableFilter": _error(
        "A document the filter matches would break the resource's schema.",
        schema="FilterValidationError",
    ),
    "PreconditionRequired": _error("`If-Match` is required to change a document."),
    "TooManyRequests": _error(
        "Too many requests: slow down.", headers=("Retry-After", *RATE_LIMIT_HEADERS)
    ),
    "NotImplemented": _error(
        "The database cannot do this (a change stream needs a MongoDB replica set)."
    ),
    "ServiceUnavailable": _error(
        "A dependency (MongoDB, Redis) is unreachable right now; retry later.",
        headers=("Retry-After",),
    ),
}

#: The status each shared error response stands for.
ERROR_STATUSES: dict[int, str] = {
    304: "NotModified",
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "UnprocessableEntity",
    428: "PreconditionRequired",
    429: "TooManyRequests",
    501: "NotImplemented",
    503: "ServiceUnavailable",
}


def error_schema() -> Schema:
    """The error envelope, self-contained (for quart-schema documented routes)."""
    schema = copy.deepcopy(ERROR)
    schema["properties"]["_error"] = copy.deepcopy(ERROR_DETAIL)
    return schema


def shared_components() -> dict[str, dict[str, Schema]]:
    """Fresh copies of every shared component, keyed by component kind."""
    return copy.deepcopy(
        {
            "schemas": SCHEMAS,
            "headers": HEADERS,
            "parameters": PARAMETERS,
            "responses": RESPONSES,
        }
    )


def resolved_parameter(name: str) -> Schema:
    """A shared parameter's definition itself (to change it for one operation)."""
    return copy.deepcopy(PARAMETERS[name])
