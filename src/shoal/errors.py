"""Errors are values with a status and a message; one handler renders them all.

Every 4xx/5xx leaves Shoal as::

    {"_status": "ERR", "_error": {"code": 404, "message": "..."}}

with ``_issues`` added for validation errors (422). ``shoal.http.errors``
renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.issues = issues
        self.headers = dict(headers or {})
        #: A name for the error where an API defines one (the Data API's
        #: ``error_code``); Shoal's own envelope does not show it.
        self.code = code


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
