"""``/auth``: log in (token or browser-cookie mode), refresh, log out, whoami."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, RootModel
from quart import Blueprint, Response, current_app, request
from quart_schema import document_request, document_response, security_scheme

from ..auth import CSRF_HEADER, get_auth
from ..http.call import current_call
from ..http.json import json_response, no_content, read_model
from ..http.net import is_secure
from ..openapi import POLICY_ERRORS, document_errors, document_no_content, optional_body
from ..openapi.components import AUTHENTICATED_READ, AUTHENTICATED_WRITE, PUBLIC

auth = Blueprint("auth", __name__, url_prefix="/auth")

CSRF_COOKIE = "shoal_csrf"


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    mode: Literal["token", "cookie"] = Field(
        default="token",
        description="token: a bearer access token and a refresh token; "
        "cookie: a server-side browser session (HttpOnly cookie + CSRF token).",
    )


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=512)


class TokenResponse(BaseModel):
    """A new token pair (token mode)."""

    access_token: str = Field(description="Send it as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds the access token is valid.")
    refresh_token: str = Field(description="Trade it once for a new pair at /auth/refresh.")
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid.")

    model_config = {"extra": "forbid"}


class SessionResponse(BaseModel):
    """A browser session (cookie mode): the session itself is the HttpOnly
    session cookie set with this answer (`auth.session_cookie`, `shoal_session`
    by default), with the `shoal_csrf` cookie beside it."""

    csrf_token: str = Field(description=f"Send it as {CSRF_HEADER} on POST/PATCH/PUT/DELETE.")
    expires_in: int = Field(description="Seconds the session lasts.")

    model_config = {"extra": "forbid"}


class LoginResponse(RootModel[TokenResponse | SessionResponse]):
    """Logged in: a token pair (`"mode": "token"`, the default) or, with
    `"mode": "cookie"`, a browser session (an HttpOnly session cookie and a
    `shoal_csrf` cookie, in `Set-Cookie`) and its CSRF token."""


class WhoAmI(BaseModel):
    """Who the credentials belong to."""

    id: str
    name: str
    roles: list[str]
    kind: Literal["user", "apikey"]
    via: Literal["bearer", "apikey", "session", "password"]

    model_config = {"extra": "forbid"}


#: What every route with a JSON body may answer about the body itself.
_BODY_ERRORS = (400, 413, 415, 422)


@auth.post("/login")
@security_scheme(PUBLIC)
@document_request(LoginRequest)
@document_response(LoginResponse, 200)
@document_errors(*_BODY_ERRORS, 401, *POLICY_ERRORS)
async def login() -> Response:
    """Log in with a user name and password.

    Token mode (the default) answers a bearer access token and a refresh token;
    cookie mode starts a browser session. Failed logins are counted per user
    name and per address: after `auth.login_slowdown_after` they are slowed, after
    `auth.login_lockout_after` refused with 429 for a while, even with the right
    password.
    """
    body = await read_model(LoginRequest)
    service = get_auth(current_app)
    user, epoch = await service.login(body.username, body.password)
    if body.mode == "token":
        return json_response(await service.issue_tokens(user, epoch))
    session_id, csrf = await service.start_session(user, epoch)
    ttl = service.settings.session_ttl
    response = json_response({"csrf_token": csrf, "expires_in": ttl})
    secure = is_secure_request()
    response.set_cookie(
        service.settings.session_cookie,
        session_id,
        max_age=ttl,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/",
    )
    # Readable by the page's script, which echoes it in the CSRF header.
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=ttl, httponly=False, secure=secure, samesite="Lax", path="/"
    )
    return response


def is_secure_request() -> bool:
    return is_secure(current_call(), get_auth(current_app).trusted_proxies)


@auth.post("/refresh")
@security_scheme(PUBLIC)
@document_request(RefreshRequest)
@document_response(TokenResponse, 200)
@document_errors(*_BODY_ERRORS, 401, *POLICY_ERRORS)
async def refresh() -> Response:
    """Trade a refresh token for a new token pair.

    Each refresh token works once; presenting one again revokes its whole login
    (401). So does a change to the user (disabled, deleted, new roles or password).
    """
    body = await read_model(RefreshRequest)
    return json_response(await get_auth(current_app).refresh(body.refresh_token))


@auth.post("/logout")
@security_scheme(AUTHENTICATED_WRITE)
@optional_body
@document_request(LogoutRequest)
@document_no_content(204, "Logged out.")
@document_errors(*_BODY_ERRORS, 401, 403, *POLICY_ERRORS)
async def logout() -> Response:
    """End what the credentials hold, on every instance at once.

    A bearer token is revoked with every token of its login; a session is ended
    (a session needs its `X-CSRF-Token`, or 403). The body is optional: a
    `refresh_token` of the caller's is revoked too.
    """
    service = get_auth(current_app)
    principal = await service.require_principal()
    refresh_token = None
    if await request.get_data(cache=True):
        refresh_token = (await read_model(LogoutRequest)).refresh_token
    await service.logout(principal, refresh_token)
    response = no_content()
    if principal.via == "session":
        response.delete_cookie(service.settings.session_cookie, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@auth.get("/me")
@security_scheme(AUTHENTICATED_READ)
@document_response(WhoAmI, 200)
@document_errors(401, *POLICY_ERRORS)
async def me() -> Response:
    """Who the credentials belong to (a token, an API key or a session)."""
    principal = await get_auth(current_app).require_principal()
    return json_response(
        {
            "id": principal.id,
            "name": principal.name,
            "roles": sorted(principal.roles),
            "kind": principal.kind,
            "via": principal.via,
        }
    )
