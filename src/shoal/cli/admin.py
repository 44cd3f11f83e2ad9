"""`shoal users ...` and `shoal apikeys ...`: accounts, managed from a shell.

Passwords never travel in argv (which other users of the machine can read):
they come from stdin (``--password-stdin``) or an interactive prompt. An API
key is printed once, at creation; only its hash is stored.

Disabling, deleting, or changing a user's roles or password also ends the
user's tokens and sessions: the command writes the user's not-before mark to
the config's Redis (``redis.url``), the one the servers use (see
``shoal.auth.users``). Without Redis it writes the mark to a file beside the
config (``shoal.state.marks``), which every server of that config on this
machine reads; ``cut_off`` says which holds, in the command's one sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..auth.accounts import Accounts, ApiKeyInfo, UserInfo
from ..auth.sessions import AuthStore
from ..auth.users import UserAdmin
from ..config import ConfigError, MongoDBSettings, Settings, load_settings
from ..errors import ApiError
from ..state import StateUnavailable, marks_file, state_for
from ..storage import open_storage
from ..storage.embedded import EmbeddedStoreError, mongodb_for_command

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
    with _session(_settings(config)) as session:
        return session.run(action)


class _Session:
    """One command's MongoDB (the embedded store started once, if it must be),
    for one action or a few, with a prompt between them."""

    def __init__(self, settings: Settings, mongodb: MongoDBSettings) -> None:
        self.settings = settings
        self.mongodb = mongodb

    def run(self, action: Callable[[Accounts], Awaitable[T]]) -> T:
        async def run() -> T:
            async with open_storage(self.mongodb) as storage:
                accounts = Accounts(storage, self.settings.auth)
                await accounts.ensure_indexes()
                return await action(accounts)

        try:
            return asyncio.run(run())
        except ApiError as error:
            raise AdminError(error.message) from error


@contextlib.contextmanager
def _session(settings: Settings) -> Iterator[_Session]:
    try:
        with mongodb_for_command(settings) as mongodb:
            yield _Session(settings, mongodb)
    except EmbeddedStoreError as error:
        raise AdminError(str(error), status=2) from error


@dataclass(frozen=True)
class UserChange:
    """A user changed, and who refuses what the user held (``cut_off``)."""

    user: UserInfo
    cut_off: str


def cut_off(settings: Settings) -> str:
    """Who refuses a changed user's tokens and sessions from now on: the end of
    the command's sentence, true for this config."""
    if settings.redis.url is not None:
        return "its tokens and sessions are refused from now on, on every instance"
    # Without Redis, the mark went to the file every server of this config on
    # this machine reads (``shoal.state.marks``).
    here = f"by every `shoal serve` of {settings.source} on this machine"
    if settings.mongodb.uri is None:  # the embedded store: its servers are all here
        return f"its tokens and sessions are refused from now on {here}"
    return (
        f"its tokens and sessions are refused from now on {here}; without Redis, a server "
        "elsewhere accepts its access tokens until they expire "
        f"(auth.access_token_ttl: {settings.auth.access_token_ttl} s) and its sessions and "
        "refresh tokens until it restarts"
    )


def with_users(
    config: str | None,
    name: str,
    change: str,
    action: Callable[[UserAdmin], Awaitable[UserInfo]],
    *,
    before: Callable[[], None] | None = None,
) -> UserChange:
    """Run a change to the user ``name`` (``change`` says what, for messages)
    against the config's MongoDB and Redis (or, without Redis, its marks file).
    With ``before`` (a password prompt), the user must exist before it is called."""
    settings = _settings(config)

    async def run(accounts: Accounts) -> UserInfo:
        state = state_for(settings)
        await state.open()
        try:
            return await action(UserAdmin(accounts, AuthStore.for_settings(state, settings.auth)))
        except StateUnavailable as error:
            raise AdminError(
                f"{change}: done in MongoDB, but Redis ({_redis_host(settings)}) did not "
                "answer, so the user's tokens and sessions still work until they expire. "
                "Run the command again once Redis answers."
            ) from error
        except OSError as error:  # the marks file (no Redis) could not be written
            raise AdminError(
                f"{change}: done in MongoDB, but {marks_file(settings)} could not be written "
                f"({error.strerror}), so a running server still accepts the user's tokens and "
                "sessions. Run the command again once it can be written."
            ) from error
        finally:
            await state.close()

    with _session(settings) as session:
        if before is not None:
            if session.run(lambda accounts: accounts.find_user(name)) is None:
                raise AdminError(f"no user named {name!r}")
            before()
        return UserChange(session.run(run), cut_off(settings))


