"""`shoal users` and `shoal apikeys`, run as a user runs them, then used over HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from shoal.app import create_app
from shoal.system import free_port
from tests.utils.processes import run_shoal
from tests.utils.settings import write_config

PASSWORD = "a long enough password"


@pytest.fixture
def config(tmp_path: Path, mongodb_uri: str) -> Path:
    database = f"admin_{uuid.uuid4().hex[:10]}"
    return write_config(tmp_path, mongodb={"uri": mongodb_uri, "database": database})


@pytest.fixture
async def app(config: Path) -> AsyncIterator[Quart]:
    """The API on the same database the commands write to (no Redis: one process)."""
    application = create_app(config)
    async with application.test_app():
        yield application


def _shoal(config: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = run_shoal([*args, "--config", str(config)], cwd=config.parent, input=input)
    return result.returncode, result.stdout, result.stderr


async def test_a_created_user_can_log_in(config: Path, app: Quart) -> None:
    status, out, err = _shoal(
        config, "users", "create", "editor1", "--role", "editor", "--password-stdin",
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert status == 0, err
    assert "created user editor1" in out
    assert "editor" in out
    assert PASSWORD not in out + err
    client = app.test_client()
    response = await client.post("/auth/login", json={"username": "editor1", "password": PASSWORD})
    assert response.status_code == 200
    token = (await response.get_json())["access_token"]
    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.get_json())["roles"] == ["editor"]


def test_a_duplicate_user_is_refused(config: Path) -> None:
    args = ("users", "create", "editor1", "--role", "editor", "--password-stdin")
    assert _shoal(config, *args, input=PASSWORD)[0] == 0
    status, _, err = _shoal(config, *args, input=PASSWORD)
    assert status == 1
    assert "already exists" in err


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (("--password-stdin",), "short\n", "8 characters"),
        ((), "", "--password-stdin"),  # no terminal to prompt on
    ],
)
def test_password_problems_exit_2(
    config: Path, args: tuple[str, ...], stdin: str, fragment: str
) -> None:
    status, _, err = _shoal(
        config, "users", "create", "editor1", "--role", "editor", *args, input=stdin
    )
    assert status == 2
    assert fragment in err


async def test_api_key_lifecycle(config: Path, app: Quart) -> None:
    status, out, err = _shoal(config, "apikeys", "create", "--role", "editor", "--name", "ci")
    assert status == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("shoal_")
    key_id = re.search(r"created API key ([0-9a-f]{24})", out)
    assert key_id is not None

    client = app.test_client()
    response = await client.post("/books", json={"title": "x"}, headers={"X-API-Key": key})
    assert response.status_code == 201

    status, listing, _ = _shoal(config, "apikeys", "list")
    assert status == 0
    assert key_id.group(1) in listing
    assert "active" in listing
    assert key not in listing

    assert _shoal(config, "apikeys", "revoke", key_id.group(1))[0] == 0
    response = await client.post("/books", json={"title": "y"}, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert "revoked" in _shoal(config, "apikeys", "list")[1]
    status, _, err = _shoal(config, "apikeys", "revoke", "0" * 24)
    assert status == 1
    assert "no API key" in err


# -- the user lifecycle ----------------------------------------------------------


def _create(config: Path, name: str, *roles: str) -> None:
    args = ["users", "create", name, "--password-stdin"]
    for role in roles or ("editor",):
        args += ["--role", role]
    status, _, err = _shoal(config, *args, input=PASSWORD + "\n")
    assert status == 0, err


def test_users_list_shows_state_and_roles_never_passwords(config: Path) -> None:
    _create(config, "editor1", "editor")
    _create(config, "ops", "editor", "admin")
    assert _shoal(config, "users", "disable", "ops")[0] == 0
    status, out, err = _shoal(config, "users", "list")
    assert status == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"[0-9a-f]{24}  enabled   editor1  roles: editor", lines[0])
    assert re.fullmatch(r"[0-9a-f]{24}  disabled  ops  roles: admin, editor", lines[1])
    assert "argon2" not in out


@pytest.mark.parametrize(
    "args",
    [
        ("disable", "ghost"),
        ("enable", "ghost"),
        ("delete", "ghost"),
        ("set-roles", "ghost", "--role", "editor"),
    ],
)
def test_changing_a_user_that_does_not_exist_exits_1(config: Path, args: tuple[str, ...]) -> None:
    status, out, err = _shoal(config, "users", *args)
    assert status == 1
    assert "no user named 'ghost'" in err
    assert out == ""


def test_set_password_follows_the_password_rules(config: Path) -> None:
    _create(config, "editor1")
    for password, fragment in (("short", "8 characters"), ("x" * 1025, "at most 1024")):
        status, _, err = _shoal(
            config, "users", "set-password", "editor1", "--password-stdin", input=password
        )
        assert status == 2
        assert fragment in err


def test_without_redis_a_change_warns_that_servers_keep_what_they_hold(config: Path) -> None:
    _create(config, "editor1")
    status, out, err = _shoal(config, "users", "disable", "editor1")
    assert status == 0, err
    assert "disabled user editor1" in out
    assert "WARNING: no redis.url" in err
    assert "until they expire" in err


@pytest.fixture
def config_with_dead_redis(tmp_path: Path, mongodb_uri: str) -> Path:
    database = f"admin_{uuid.uuid4().hex[:10]}"
    return write_config(
        tmp_path,
        mongodb={"uri": mongodb_uri, "database": database},
        redis={"url": f"redis://:secret-password@127.0.0.1:{free_port()}/0", "socket_timeout": 0.5},
    )


def test_an_unreachable_redis_is_reported_and_the_command_can_be_run_again(
    config_with_dead_redis: Path,
) -> None:
    config = config_with_dead_redis
    _create(config, "editor1")
    status, out, err = _shoal(config, "users", "delete", "editor1")
    assert status == 1
    assert out == ""
    assert "done in MongoDB, but Redis (redis://127.0.0.1:" in err
    assert "Run the command again" in err
    assert "secret-password" not in err
    assert "Traceback" not in err
    # The user was left disabled, not deleted, so the command can be run again.
    listing = _shoal(config, "users", "list")[1]
    assert "disabled  editor1" in listing
    status, _, err = _shoal(config, "users", "delete", "editor1")
    assert status == 1
    assert "done in MongoDB" in err
