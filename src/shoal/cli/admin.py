"""`shoal users ...` and `shoal apikeys ...`: accounts, managed from a shell.

Passwords never travel in argv (which other users of the machine can read):
they come from stdin (``--password-stdin``) or an interactive prompt. An API
key is printed once, at creation; only its hash is stored.

Disabling, deleting, or changing a user's roles or password also ends the
user's tokens and sessions on every instance: the command writes the user's
not-before mark to the config's Redis (``redis.url``), the one the servers use
(see ``shoal.auth.users``).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..auth.accounts import Accounts, ApiKeyInfo, UserInfo
from ..auth.sessions import AuthStore
from ..auth.users import UserAdmin
from ..config import ConfigError, MongoDBSettings, Settings, load_settings
from ..errors import ApiError
from ..state import StateUnavailable, create_state
from ..storage import open_storage
from ..storage.embedded import EmbeddedStoreError, mongodb_for_command
from .output import warn

T = TypeVar("T")

MIN_PASSWORD_LENGTH = 8
#: What POST /auth/login accepts; a longer password could never log in.
MAX_PASSWORD_LENGTH = 1024


class AdminError(Exception):
    """A command that cannot run; ``status`` is its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as error:
        raise AdminError(str(error), status=2) from error


def with_accounts(config: str | None, action: Callable[[Accounts], Awaitable[T]]) -> T:
    """Run ``action`` against the configured (or embedded) MongoDB."""
    return _run(_settings(config), action)


def _run(settings: Settings, action: Callable[[Accounts], Awaitable[T]]) -> T:
    async def run(mongodb_settings: MongoDBSettings) -> T:
        async with open_storage(mongodb_settings) as storage:
            accounts = Accounts(storage, settings.auth)
            await accounts.ensure_indexes()
            return await action(accounts)

    try:
        with mongodb_for_command(settings) as mongodb:
            return asyncio.run(run(mongodb))
    except EmbeddedStoreError as error:
        raise AdminError(str(error), status=2) from error
    except ApiError as error:
        raise AdminError(error.message) from error


def with_users(
    config: str | None, change: str, action: Callable[[UserAdmin], Awaitable[UserInfo]]
) -> UserInfo:
    """Run a change to a user (``change`` says what, for messages) against the
    config's MongoDB and Redis."""
    settings = _settings(config)
    if settings.redis.url is None:
        warn(
            "no redis.url: a running server keeps its shared state in its own process, "
            "out of this command's reach; it accepts the user's access tokens until they "
            f"expire (auth.access_token_ttl: {settings.auth.access_token_ttl} s) and their "
            "sessions and refresh tokens until it restarts"
        )

    async def run(accounts: Accounts) -> UserInfo:
        state = create_state(settings.redis)
        await state.open()
        try:
            return await action(UserAdmin(accounts, AuthStore.for_settings(state, settings.auth)))
        except StateUnavailable as error:
            raise AdminError(
                f"{change}: done in MongoDB, but Redis ({_redis_host(settings)}) did not "
                "answer, so the user's tokens and sessions still work until they expire. "
                "Run the command again once Redis answers."
            ) from error
        finally:
            await state.close()

    return _run(settings, run)


def _redis_host(settings: Settings) -> str:
    url = settings.redis.url or ""
    # Never print a password the URL may hold.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise AdminError("the passwords differ", status=2)
    else:
        raise AdminError("no terminal to ask for the password: use --password-stdin", status=2)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"the password needs {MIN_PASSWORD_LENGTH} characters or more", status=2)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AdminError(
            f"the password may have at most {MAX_PASSWORD_LENGTH} characters", status=2
        )
    return password


def create_user(config: str | None, name: str, roles: list[str], password: str) -> str:
    async def action(accounts: Accounts) -> str:
        user = await accounts.create_user(name, password, roles)
        return f"created user {user.name} ({user.id}) with roles: {', '.join(sorted(user.roles))}"

    return with_accounts(config, action)


def list_users(config: str | None) -> list[UserInfo]:
    return with_accounts(config, lambda accounts: accounts.list_users())


def disable_user(config: str | None, name: str) -> UserInfo:
    return with_users(config, f"disable {name}", lambda users: users.disable(name))


def enable_user(config: str | None, name: str) -> UserInfo:
    return with_users(config, f"enable {name}", lambda users: users.enable(name))


def delete_user(config: str | None, name: str) -> UserInfo:
    # If Redis fails, the user is left disabled (not deleted): see UserAdmin.delete.
    return with_users(config, f"delete {name} (left disabled)", lambda users: users.delete(name))


def set_roles(config: str | None, name: str, roles: list[str]) -> UserInfo:
    return with_users(
        config, f"set the roles of {name}", lambda users: users.set_roles(name, roles)
    )


def set_password(config: str | None, name: str, password: str) -> UserInfo:
    return with_users(
        config, f"set the password of {name}", lambda users: users.set_password(name, password)
    )


def create_api_key(config: str | None, name: str, roles: list[str]) -> tuple[str, ApiKeyInfo]:
    async def action(accounts: Accounts) -> tuple[str, ApiKeyInfo]:
        return await accounts.create_api_key(name, roles)

    return with_accounts(config, action)


def list_api_keys(config: str | None) -> list[ApiKeyInfo]:
    return with_accounts(config, lambda accounts: accounts.list_api_keys())


def revoke_api_key(config: str | None, key_id: str) -> bool:
    return with_accounts(config, lambda accounts: accounts.revoke_api_key(key_id))
