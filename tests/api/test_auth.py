"""Authentication and access rules, over HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import get_auth
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.http import create, if_match
from tests.utils.instances import two_served
from tests.utils.settings import TEST_SECRET, example_resources

PASSWORD = "correct horse battery staple"


async def _user(app: Quart, name: str = "editor1", *roles: str) -> None:
    await get_auth(app).accounts.create_user(name, PASSWORD, list(roles or ["editor"]))


async def _login(
    client: Client, name: str = "editor1", password: str = PASSWORD, **extra: Any
) -> Any:
    return await client.post("/auth/login", json={"username": name, "password": password, **extra})


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "shoal",
        "aud": "shoal-api",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
        "sub": "u1",
        "roles": ["editor"],
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


async def _post_book(client: Client, headers: dict[str, str]) -> Any:
    return await client.post("/books", json={"title": "x"}, headers=headers)


# -- logging in --------------------------------------------------------------


async def test_login_gives_tokens_that_work(app: Quart, anonymous: Client) -> None:
    await _user(app)
    response = await _login(anonymous)
    assert response.status_code == 200
    tokens = await response.get_json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"]
    claims = jwt.decode(
        tokens["access_token"], TEST_SECRET, algorithms=["HS256"], audience="shoal-api"
    )
    assert {"iss", "aud", "exp", "iat", "jti", "sub", "roles"} <= set(claims)
    assert claims["roles"] == ["editor"]
    created = await _post_book(anonymous, bearer(tokens["access_token"]))
    assert created.status_code == 201
    me = await anonymous.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["name"] == "editor1"


@pytest.mark.parametrize(("name", "password"), [("editor1", "wrong"), ("nobody", PASSWORD)])
async def test_bad_logins_are_401_alike(
    app: Quart, anonymous: Client, name: str, password: str
) -> None:
    await _user(app)
    response = await _login(anonymous, name, password)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.get_json())["_error"]["message"] == "wrong user name or password"


async def test_login_body_is_validated(anonymous: Client) -> None:
    response = await anonymous.post("/auth/login", json={"username": "editor1"})
    assert response.status_code == 422
    assert "password" in (await response.get_json())["_issues"]
    response = await anonymous.post("/auth/login", data="x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


async def test_disabled_users_cannot_log_in(app: Quart, anonymous: Client) -> None:
    await _user(app)
    accounts = get_auth(app).accounts
    await accounts.storage.update_one(
        accounts.users, {"name": "editor1"}, {"$set": {"disabled": True}}
    )
    assert (await _login(anonymous)).status_code == 401


# -- credentials that are refused -------------------------------------------


async def test_writes_need_credentials(anonymous: Client) -> None:
    response = await _post_book(anonymous, {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="shoal"'
    assert (await response.get_json())["_error"]["code"] == 401


async def test_public_reads_need_none(anonymous: Client) -> None:
    assert (await anonymous.get("/books")).status_code == 200


@pytest.mark.parametrize(
    "authorization", ["Basic ZWQ6cHc=", "Bearer", "Bearer not.a.jwt", "Token abc"]
)
async def test_malformed_authorization_is_401(anonymous: Client, authorization: str) -> None:
    response = await _post_book(anonymous, {"Authorization": authorization})
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (jwt.encode(_claims(exp=int(time.time()) - 60), TEST_SECRET, "HS256"), "expired"),
        (jwt.encode(_claims(), "another-secret-another-secret-xx", "HS256"), "signature"),
        (jwt.encode(_claims(aud="someone-else"), TEST_SECRET, "HS256"), "audience"),
        (jwt.encode(_claims(iss="someone-else"), TEST_SECRET, "HS256"), "issuer"),
        (jwt.encode(_claims(iat=int(time.time()) + 3600), TEST_SECRET, "HS256"), "not valid yet"),
        (jwt.encode(_claims(jti=None), TEST_SECRET, "HS256"), "jti"),
        (jwt.encode(_claims(), TEST_SECRET * 2, "HS512"), "algorithm"),
        (jwt.encode(_claims(), "", "none"), "algorithm"),
    ],
)
async def test_bad_tokens_are_refused(anonymous: Client, token: str, reason: str) -> None:
    response = await _post_book(anonymous, bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert reason in (await response.get_json())["_error"]["message"]


async def test_a_valid_handmade_token_with_the_key_is_accepted(anonymous: Client) -> None:
    # The control for the refusals above: only the one defect differs.
    token = jwt.encode(_claims(), TEST_SECRET, "HS256")
    assert (await _post_book(anonymous, bearer(token))).status_code == 201


async def test_a_role_that_is_not_allowed_is_403(app: Quart, anonymous: Client) -> None:
    token = await token_for(app, "reader")
    response = await _post_book(anonymous, bearer(token))
    assert response.status_code == 403
    assert "editor" in (await response.get_json())["_error"]["message"]


# -- per-resource rules ------------------------------------------------------


@pytest.fixture
async def rules_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    resources = example_resources()
    books = resources["books"]
    books.update(
        public_methods=[],
        public_item_methods=[],
        allowed_roles=[],
        allowed_read_roles=["reader", "editor"],
        allowed_write_roles=["editor"],
    )
    resources["notes"] = {
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
        "auth_field": "owner",
    }
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        yield app


async def test_read_and_write_roles(rules_app: Quart) -> None:
    anonymous = rules_app.test_client()
    assert (await anonymous.get("/books")).status_code == 401
    reader = client_with(rules_app, bearer(await token_for(rules_app, "reader")))
    editor = client_with(rules_app, bearer(await token_for(rules_app, "editor")))
    assert (await reader.get("/books")).status_code == 200
    assert (await reader.post("/books", json={"title": "x"})).status_code == 403
    ack = await create(editor, "books", {"title": "x"})
    assert (await reader.get(f"/books/{ack['_id']}")).status_code == 200
    assert (await anonymous.get(f"/books/{ack['_id']}")).status_code == 401


async def test_owner_restriction(rules_app: Quart) -> None:
    owner_a = client_with(rules_app, bearer(await token_for(rules_app, user_id="a" * 24)))
    owner_b = client_with(rules_app, bearer(await token_for(rules_app, user_id="b" * 24)))
    ack = await create(owner_a, "notes", {"text": "mine"})
    note = await (await owner_a.get(f"/notes/{ack['_id']}")).get_json()
    assert note["owner"] == "a" * 24
    assert (await owner_b.get(f"/notes/{ack['_id']}")).status_code == 404
    assert (await (await owner_b.get("/notes")).get_json())["_items"] == []
    assert (await (await owner_a.get("/notes")).get_json())["_meta"]["total"] == 1
    response = await owner_b.patch(
        f"/notes/{ack['_id']}", json={"text": "hijack"}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 404
    response = await owner_b.delete(f"/notes/{ack['_id']}", headers=if_match(ack["_etag"]))
    assert response.status_code == 404


async def test_a_public_read_is_the_same_for_everyone(settings_factory: SettingsFactory) -> None:
    resources = example_resources()
    resources["notes"] = {
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "resource_methods": ["GET", "POST"],
        "public_methods": ["GET"],
        "auth_field": "owner",
    }
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        owner_a = client_with(app, bearer(await token_for(app, user_id="a" * 24)))
        owner_b = client_with(app, bearer(await token_for(app, user_id="b" * 24)))
        await create(owner_a, "notes", {"text": "from owner_a"})
        await create(owner_b, "notes", {"text": "from owner_b"})
        for caller in (owner_a, owner_b, app.test_client()):
            listed = await (await caller.get("/notes")).get_json()
            assert listed["_meta"]["total"] == 2


async def test_an_anonymous_public_write_cannot_set_the_owner(
    settings_factory: SettingsFactory,
) -> None:
    resources = example_resources()
    resources["notes"] = {
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "resource_methods": ["GET", "POST"],
        "public_methods": ["GET", "POST"],
        "auth_field": "owner",
    }
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        response = await app.test_client().post("/notes", json={"text": "x", "owner": "forged"})
        assert response.status_code == 422
        assert (await response.get_json())["_issues"] == {"owner": "field is set by the server"}


async def test_the_owner_field_cannot_be_forged_or_overwritten(rules_app: Quart) -> None:
    owner_a = client_with(rules_app, bearer(await token_for(rules_app, user_id="a" * 24)))
    response = await owner_a.post("/notes", json={"text": "x", "owner": "b" * 24})
    assert response.status_code == 422
    assert (await response.get_json())["_issues"]["owner"]
    ack = await create(owner_a, "notes", {"text": "x"})
    response = await owner_a.patch(
        f"/notes/{ack['_id']}", json={"owner": "b" * 24}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 422
    response = await owner_a.put(
        f"/notes/{ack['_id']}",
        json={"text": "y", "owner": "b" * 24},
        headers=if_match(ack["_etag"]),
    )
    assert response.status_code == 422
    response = await owner_a.put(
        f"/notes/{ack['_id']}", json={"text": "y"}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 200
    note = await (await owner_a.get(f"/notes/{ack['_id']}")).get_json()
    assert (note["text"], note["owner"]) == ("y", "a" * 24)


# -- refresh, logout, sessions ----------------------------------------------


async def test_refresh_rotates_and_a_replay_revokes_the_family(
    app: Quart, anonymous: Client
) -> None:
    await _user(app)
    first = await (await _login(anonymous)).get_json()
    response = await anonymous.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    second = await response.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await _post_book(anonymous, bearer(second["access_token"]))).status_code == 201

    replay = await anonymous.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert "already used" in (await replay.get_json())["_error"]["message"]
    # The whole family is gone: the newest tokens too.
    assert (await _post_book(anonymous, bearer(second["access_token"]))).status_code == 401
    again = await anonymous.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status_code == 401


async def test_unknown_refresh_token_is_401(anonymous: Client) -> None:
    response = await anonymous.post("/auth/refresh", json={"refresh_token": "x.y"})
    assert response.status_code == 401


async def test_logout_revokes_at_once(app: Quart, anonymous: Client) -> None:
    await _user(app)
    tokens = await (await _login(anonymous)).get_json()
    headers = bearer(tokens["access_token"])
    assert (await anonymous.post("/auth/logout", headers=headers)).status_code == 204
    response = await _post_book(anonymous, headers)
    assert response.status_code == 401
    assert "revoked" in (await response.get_json())["_error"]["message"]
    refresh = await anonymous.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


async def test_logout_needs_credentials(anonymous: Client) -> None:
    assert (await anonymous.post("/auth/logout")).status_code == 401


async def test_cookie_sessions_with_csrf(app: Quart, anonymous: Client) -> None:
    await _user(app)
    response = await _login(anonymous, mode="cookie")
    assert response.status_code == 200
    csrf = (await response.get_json())["csrf_token"]
    cookies = response.headers.get_all("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("shoal_session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=Lax" in session_cookie
    assert "Secure" not in session_cookie  # plain HTTP here
    assert (await anonymous.get("/auth/me")).status_code == 200
    refused = await anonymous.post("/books", json={"title": "x"})
    assert refused.status_code == 403
    assert "X-CSRF-Token" in (await refused.get_json())["_error"]["message"]
    wrong = await anonymous.post("/books", json={"title": "x"}, headers={"X-CSRF-Token": "no"})
    assert wrong.status_code == 403
    allowed = await anonymous.post("/books", json={"title": "x"}, headers={"X-CSRF-Token": csrf})
    assert allowed.status_code == 201
    out = await anonymous.post("/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert (await anonymous.get("/auth/me")).status_code == 401


async def test_session_cookie_is_secure_behind_a_trusted_tls_proxy(
    settings_factory: SettingsFactory,
) -> None:
    app = create_app(settings_factory(trusted_proxies=["127.0.0.0/8"]))
    async with app.test_app():
        await _user(app)
        client = app.test_client()
        response = await client.post(
            "/auth/login",
            json={"username": "editor1", "password": PASSWORD, "mode": "cookie"},
            headers={"X-Forwarded-Proto": "https"},
            scope_base={"client": ("127.0.0.1", 5000)},
        )
        assert response.status_code == 200
        cookie = next(
            c for c in response.headers.get_all("Set-Cookie") if c.startswith("shoal_session=")
        )
        assert "Secure" in cookie


# -- API keys ------------------------------------------------------------------


async def test_api_keys(app: Quart, anonymous: Client) -> None:
    accounts = get_auth(app).accounts
    key, info = await accounts.create_api_key("ci", ["editor"])
    assert key.startswith("shoal_")
    stored = await accounts.storage.find_one(accounts.apikeys, {"name": "ci"})
    assert stored is not None
    assert key not in str(stored)  # only a hash is kept
    assert (await _post_book(anonymous, {"X-API-Key": key})).status_code == 201
    assert (await _post_book(anonymous, {"X-API-Key": key + "x"})).status_code == 401
    reader_key, _ = await accounts.create_api_key("ro", ["reader"])
    assert (await _post_book(anonymous, {"X-API-Key": reader_key})).status_code == 403
    assert [k.name for k in await accounts.list_api_keys()] == ["ci", "ro"]
    assert await accounts.revoke_api_key(info.id)
    response = await _post_book(anonymous, {"X-API-Key": key})
    assert response.status_code == 401
    assert "revoked" in (await response.get_json())["_error"]["message"]


# -- throttling ------------------------------------------------------------------


async def test_failed_logins_are_slowed_then_refused(settings_factory: SettingsFactory) -> None:
    app = create_app(settings_factory(auth={"login_slowdown_after": 2, "login_lockout_after": 3}))
    async with app.test_app():
        await _user(app)
        client = app.test_client()
        for _ in range(2):
            assert (await _login(client, password="wrong")).status_code == 401
        started = time.monotonic()
        assert (await _login(client, password="wrong")).status_code == 401
        assert time.monotonic() - started >= 0.2  # slowed down, not refused yet
        locked = await _login(client)  # even the right password, for a while
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) == 900
        # Another user from the same address is refused too (address counter).
        await _user(app, "other")
        assert (await _login(client, "other")).status_code == 429


# -- several instances -----------------------------------------------------------


async def test_two_instances_share_logins_and_logouts(settings_factory: SettingsFactory) -> None:
    async with two_served(settings_factory()) as (first, second):
        await _user(first)
        a, b = first.test_client(), second.test_client()
        tokens = await (await _login(a)).get_json()
        headers = bearer(tokens["access_token"])
        assert (await _post_book(b, headers)).status_code == 201
        assert (await b.post("/auth/logout", headers=headers)).status_code == 204
        assert (await _post_book(a, headers)).status_code == 401

        tokens = await (await _login(a)).get_json()
        rotated = await b.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert rotated.status_code == 200
        newest = await rotated.get_json()
        replay = await a.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert replay.status_code == 401
        assert (await _post_book(b, bearer(newest["access_token"]))).status_code == 401


# -- secrets stay out of logs -----------------------------------------------------


async def test_no_secret_reaches_the_logs(
    app: Quart, anonymous: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _user(app)
    key, _ = await get_auth(app).accounts.create_api_key("ci", ["editor"])
    tokens = await (await _login(anonymous)).get_json()
    await _login(anonymous, password="wrong password here")
    refreshed = await (
        await anonymous.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).get_json()
    await _post_book(anonymous, {"X-API-Key": key})
    await _post_book(anonymous, {"X-API-Key": key + "bad"})
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert caplog.records  # the scenario did log something
    for secret in (
        PASSWORD,
        "wrong password here",
        key,
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
    ):
        assert secret not in logged