def _redis_host(settings: Settings) -> str:
    url = settings.redis.url or ""
    # Never print a password the URL may hold.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def read_password(from_stdin: bool) -> str:
    """A new password from stdin's first line, or asked twice at the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise AdminError("no password on stdin (it was empty)", status=2)
        password = line.rstrip("\r\n")
    elif sys.stdin.isatty():
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Password again: ")
        except EOFError:  # Ctrl-D at the prompt (Ctrl-C is main's KeyboardInterrupt)
            print(file=sys.stderr)
            raise AdminError("no password given (end of input at the prompt)", status=2) from None
        if again != password:
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


def parse_data(pairs: list[str] | None) -> dict[str, str]:
    """``--data key=value`` pairs as a user's data (exit 2 for a malformed one)."""
    data: dict[str, str] = {}
    for pair in pairs or []:
        key, equals, value = pair.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
            raise AdminError(
                f"--data {pair!r}: write it as key=value, the key letters, digits, _ and -",
                status=2,
            )
        data[key] = value
    return data


def create_user(
    config: str | None,
    name: str,
    roles: list[str],
    password: Callable[[], str],
    data: dict[str, str] | None = None,
) -> str:
    """Create a user; ``password`` (a prompt) is called once the name is known
    to be free."""
    with _session(_settings(config)) as session:
        if session.run(lambda accounts: accounts.find_user(name)) is not None:
            raise AdminError(f"a user named {name!r} already exists")
        chosen = password()
        user = session.run(lambda accounts: accounts.create_user(name, chosen, roles))
        if data:
            session.run(lambda accounts: accounts.set_data(name, data))
    return f"created user {user.name} ({user.id}) with roles: {', '.join(sorted(user.roles))}"


def set_data(config: str | None, name: str, data: dict[str, str]) -> UserInfo:
    """Set fields of a user's data (``%%user.data`` in rules): read at each
    request, so the change holds from the next one; the user stays signed in."""

    async def action(accounts: Accounts) -> UserInfo:
        user = await accounts.set_data(name, data)
        if user is None:
            raise AdminError(f"no user named {name!r}")
        return user

    return with_accounts(config, action)


def list_users(config: str | None) -> list[UserInfo]:
    return with_accounts(config, lambda accounts: accounts.list_users())


def disable_user(config: str | None, name: str) -> UserChange:
    return with_users(config, name, f"disable {name}", lambda users: users.disable(name))


def enable_user(config: str | None, name: str) -> UserChange:
    return with_users(config, name, f"enable {name}", lambda users: users.enable(name))


def delete_user(config: str | None, name: str) -> UserChange:
    # If Redis fails, the user is left disabled (not deleted): see UserAdmin.delete.
    return with_users(
        config, name, f"delete {name} (left disabled)", lambda users: users.delete(name)
    )


def set_roles(config: str | None, name: str, roles: list[str]) -> UserChange:
    return with_users(
        config, name, f"set the roles of {name}", lambda users: users.set_roles(name, roles)
    )


def set_password(config: str | None, name: str, password: Callable[[], str]) -> UserChange:
    """Set a user's password; ``password`` (a prompt) is called once the user
    is known to exist."""
    chosen: list[str] = []
    return with_users(
        config,
        name,
        f"set the password of {name}",
        lambda users: users.set_password(name, chosen[0]),
        before=lambda: chosen.append(password()),
    )


def create_api_key(config: str | None, name: str, roles: list[str]) -> tuple[str, ApiKeyInfo]:
    async def action(accounts: Accounts) -> tuple[str, ApiKeyInfo]:
        return await accounts.create_api_key(name, roles)

    return with_accounts(config, action)


def list_api_keys(config: str | None) -> list[ApiKeyInfo]:
    return with_accounts(config, lambda accounts: accounts.list_api_keys())


def revoke_api_key(config: str | None, key_id: str) -> bool:
    return with_accounts(config, lambda accounts: accounts.revoke_api_key(key_id))
