"""Authentication and access rules, over HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import accounts as accounts_module
from shoal.auth import get_auth
from shoal.auth import tokens as tokens_module
from shoal.auth.passwords import verify_password
from shoal.auth.users import UserAdmin
from shoal.config import load_settings
from shoal.errors import ServiceUnavailable
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.http import create, if_match
from tests.utils.instances import two_served
from tests.utils.processes import run_shoal
from tests.utils.settings import TEST_SECRET, example_resources, write_config

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


# Each case is (claim overrides, key, algorithm, the word the refusal names). The
# token is signed when the test runs, not at collection, so that a long suite
# cannot let a token that should fail for another reason expire first.
BAD_TOKENS: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    "expired": (lambda: {"exp": int(time.time()) - 60}, TEST_SECRET, "HS256"),
    "signature": (dict, "another-secret-another-secret-xx", "HS256"),
    "audience": (lambda: {"aud": "someone-else"}, TEST_SECRET, "HS256"),
    "issuer": (lambda: {"iss": "someone-else"}, TEST_SECRET, "HS256"),
    "not valid yet": (lambda: {"iat": int(time.time()) + 3600}, TEST_SECRET, "HS256"),
    "jti": (lambda: {"jti": None}, TEST_SECRET, "HS256"),
    "algorithm": (dict, TEST_SECRET * 2, "HS512"),
    "algorithm none": (dict, "", "none"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_are_refused(anonymous: Client, case: str) -> None:
    overrides, key, algorithm = BAD_TOKENS[case]
    token = jwt.encode(_claims(**overrides()), key, algorithm)
    response = await _post_book(anonymous, bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    reason = case.removesuffix(" none")
    assert reason in (await response.get_json())["_error"]["message"]


async def test_a_valid_handmade_token_with_the_key_is_accepted(anonymous: Client) -> None:
    # The control for the refusals above: only the one defect differs.
    token = jwt.encode(_claims(), TEST_SECRET, "HS256")
    assert (await _post_book(anonymous, bearer(token))).status_code == 201


async def test_a_token_checked_before_is_still_refused_once_it_expires(
    anonymous: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token is checked in full once, then kept (tokens.py): its later uses
    still meet its expiry."""
    issued = time.time()
    token = jwt.encode(_claims(exp=int(issued) + 30), TEST_SECRET, "HS256")
    for _ in range(2):  # checked, then kept
        assert (await _post_book(anonymous, bearer(token))).status_code == 201

    class Later:
        @staticmethod
        def time() -> float:
            return issued + 30 + tokens_module.LEEWAY + 1

    monkeypatch.setattr(tokens_module, "time", Later)
    response = await _post_book(anonymous, bearer(token))
    assert response.status_code == 401
    assert "expired" in (await response.get_json())["_error"]["message"]
    # Once refused it is forgotten: the next use is checked in full again.
    monkeypatch.undo()
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


