"""One renderer for every error: ``ApiError`` values, HTTP exceptions, and
anything unexpected (a 500 that quotes the request id, never a traceback)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from quart import Quart, Response, current_app
from werkzeug.exceptions import HTTPException

from ..errors import ApiError, error_body
from .call import Reply
from .json import json_reply
from .request_id import request_id

logger = logging.getLogger("shoal.errors")


def error_response(
    status: int,
    message: str,
    *,
    issues: Mapping[str, Any] | list[Any] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = error_body(status, message, **extra)
    if issues is not None:
        body["_issues"] = issues
    response = cast(Response, current_app.json.response(body))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error_document(error: ApiError, request_id: str | None) -> dict[str, Any]:
    """The body of ``error``'s answer (a 5xx quotes the request id)."""
    extra = {"request_id": request_id} if error.status >= 500 else {}
    body = error_body(error.status, error.message, **extra)
    if error.issues is not None:
        body["_issues"] = error.issues
    return body


def error_reply(error: ApiError, request_id: str | None) -> Reply:
    """``error``'s answer, as the lean path sends it (the same as Quart's)."""
    reply = json_reply(_error_document(error, request_id), error.status)
    for name, value in error.headers.items():
        reply.headers[name] = value
    return reply


def unexpected_reply(error: Exception, request_id: str | None) -> Reply:
    """A 500 for what went wrong unexpectedly: logged with its traceback, the
    client told the request id only."""
    logger.error("unhandled exception", exc_info=(type(error), error, error.__traceback__))
    return json_reply(error_body(500, UNEXPECTED, request_id=request_id), 500)


#: The message of an unexpected error's 500.
UNEXPECTED = "Internal server error; quote the request id when reporting it."


async def _handle_api_error(error: ApiError) -> Response:
    body = _error_document(error, request_id())
    response = cast(Response, current_app.json.response(body))
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


async def _handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    message = error.description or error.name
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    return error_response(status, message, headers=headers)


async def _handle_unexpected(error: Exception) -> Response:
    logger.error("unhandled exception", exc_info=(type(error), error, error.__traceback__))
    return error_response(500, UNEXPECTED, request_id=request_id())


def register_error_handlers(app: Quart) -> None:
    """Route every error, expected or not, through the JSON error renderer."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
