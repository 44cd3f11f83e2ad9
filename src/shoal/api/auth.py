"""``/auth``: log in (token or browser-cookie mode), refresh, log out, whoami."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from quart import Blueprint, Response, current_app, request
from quart_schema import document_request, document_response

from ..auth import CSRF_HEADER, get_auth
from ..http.json import json_response, no_content, read_model
from ..http.net import is_secure
from ..openapi import document_no_content

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
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class SessionResponse(BaseModel):
    csrf_token: str = Field(description=f"Send it as {CSRF_HEADER} on POST/PATCH/PUT/DELETE.")
    expires_in: int


class WhoAmI(BaseModel):
    id: str
    name: str
    roles: list[str]
    kind: Literal["user", "apikey"]
    via: Literal["bearer", "apikey", "session", "password"]


@auth.post("/login")
@document_request(LoginRequest)
@document_response(TokenResponse, 200)
async def login() -> Response:
    body = await read_model(LoginRequest)
    service = get_auth(current_app)
    user = await service.login(body.username, body.password)
    if body.mode == "token":
        return json_response(await service.issue_tokens(user))
    session_id, csrf = await service.start_session(user)
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
    return is_secure(request, get_auth(current_app).trusted_proxies)


@auth.post("/refresh")
@document_request(RefreshRequest)
@document_response(TokenResponse, 200)
async def refresh() -> Response:
    body = await read_model(RefreshRequest)
    return json_response(await get_auth(current_app).refresh(body.refresh_token))


@auth.post("/logout")
@document_request(LogoutRequest)
@document_no_content(204, "Logged out.")
async def logout() -> Response:
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
@document_response(WhoAmI, 200)
async def me() -> Response:
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
