"""`shoal users` and `shoal apikeys`, run as a user runs them, then used over HTTP."""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.system import free_port
from tests.utils.processes import ServeProcess, clean_env, run_shoal, shoal_command
from tests.utils.settings import EXAMPLE_CONFIG, write_config
from tests.utils.terminal import CTRL_C, CTRL_D, Terminal

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

    status, out, err = _shoal(config, "apikeys", "revoke", key_id.group(1))
    assert status == 0, err
    assert (
        out == f"revoked API key {key_id.group(1)}; it is refused from now on, on every instance\n"
    )
    response = await client.post("/books", json={"title": "y"}, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert "revoked" in _shoal(config, "apikeys", "list")[1]
    status, _, err = _shoal(config, "apikeys", "revoke", "0" * 24)
    assert status == 1
    assert "no API key" in err


# -- at a terminal ---------------------------------------------------------------


def _terminal(config: Path, *args: str) -> Terminal:
    return Terminal(
        [shoal_command(), *args, "--config", str(config)], cwd=config.parent, env=clean_env()
    )


def _user_names(config: Path) -> list[str]:
    status, out, err = _shoal(config, "users", "list")
    assert status == 0, err
    return [line.split()[2] for line in out.splitlines()]


def test_a_password_typed_twice_at_the_prompt_creates_the_user(config: Path) -> None:
    with _terminal(config, "users", "create", "editor1", "--role", "editor") as terminal:
        terminal.expect("Password: ")
        terminal.send(PASSWORD.encode() + b"\n")
        terminal.expect("Password again: ")
        terminal.send(PASSWORD.encode() + b"\n")
        assert terminal.wait() == 0, terminal.text
    assert "created user editor1" in terminal.text
    assert PASSWORD not in terminal.text, "the password was echoed"


@pytest.mark.parametrize("prompt", ["Password: ", "Password again: "])
@pytest.mark.parametrize("action", ["create", "set-password"])
def test_ctrl_c_at_a_password_prompt_exits_130_with_one_line(
    config: Path, prompt: str, action: str
) -> None:
    if action == "set-password":
        _create(config, "editor1")
    args = ("users", action, "editor1") + (("--role", "editor") if action == "create" else ())
    with _terminal(config, *args) as terminal:
        terminal.expect("Password: ")
        if prompt == "Password again: ":
            terminal.send(b"first try at a password\n")
            terminal.expect(prompt)
        terminal.send(CTRL_C)
        assert terminal.wait() == 130, terminal.text
    after = terminal.text.split(prompt, 1)[1]
    assert after.strip() == f"shoal users {action}: interrupted", terminal.text
    assert "Traceback" not in terminal.text
    if action == "create":
        assert _user_names(config) == [], "a user was created anyway"


@pytest.mark.parametrize("prompt", ["Password: ", "Password again: "])
def test_ctrl_d_at_a_password_prompt_exits_2_with_one_line(config: Path, prompt: str) -> None:
    with _terminal(config, "users", "create", "editor1", "--role", "editor") as terminal:
        terminal.expect("Password: ")
        if prompt == "Password again: ":
            terminal.send(b"first try at a password\n")
            terminal.expect(prompt)
        terminal.send(CTRL_D)
        assert terminal.wait() == 2, terminal.text
    after = terminal.text.split(prompt, 1)[1]
    assert after.strip() == (
        "shoal users create: no password given (end of input at the prompt)"
    ), terminal.text
    assert "Traceback" not in terminal.text
    assert _user_names(config) == []


def test_creating_a_user_that_exists_is_refused_before_the_prompt(config: Path) -> None:
    _create(config, "editor1")
    with _terminal(config, "users", "create", "editor1", "--role", "editor") as terminal:
        assert terminal.wait() == 1, terminal.text
    assert "Password" not in terminal.text
    assert terminal.text.strip() == "shoal users create: a user named 'editor1' already exists"


def test_setting_the_password_of_no_user_is_refused_before_the_prompt(config: Path) -> None:
    with _terminal(config, "users", "set-password", "ghost") as terminal:
        assert terminal.wait() == 1, terminal.text
    assert "Password" not in terminal.text
    assert terminal.text.strip() == "shoal users set-password: no user named 'ghost'"


def test_an_empty_stdin_is_no_password(config: Path) -> None:
    status, _, err = _shoal(
        config, "users", "create", "editor1", "--role", "editor", "--password-stdin", input=""
    )
    assert status == 2
    assert err == "shoal users create: no password on stdin (it was empty)\n"


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


ELSEWHERE = (
    "; without Redis, a server elsewhere accepts its access tokens until they expire "
    "(auth.access_token_ttl: 900 s) and its sessions and refresh tokens until it restarts"
)


@pytest.mark.parametrize(
    ("args", "stdin", "opening"),
    [
        (("disable", "editor1"), None, "disabled user editor1"),
        (("delete", "editor1"), None, "deleted user editor1"),
        (("set-roles", "editor1", "--role", "reader"), None, "user editor1"),
        (
            ("set-password", "editor1", "--password-stdin"),
            "another long password\n",
            "set the password of user editor1",
        ),
    ],
    ids=["disable", "delete", "set-roles", "set-password"],
)
def test_without_redis_each_change_says_one_true_sentence(
    config: Path, args: tuple[str, ...], stdin: str | None, opening: str
) -> None:
    """No Redis and a MongoDB URI: servers of this config on this machine read
    the change from the marks file; any other server cannot know of it."""
    _create(config, "editor1")
    status, out, err = _shoal(config, "users", *args, input=stdin)

    assert status == 0, err
    assert err == "", "a second, contradicting message"
    assert re.fullmatch(
        re.escape(opening)
        + r" \([0-9a-f]{24}\)(?: now has roles: reader)?; its tokens and sessions are refused "
        + re.escape(f"from now on by every `shoal serve` of {config.resolve()} on this machine")
        + re.escape(ELSEWHERE)
        + (re.escape(" (log in again)") if args[0] == "set-roles" else "")
        + "\n",
        out,
    ), out
    assert (config.parent / ".shoal" / "user-marks.json").is_file()


def test_enabling_a_user_says_it_can_log_in_again(config: Path) -> None:
    _create(config, "editor1")
    assert _shoal(config, "users", "disable", "editor1")[0] == 0
    status, out, err = _shoal(config, "users", "enable", "editor1")
    assert status == 0, err
    assert re.fullmatch(r"enabled user editor1 \([0-9a-f]{24}\); it can log in again\n", out)
    assert err == ""


def _request(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL the test built
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


def test_without_redis_the_running_development_server_refuses_what_a_disabled_user_held(
    tmp_path: Path,
) -> None:
    """The README's example (embedded store, no Redis): `shoal users disable`
    reaches the running server, which refuses the user's token and refresh
    token at the next request, and so does a server started afterwards."""
    config = tmp_path / "shoal.yaml"
    shutil.copy(EXAMPLE_CONFIG, config)
    server = ServeProcess(tmp_path, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    try:
        server.start()
        server.wait_ready()
        _create(config, "editor1")
        status, tokens = _request(
            f"{server.url}/auth/login", {"username": "editor1", "password": PASSWORD}
        )
        assert status == 200, tokens
        token = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert _request(f"{server.url}/books", {"title": "Kindred"}, token)[0] == 201

        status, out, err = _shoal(config, "users", "disable", "editor1")
        assert status == 0, err
        assert err == ""
        assert out.endswith(
            f"; its tokens and sessions are refused from now on by every `shoal serve` of "
            f"{config.resolve()} on this machine\n"
        ), out

        status, body = _request(f"{server.url}/books", {"title": "Dune"}, token)
        assert status == 401, body
        assert "the account changed since" in body["_error"]["message"]
        refresh = {"refresh_token": tokens["refresh_token"]}
        assert _request(f"{server.url}/auth/refresh", refresh)[0] == 401

        assert _shoal(config, "users", "enable", "editor1")[0] == 0
        status, fresh = _request(
            f"{server.url}/auth/login", {"username": "editor1", "password": PASSWORD}
        )
        assert status == 200, fresh
        headers = {"Authorization": f"Bearer {fresh['access_token']}"}
        assert _request(f"{server.url}/books", {"title": "Dune"}, headers)[0] == 201
    finally:
        server.cleanup()

    # A server started afterwards (same config, same .shoal/) knows the mark too.
    again = ServeProcess(tmp_path, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}")
    try:
        again.start()
        again.wait_ready()
        assert _request(f"{again.url}/books", {"title": "Emma"}, token)[0] == 401
        assert _request(f"{again.url}/books", {"title": "Emma"}, headers)[0] == 201
    finally:
        again.cleanup()


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


# -- a user's data: what rules read as %%user.data.<field> (docs/how-to/rules.md) --


async def test_data_is_set_at_creation_and_changed_later(config: Path, app: Quart) -> None:
    status, _, err = _shoal(
        config, "users", "create", "clara", "--role", "clerk", "--data", "region=north",
        "--data", "desk=7", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    assert status == 0, err
    accounts = get_auth(app).accounts
    user = await accounts.find_user("clara")
    assert user is not None
    assert await accounts.user_data(user.id) == {"region": "north", "desk": "7"}
    status, out, err = _shoal(config, "users", "set-data", "clara", "--data", "region=south")
    assert status == 0, err
    assert out.strip() == f"set the data of user clara ({user.id}): region"
    assert await accounts.user_data(user.id) == {"region": "south", "desk": "7"}


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("set-data", "ghost", "--data", "region=north"), 1, "no user named 'ghost'"),
        (("set-data", "clara", "--data", "region"), 2, "key=value"),
        (("set-data", "clara", "--data", "$where=x"), 2, "key=value"),
    ],
)
def test_set_data_refuses_what_it_cannot_set(
    config: Path, args: tuple[str, ...], code: int, fragment: str
) -> None:
    status, out, err = _shoal(config, "users", *args)
    assert status == code, err
    assert fragment in err
    assert "Traceback" not in err
    assert out == ""
