"""The OpenAPI document's options, and the document of an app."""

from __future__ import annotations

from typing import Any

from quart import Quart

from ..config import Settings
from . import data_api
from .components import security_schemes
from .provider import ShoalOpenAPIProvider

OPENAPI_PATH = "/openapi.json"

DEFAULT_DESCRIPTION = """\
A REST data API for MongoDB, in Eve's wire format.

- **Lists** (`GET /<resource>`) answer `{"_items", "_meta", "_links"}`; filter with
  `where` (MongoDB JSON), order with `sort`, pick fields with `projection`, page with
  `page` and `max_results`.
- **Documents** carry `_id`, `_etag`, `_created`, `_updated` (RFC 1123 dates) and `_links`.
- **Writes**: `POST` takes one document or an array (all or none are inserted);
  `PATCH`, `PUT` and `DELETE` need the document's current ETag in `If-Match`
  (428 without it, 412 when someone changed the document since you read it).
- **Caching**: send `If-None-Match` with an ETag you hold; 304 when it is current.
- **Errors**: `{"_status": "ERR", "_error": {"code", "message"}}`, with `_issues`
  (field → problem) on a 422.
- **Authentication**: methods that are not public need a bearer token
  (`POST /auth/login`), an API key (`X-API-Key`) or a browser session (a cookie-mode
  login; writes also need its `X-CSRF-Token`); use **Authorize** to set a token or a
  key for "Try it out".
"""


def quart_schema_options(settings: Settings) -> dict[str, Any]:
    """QuartSchema's arguments for this config: the document's info, servers,
    security schemes and provider; quart-schema's own UI pages stay off
    (``ApiDocs`` serves ``/docs``)."""
    docs = settings.docs
    info: dict[str, Any] = {
        "title": docs.title,
        "version": docs.version,
        "description": docs.description if docs.description is not None else DEFAULT_DESCRIPTION,
    }
    servers = [server.model_dump(exclude_none=True) for server in docs.servers]
    return {
        "openapi_path": OPENAPI_PATH if docs.openapi else None,
        "swagger_ui_path": None,
        "redoc_ui_path": None,
        "scalar_ui_path": None,
        "info": info,
        "servers": servers or None,
        "security_schemes": {
            **security_schemes(settings.auth.session_cookie),
            **(data_api.SECURITY_SCHEMES if settings.data_api.enabled else {}),
        },
        "openapi_provider_class": ShoalOpenAPIProvider,
    }


def openapi_document(app: Quart) -> dict[str, Any]:
    """The app's OpenAPI document (built on first use, then kept); do not modify it."""
    document: dict[str, Any] = app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return document
