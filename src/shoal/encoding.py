"""The app's JSON provider: orjson, speaking MongoDB's types in Eve's format.

- ``ObjectId`` → its 24-hex string;
- ``datetime`` → RFC 1123 (``Tue, 24 Nov 2026 10:00:00 GMT``), as Eve renders dates;
- ``Decimal128`` and ``Decimal`` → their exact decimal string (a float would round).

Anything else falls back to the provider quart-schema installed (pydantic models,
dataclasses), so this provider is installed after quart-schema.
"""

from __future__ import annotations

import decimal
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, cast

import orjson
from bson import Decimal128, ObjectId
from flask.json.provider import JSONProvider
from quart import Quart, Response

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def http_date(value: datetime) -> str:
    """RFC 1123 date as HTTP and Eve use it; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_datetime(value.astimezone(UTC), usegmt=True)


class OrjsonProvider(JSONProvider):
    """orjson-backed JSON for requests and responses."""

    mimetype = "application/json"

    def __init__(self, app: Quart) -> None:
        super().__init__(app)
        self._fallback = app.json  # quart-schema's provider, if installed first

    def _default(self, value: Any) -> Any:
        if isinstance(value, ObjectId):
            return str(value)
        if isinstance(value, datetime):
            return http_date(value)
        if isinstance(value, Decimal128):
            return str(value.to_decimal())
        if isinstance(value, decimal.Decimal):
            return str(value)
        if isinstance(value, set | frozenset):
            return list(value)
        fallback = getattr(self._fallback, "default", None)
        if fallback is not None:
            return fallback(value)
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    def dumps_bytes(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self._default, option=_OPTIONS)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self.dumps_bytes(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        response_class = cast(type[Response], self._app.response_class)
        return response_class(self.dumps_bytes(obj), mimetype=self.mimetype)


def install_json_provider(app: Quart) -> None:
    app.json = OrjsonProvider(app)
