"""``UserAdmin``: changes to users that take effect on every instance at once.

Disabling, deleting, or changing a user's roles or password first changes the
user's MongoDB document, then stamps the user's not-before mark in shared state
(``AuthStore.sign_out_everywhere``): from the next request on, on every
instance, the user's access tokens, refresh tokens and sessions are refused.
The order matters: a login that read the document before the change reads the
mark before it too, so what it issues carries the old mark (see ``sessions``).

``shoal users ...`` (``cli/admin.py``) runs these against the MongoDB and the
Redis of the config, the ones the servers use.
"""

from __future__ import annotations

from ..errors import NotFound
from .accounts import Accounts, UserInfo
from .sessions import AuthStore


class UserAdmin:
    def __init__(self, accounts: Accounts, store: AuthStore) -> None:
        self.accounts = accounts
        self.store = store

    async def disable(self, name: str) -> UserInfo:
        return await self._signed_out(await self.accounts.set_disabled(name, True), name)

    async def enable(self, name: str) -> UserInfo:
        # Nothing the user held while disabled comes back: it was refused then
        # and stays refused (it carries an older mark). They log in again.
        return self._found(await self.accounts.set_disabled(name, False), name)

    async def delete(self, name: str) -> UserInfo:
        # Disabled first, then signed out, then deleted: if shared state cannot
        # be reached, the user stays (disabled), so running the command again
        # finishes the job instead of finding no such user.
        await self._signed_out(await self.accounts.set_disabled(name, True), name)
        return self._found(await self.accounts.delete_user(name), name)

    async def set_roles(self, name: str, roles: list[str]) -> UserInfo:
        return await self._signed_out(await self.accounts.set_roles(name, roles), name)

    async def set_password(self, name: str, password: str) -> UserInfo:
        return await self._signed_out(await self.accounts.set_password(name, password), name)

    async def _signed_out(self, user: UserInfo | None, name: str) -> UserInfo:
        found = self._found(user, name)
        await self.store.sign_out_everywhere(found.id)
        return found

    @staticmethod
    def _found(user: UserInfo | None, name: str) -> UserInfo:
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user
