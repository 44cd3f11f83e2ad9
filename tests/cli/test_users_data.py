"""`shoal users create --data` and `shoal users set-data`: the user's data that
rules read as ``%%user.data.<field>`` (docs/how-to/rules.md)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from shoal.app import create_app
from shoal.auth import get_auth
from tests.utils.processes import run_shoal
from tests.utils.settings import write_config

PASSWORD = "a long enough password"


@pytest.fixture
def config(tmp_path: Path, mongodb_uri: str) -> Path:
    database = f"users_data_{uuid.uuid4().hex[:10]}"
    return write_config(tmp_path, mongodb={"uri": mongodb_uri, "database": database})


@pytest.fixture
async def app(config: Path) -> AsyncIterator[Quart]:
    application = create_app(config)
    async with application.test_app():
        yield application


def _shoal(config: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = run_shoal([*args, "--config", str(config)], cwd=config.parent, input=input)
    return result.returncode, result.stdout, result.stderr


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
