"""Errors are values with a status and a message; one handler renders them all.

Every 4xx/5xx leaves Shoal as::

    {"_status": "ERR", "_error": {"code": 404, "message": "..."}}

with ``_issues`` added for validation errors (422).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from quart import Quart, Response, current_app
from werkzeug.exceptions import HTTPException

logger = logging.getLogger("shoal.errors")


class ApiError(Exception):
    """An error a client sees: an HTTP status, a message and optional details."""

    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        issues: Mapping[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.issues = issues
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PreconditionFailed(ApiError):
    status = 412


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class UnprocessableEntity(ApiError):
    status = 422


class PreconditionRequired(ApiError):
    status = 428


class TooManyRequests(ApiError):
    status = 429


class ServiceUnavailable(ApiError):
    """A dependency is down; the client may retry after ``retry_after`` seconds."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"code": status, "message": message}
    error.update(extra)
    return {"_status": "ERR", "_error": error}


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


async def _handle_api_error(error: ApiError) -> Response:
    extra = {}
    if error.status >= 500:
        from .edge import request_id

        extra["request_id"] = request_id()
    return error_response(
        error.status, error.message, issues=error.issues, headers=error.headers, **extra
    )


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
    from .edge import request_id as current_request_id

    request_id = current_request_id()
    logger.error("unhandled exception", exc_info=(type(error), error, error.__traceback__))
    return error_response(
        500,
        "Internal server error; quote the request id when reporting it.",
        request_id=request_id,
    )


def register_error_handlers(app: Quart) -> None:
    """Route every error, expected or not, through the JSON error renderer."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
