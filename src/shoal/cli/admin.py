"""`shoal users ...` and `shoal apikeys ...`: accounts, managed from a shell.

Passwords never travel in argv (which other users of the machine can read):
they come from stdin (``--password-stdin``) or an interactive prompt. An API
key is printed once, at creation; only its hash is stored.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..auth.accounts import Accounts, ApiKeyInfo
from ..config import ConfigError, MongoDBSettings, Settings, load_settings
from ..errors import ApiError
from ..storage import open_storage
from ..storage.embedded import EmbeddedStoreError, mongodb_for_command

T = TypeVar("T")

MIN_PASSWORD_LENGTH = 8


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
    settings = _settings(config)

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
    return password


def create_user(config: str | None, name: str, roles: list[str], password: str) -> str:
    async def action(accounts: Accounts) -> str:
        user = await accounts.create_user(name, password, roles)
        return f"created user {user.name} ({user.id}) with roles: {', '.join(sorted(user.roles))}"

    return with_accounts(config, action)


def create_api_key(config: str | None, name: str, roles: list[str]) -> tuple[str, ApiKeyInfo]:
    async def action(accounts: Accounts) -> tuple[str, ApiKeyInfo]:
        return await accounts.create_api_key(name, roles)

    return with_accounts(config, action)


def list_api_keys(config: str | None) -> list[ApiKeyInfo]:
    return with_accounts(config, lambda accounts: accounts.list_api_keys())


def revoke_api_key(config: str | None, key_id: str) -> bool:
    return with_accounts(config, lambda accounts: accounts.revoke_api_key(key_id))
