"""JSON in and out: the app's JSON provider, JSON responses and request bodies.

The provider is orjson, speaking MongoDB's types in Eve's format:

- ``ObjectId`` → its 24-hex string;
- ``datetime`` → RFC 1123 (``Tue, 24 Nov 2026 10:00:00 GMT``), as Eve renders dates;
- ``Decimal128`` and ``Decimal`` → their exact decimal string (a float would round);
- the other BSON types (binary data, regular expressions, timestamps, DBRefs,
  min/max keys, code) → MongoDB's relaxed Extended JSON (``{"$binary": …}``).

Anything else falls back to the provider quart-schema installed (pydantic models,
dataclasses), so this provider is installed after quart-schema.
"""

from __future__ import annotations

import decimal
import re
from datetime import datetime
from typing import Any, TypeVar, cast

import orjson
from bson import DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp, json_util
from bson.binary import Binary
from bson.code import Code
from flask.json.provider import JSONProvider
from pydantic import BaseModel, ValidationError
from quart import Quart, Response, current_app

from ..dates import http_date
from ..errors import BadRequest, UnprocessableEntity, UnsupportedMediaType
from .call import Call, Reply, ReplyHeaders, current_call

M = TypeVar("M", bound=BaseModel)

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
#: Written as relaxed Extended JSON (orjson has no encoding of its own for them).
_EXTENDED = (bytes, Binary, Regex, re.Pattern, Timestamp, DBRef, MinKey, MaxKey, Code, Int64)


def _document_default(value: Any) -> Any:
    """MongoDB's values as Eve writes them (see the module's docstring)."""
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
    if isinstance(value, _EXTENDED):
        return json_util.default(value, json_options=json_util.RELAXED_JSON_OPTIONS)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode(obj: Any) -> bytes:
    """``obj`` (documents, envelopes) as JSON bytes, MongoDB's values as Eve writes them."""
    return orjson.dumps(obj, default=_document_default, option=_OPTIONS)


class OrjsonProvider(JSONProvider):
    """orjson-backed JSON for requests and responses."""

    mimetype = "application/json"

    def __init__(self, app: Quart) -> None:
        super().__init__(app)
        self._fallback = app.json  # quart-schema's provider, if installed first

    def _default(self, value: Any) -> Any:
        try:
            return _document_default(value)
        except TypeError:
            fallback = getattr(self._fallback, "default", None)
            if fallback is not None:
                return fallback(value)
            raise

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


def no_content(status: int = 204) -> Response:
    """An empty answer (204, 304): no body, so no Content-Type either."""
    response = Response(b"", status=status)
    del response.headers["Content-Type"]
    return response


def json_response(body: Any, status: int = 200) -> Response:
    response = cast(Response, current_app.json.response(body))
    response.status_code = status
    return response


def json_reply(body: Any, status: int = 200) -> Reply:
    """``body`` as a JSON answer (``encode``)."""
    return Reply(status, encode(body), ReplyHeaders({"Content-Type": "application/json"}))


async def read_json(call: Call | None = None) -> Any:
    """The JSON body of ``call`` (the current Quart request's by default);
    415, 413 or 400 when it is not usable."""
    call = call or current_call()
    mimetype = call.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send JSON with Content-Type: application/json (got {mimetype or 'none'})"
        )
    data = await call.body()
    if not data.strip():
        raise BadRequest("the request body is empty; send a JSON document")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the request body is not valid JSON: {error}") from None


async def read_model(model: type[M]) -> M:
    """The JSON body validated as ``model``; 422 with ``_issues`` if it is not."""
    data = await read_json()
    try:
        return model.model_validate(data)
    except ValidationError as error:
        issues = {
            ".".join(str(part) for part in item["loc"]) or "(body)": item["msg"]
            for item in error.errors(include_input=False, include_url=False)
        }
        raise UnprocessableEntity("the request body is not valid", issues=issues) from None