async def test_logins_refused_for_an_outage_are_not_held_against_the_user(
    settings_factory: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login that MongoDB could not check (503) is no failed login: it is never
    refused as one too many, and once MongoDB is back the user logs in."""
    app = create_app(settings_factory(auth={"login_slowdown_after": 2, "login_lockout_after": 3}))
    async with app.test_app():
        await _user(app)
        client = app.test_client()

        async def unreachable(*_: Any) -> Any:
            raise ServiceUnavailable("MongoDB is unreachable; retry shortly")

        monkeypatch.setattr(get_auth(app).accounts, "authenticate", unreachable)
        for _ in range(5):
            assert (await _login(client)).status_code == 503
        # Counted as failures, the fourth would have been refused (429) unchecked.
        monkeypatch.undo()
        assert (await _login(client)).status_code == 200


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


# -- the user lifecycle, across instances ------------------------------------------


@pytest.fixture(params=["redis", "cluster"])
def shared_config(
    request: pytest.FixtureRequest, tmp_path: Path, mongodb_uri: str, redis_url: str
) -> Path:
    """A config file on the test MongoDB and Redis (one server, or a Cluster), for
    instances and `shoal users`."""
    unique = uuid.uuid4().hex[:12]
    url = redis_url if request.param == "redis" else request.getfixturevalue("redis_cluster_url")
    return write_config(
        tmp_path,
        mongodb={"uri": mongodb_uri, "database": f"test_{unique}"},
        redis={"url": url, "key_prefix": f"test:{unique}:"},
    )


def _users(config: Path, *args: str, password: str | None = None) -> str:
    """Run `shoal users ARGS` as an operator would; its output, asserting success."""
    stdin = None if password is None else password + "\n"
    result = run_shoal(["users", *args, "--config", str(config)], cwd=config.parent, input=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


class Holder:
    """What a logged-in user holds: a token pair from one instance and a cookie
    session from the other, each used on both."""

    def __init__(self, first: Quart, second: Quart) -> None:
        self.instances = (first.test_client(), second.test_client())
        self.browser = second.test_client()
        self.tokens: dict[str, Any] = {}

    async def log_in(self, password: str = PASSWORD) -> None:
        response = await _login(self.instances[0], password=password)
        assert response.status_code == 200
        self.tokens = await response.get_json()
        response = await _login(self.browser, password=password, mode="cookie")
        assert response.status_code == 200

    async def token_statuses(self) -> list[int]:
        headers = bearer(self.tokens["access_token"])
        return [(await client.get("/auth/me", headers=headers)).status_code
                for client in self.instances]  # fmt: skip

    async def session_status(self) -> int:
        return (await self.browser.get("/auth/me")).status_code

    async def refresh_status(self) -> int:
        response = await self.instances[1].post(
            "/auth/refresh", json={"refresh_token": self.tokens["refresh_token"]}
        )
        return response.status_code


async def test_a_disabled_user_is_refused_everywhere_at_the_next_request(
    shared_config: Path,
) -> None:
    """`shoal users disable`, run as its own process while two instances serve: the
    user's token and session are refused on both at the very next request."""
    async with two_served(load_settings(shared_config, env={})) as (first, second):
        await _user(first)
        holder = Holder(first, second)
        await holder.log_in()
        assert await holder.token_statuses() == [200, 200]
        assert await holder.session_status() == 200

        out = _users(shared_config, "disable", "editor1")
        assert re.fullmatch(
            r"disabled user editor1 \([0-9a-f]{24}\); its tokens and sessions are refused "
            r"from now on, on every instance\n",
            out,
        ), out

        assert await holder.token_statuses() == [401, 401]
        response = await second.test_client().get(
            "/auth/me", headers=bearer(holder.tokens["access_token"])
        )
        assert "account changed" in (await response.get_json())["_error"]["message"]
        assert await holder.session_status() == 401
        # The session's write path too, CSRF token and all.
        assert (await _post_book(holder.browser, {})).status_code == 401
        assert await holder.refresh_status() == 401
        assert (await _login(holder.instances[0])).status_code == 401

        _users(shared_config, "enable", "editor1")
        # What was cut off stays cut off; a new login works.
        assert await holder.token_statuses() == [401, 401]
        await holder.log_in()
        assert await holder.token_statuses() == [200, 200]
        assert await holder.session_status() == 200


@pytest.mark.parametrize(
    ("args", "password"),
    [
        (("delete", "editor1"), None),
        (("set-roles", "editor1", "--role", "reader"), None),
        (("set-password", "editor1", "--password-stdin"), "a brand new password"),
    ],
    ids=["delete", "set-roles", "set-password"],
)
async def test_each_change_to_a_user_cuts_off_what_they_hold(
    shared_config: Path, args: tuple[str, ...], password: str | None
) -> None:
    async with two_served(load_settings(shared_config, env={})) as (first, second):
        await _user(first)
        holder = Holder(first, second)
        await holder.log_in()
        _users(shared_config, *args, password=password)
        assert await holder.token_statuses() == [401, 401]
        assert await holder.session_status() == 401
        assert await holder.refresh_status() == 401

        client = first.test_client()
        if args[0] == "delete":
            assert (await _login(client)).status_code == 401
        elif args[0] == "set-roles":
            tokens = await (await _login(client)).get_json()
            me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
            assert (await me.get_json())["roles"] == ["reader"]
            assert (await _post_book(client, bearer(tokens["access_token"]))).status_code == 403
        else:
            assert (await _login(client)).status_code == 401
            assert password is not None
            assert (await _login(client, password=password)).status_code == 200


async def test_changing_one_user_leaves_the_others_alone(shared_config: Path) -> None:
    async with two_served(load_settings(shared_config, env={})) as (first, second):
        await _user(first)
        await _user(first, "other")
        tokens = await (await _login(first.test_client(), "other")).get_json()
        _users(shared_config, "disable", "editor1")
        me = await second.test_client().get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200


async def test_a_login_racing_a_change_gets_nothing_that_outlives_it(
    app: Quart, anonymous: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user is disabled after the password was checked but before the login
    answers: what the login issues is refused (the mark is read before the
    final read of the user)."""
    await _user(app)
    auth = get_auth(app)
    admin = UserAdmin(auth.accounts, auth.store)
    epoch = auth.store.epoch

    async def epoch_then_disable(user_id: str) -> int:
        value = await epoch(user_id)
        await admin.disable("editor1")
        await admin.enable("editor1")  # the account is usable again, the login is not
        return value

    monkeypatch.setattr(auth.store, "epoch", epoch_then_disable)
    tokens = await (await _login(anonymous)).get_json()
    monkeypatch.undo()
    me = await anonymous.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    refreshed = await anonymous.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


# -- concurrent guesses ------------------------------------------------------------


async def test_a_burst_of_guesses_across_two_instances_is_checked_at_most_the_limit(
    settings_factory: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """24 wrong passwords for one user, sent at once to two instances: only the
    first `login_lockout_after` are checked against the hash; the rest are 429."""
    limit = 6
    settings = settings_factory(auth={"login_slowdown_after": 100, "login_lockout_after": limit})
    checked: list[str] = []

    def counting(stored_hash: str | None, password: str) -> bool:
        checked.append(password)
        return verify_password(stored_hash, password)

    async with two_served(settings) as (first, second):
        await _user(first)
        monkeypatch.setattr(accounts_module, "verify_password", counting)
        clients = [first.test_client(), second.test_client()]
        guesses = [_login(clients[n % 2], password=f"guess number {n}") for n in range(24)]
        responses = await asyncio.gather(*guesses)
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [401] * limit + [429] * (24 - limit)
        assert len(checked) == limit
        # And the right password, now, is refused too without being checked.
        assert (await _login(clients[0])).status_code == 429
        assert len(checked) == limit


# -- on a Redis Cluster ------------------------------------------------------------


async def test_every_auth_path_works_on_a_redis_cluster(
    settings_factory: SettingsFactory, redis_cluster_url: str
) -> None:
    """Logins (failed and good, token and cookie), refresh, logout, revocation and
    bearer reads on a three-master Cluster: each multi-key read stays in one slot,
    so nothing answers 5xx."""
    settings = settings_factory(redis={"url": redis_cluster_url})
    statuses: list[int] = []

    async def call(client: Client, method: str, path: str, **kwargs: Any) -> Any:
        response = await client.open(path, method=method, **kwargs)
        statuses.append(response.status_code)
        return response

    async with two_served(settings) as (first, second):
        await _user(first)
        a, browser = first.test_client(), second.test_client()
        login = {"username": "editor1", "password": PASSWORD}

        wrong = await call(a, "POST", "/auth/login", json={**login, "password": "wrong"})
        assert wrong.status_code == 401
        tokens = await (await call(a, "POST", "/auth/login", json=login)).get_json()
        headers = bearer(tokens["access_token"])
        created = await call(second.test_client(), "POST", "/books", json={"title": "x"},
                             headers=headers)  # fmt: skip
        assert created.status_code == 201
        book = (await created.get_json())["_id"]
        assert (await call(a, "GET", f"/books/{book}", headers=headers)).status_code == 200
        assert (await call(a, "GET", "/auth/me", headers=headers)).status_code == 200

        session = await call(browser, "POST", "/auth/login", json={**login, "mode": "cookie"})
        csrf = (await session.get_json())["csrf_token"]
        assert (await call(browser, "GET", "/auth/me")).status_code == 200
        written = await call(browser, "POST", "/books", json={"title": "y"},
                             headers={"X-CSRF-Token": csrf})  # fmt: skip
        assert written.status_code == 201

        rotated = await call(a, "POST", "/auth/refresh",
                             json={"refresh_token": tokens["refresh_token"]})  # fmt: skip
        assert rotated.status_code == 200
        replay = await call(a, "POST", "/auth/refresh",
                            json={"refresh_token": tokens["refresh_token"]})  # fmt: skip
        assert replay.status_code == 401

        fresh = await (await call(a, "POST", "/auth/login", json=login)).get_json()
        out = await call(a, "POST", "/auth/logout", headers=bearer(fresh["access_token"]),
                         json={"refresh_token": fresh["refresh_token"]})  # fmt: skip
        assert out.status_code == 204
        assert (await call(a, "GET", "/auth/me",
                           headers=bearer(fresh["access_token"]))).status_code == 401  # fmt: skip

        last = await (await call(a, "POST", "/auth/login", json=login)).get_json()
        await UserAdmin(get_auth(first).accounts, get_auth(first).store).disable("editor1")
        assert (await call(browser, "GET", "/auth/me")).status_code == 401
        me = await call(a, "GET", "/auth/me", headers=bearer(last["access_token"]))
        assert me.status_code == 401
        assert (await call(a, "POST", "/auth/login", json=login)).status_code == 401

    assert statuses
    assert all(status < 500 for status in statuses), statuses
