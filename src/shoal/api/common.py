"""What every blueprint needs: JSON bodies in, JSON responses out."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import orjson
from pydantic import BaseModel, ValidationError
from quart import Response, current_app, request

from ..errors import BadRequest, UnprocessableEntity, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)


def no_content(status: int = 204) -> Response:
    """An empty answer (204, 304): no body, so no Content-Type either."""
    response = Response(b"", status=status)
    del response.headers["Content-Type"]
    return response


def base_url() -> str:
    """This server's root URL as the client sees it (TLS at a trusted proxy too)."""
    from ..app import get_settings
    from ..net import is_secure

    secure = is_secure(request, get_settings(current_app).trusted_proxies)
    return f"{'https' if secure else 'http'}://{request.host}/"


def json_response(body: Any, status: int = 200) -> Response:
    response = cast(Response, current_app.json.response(body))
    response.status_code = status
    return response


async def read_json() -> Any:
    """The request's JSON body; 415, 413 or 400 when it is not usable."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send JSON with Content-Type: application/json (got {mimetype or 'none'})"
        )
    data = await request.get_data(cache=False, as_text=False)
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
