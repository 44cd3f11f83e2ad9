"""The Atlas Data API v1 drop-in, so that a Data API client moves by changing
its base URL::

    POST /action/<action>                                  always
    POST /app/<app_id>/endpoint/data/v1/action/<action>    with data_api.app_id
    POST /app/<app_id>/endpoint/data/beta/action/<action>  the same, as beta

A GET with the same body is taken too, as some of the hosted service's own
examples send one; other methods get 405.

Credentials: ``Authorization: Bearer <token>``, a Shoal API key in ``apiKey``
or ``api-key`` (or ``X-API-Key``), or a Shoal user's name and password in the
``email`` and ``password`` headers. The body is read as Extended JSON whatever
its ``Content-Type``; ``Accept: application/ejson`` gets canonical EJSON back,
anything else plain JSON. Every error of this blueprint and of the request
policies in front of it (authentication, rate limits, idempotency) is the Data
API's ``{"error", "error_code", "link"}`` (``link`` while the docs page is on);
the answers of the middleware before any route is matched (the body deadline's
408, the admission queue's 503) are Shoal's own error body.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, Response, current_app, request
from quart_schema import hide
from werkzeug.exceptions import HTTPException

from ..auth import Auth, CredentialHeaders, get_auth
from ..config import get_settings
from ..dataapi import (
    ACTIONS,
    BLUEPRINT,
    EJSON_MEDIA_TYPE,
    JSON_MEDIA_TYPE,
    Action,
    DataApi,
    hosted_prefix,
    parse_request,
    read_body,
    render_ejson,
    render_json,
    routes,
    unknown_action,
)
from ..dataapi.endpoints import HOSTED_VERSIONS
from ..errors import ApiError, BadRequest, NotFound
from ..http.call import current_call
from ..http.net import base_url
from ..http.request_id import request_id

logger = logging.getLogger("shoal.errors")

#: The hosted service's credential headers, mapped onto Shoal's own.
CREDENTIALS = CredentialHeaders(
    api_key=("apiKey", "api-key", "X-API-Key"), login=("email", "password"), cookie=False
)
#: The ``error_code`` of an error that does not name its own, by status.
ERROR_CODES = {
    400: "InvalidParameter",
    401: "InvalidSession",
    403: "NoMatchingRuleFound",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "DuplicateKey",
    413: "RequestTooLarge",
    422: "InvalidParameter",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}
_OTHER_METHODS = ["GET", "PUT", "PATCH", "DELETE"]  # GET: of paths that are not actions


def wants_ejson() -> bool:
    """``application/ejson`` named in ``Accept`` (a wildcard does not count)."""
    return any(
        value.split(";", 1)[0].strip().lower() == EJSON_MEDIA_TYPE and quality > 0
        for value, quality in request.accept_mimetypes
    )


def render(body: Any, status: int = 200) -> Response:
    if wants_ejson():
        return Response(render_ejson(body), status=status, content_type=EJSON_MEDIA_TYPE)
    return Response(render_json(body), status=status, content_type=JSON_MEDIA_TYPE)


def error_response(
    status: int, message: str, code: str | None, headers: dict[str, str] | None = None
) -> Response:
    """An error as the Data API wrote them; ``link`` points at the docs page."""
    body: dict[str, Any] = {"error": message, "error_code": code or ERROR_CODES.get(status)}
    if body["error_code"] is None:
        body["error_code"] = "InternalServerError" if status >= 500 else "InvalidParameter"
    settings = get_settings(current_app)
    if settings.docs.enabled:
        body["link"] = f"{base_url(current_call(), settings.trusted_proxies)}docs"
    if status >= 500:
        body["request_id"] = request_id()
    response = Response(render_json(body), status=status, content_type=JSON_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def _api_error(error: ApiError) -> Response:
    message = error.message
    if error.status == 401:
        # The hosted service's wording, with Shoal's reason after it.
        message = f"invalid session: {message}"
    headers = {k: v for k, v in error.headers.items() if k.lower() != "www-authenticate"}
    return error_response(error.status, message, error.code, headers)


async def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    return error_response(status, error.description or error.name, None, headers)


async def _unexpected(error: Exception) -> Response:
    logger.error("unhandled exception", exc_info=(type(error), error, error.__traceback__))
    return error_response(
        500,
        "The Data API encountered an internal error and could not complete the request; "
        "quote the request id when reporting it.",
        "InternalServerError",
    )


def action_view(data_api: DataApi, action: Action) -> Any:
    async def view() -> Response:
        auth = get_auth(current_app)
        principal = await auth.current_principal()
        if principal is None:
            raise BadRequest("no authentication methods were specified", code="InvalidParameter")
        data = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        body = read_body(data)
        parsed = parse_request(action, body)
        result = await data_api.run(parsed, principal, auth.accounts.user_data)
        return render(result.body, result.status)

    view.__name__ = f"data_api_{action.name}"
    return view


def _not_served(name: str) -> ApiError:
    """A path under ``.../action/`` that is not an action's, or not with this method."""
    if name in ACTIONS:
        return ApiError(
            f"{name} takes POST, not {request.method}",
            status=405,
            headers={"Allow": "GET, HEAD, POST"},
            code="MethodNotAllowed",
        )
    return unknown_action(name)


def data_api_blueprint(data_api: DataApi, auth: Auth) -> Blueprint:
    """The blueprint of every action route the config serves."""
    blueprint = Blueprint(BLUEPRINT, __name__)
    auth.accept_credentials(BLUEPRINT, CREDENTIALS)
    blueprint.register_error_handler(ApiError, _api_error)
    blueprint.register_error_handler(HTTPException, _http_error)
    blueprint.register_error_handler(Exception, _unexpected)

    for route in routes(data_api.settings):
        view = action_view(data_api, route.action)
        if not route.documented:
            view = hide(view)
        blueprint.add_url_rule(
            route.path, endpoint=route.endpoint, view_func=view, methods=[route.method]
        )

    @blueprint.route("/action/<path:rest>", methods=["POST", *_OTHER_METHODS])
    @hide
    async def unknown(rest: str) -> Response:
        raise _not_served(rest)

    app_id = data_api.settings.app_id
    if app_id is not None:

        @blueprint.route("/app/<path:rest>", methods=["POST", *_OTHER_METHODS])
        @hide
        async def unknown_hosted(rest: str) -> Response:
            parts = rest.split("/")
            if parts[0] != app_id:
                raise NotFound(f"cannot find app using Client App ID '{parts[0]}'")
            shaped = (
                len(parts) >= 6
                and parts[1:3] == ["endpoint", "data"]
                and parts[3] in HOSTED_VERSIONS
                and parts[4] == "action"
            )
            if not shaped:
                raise NotFound(
                    f"{request.path} is not a Data API path; the actions are at "
                    f"{hosted_prefix(app_id)}/action/<action>"
                )
            raise _not_served("/".join(parts[5:]))

    return blueprint
