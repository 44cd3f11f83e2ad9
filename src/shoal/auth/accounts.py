"""Users and API keys, stored in MongoDB through the storage layer.

Users carry an argon2id password hash. API keys are random 256-bit secrets,
shown once at creation; only their SHA-256 is stored (a fast hash is right
for high-entropy secrets, and lets a key be found by an indexed lookup). A key
is looked up in MongoDB on every request, so revoking it holds at the next one.

Changing a user here changes only MongoDB; ``users.UserAdmin`` also ends the
user's credentials on every instance.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from ..config import AuthSettings
from ..dates import now
from ..errors import Conflict
from ..hashing import sha256_hex
from ..storage import Storage
from .passwords import hash_password, needs_rehash, off_the_loop, verify_password
from .principal import Principal

API_KEY_PREFIX = "shoal_"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    roles: frozenset[str]

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> User:
        return cls(str(document["_id"]), document["name"], frozenset(document.get("roles", [])))


@dataclass(frozen=True)
class UserInfo:
    """A user as ``shoal users list`` shows it (never the password hash)."""

    id: str
    name: str
    roles: frozenset[str]
    disabled: bool
    created: Any

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> UserInfo:
        return cls(
            id=str(document["_id"]),
            name=document["name"],
            roles=frozenset(document.get("roles", [])),
            disabled=bool(document.get("disabled")),
            created=document.get("_created"),
        )


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    name: str
    roles: frozenset[str]
    created: Any
    revoked: bool


class Accounts:
    def __init__(self, storage: Storage, settings: AuthSettings) -> None:
        self.storage = storage
        self.users = settings.users_collection
        self.apikeys = settings.apikeys_collection

    index_owner = "accounts"

    async def ensure_indexes(self, timeout: float | None = None) -> None:
        await self.storage.ensure_indexes(
            self.users,
            [IndexModel([("name", ASCENDING)], unique=True, name="unique_name")],
            timeout=timeout,
        )
        await self.storage.ensure_indexes(
            self.apikeys,
            [IndexModel([("key_hash", ASCENDING)], unique=True, name="unique_key_hash")],
            timeout=timeout,
        )

    # -- users -------------------------------------------------------------

    async def create_user(self, name: str, password: str, roles: list[str]) -> User:
        document = {
            "_id": ObjectId(),
            "name": name,
            "password_hash": await off_the_loop(hash_password, password),
            "roles": sorted(set(roles)),
            "disabled": False,
            "_created": now(),
        }
        try:
            await self.storage.insert_many(self.users, [document])
        except Conflict:
            raise Conflict(f"a user named {name!r} already exists") from None
        return User.from_document(document)

    async def authenticate(self, name: str, password: str) -> tuple[User, str] | None:
        """The user and the password hash now stored, if the password is right
        and the account enabled."""
        document = await self.storage.find_one(self.users, {"name": name})
        stored = document.get("password_hash") if document else None
        checked = await off_the_loop(verify_password, stored, password)
        if not checked or document is None or stored is None:
            return None
        if document.get("disabled"):
            return None
        if needs_rehash(stored):
            rehashed = await off_the_loop(hash_password, password)
            if await self.storage.update_one(
                self.users,
                {"_id": document["_id"], "password_hash": stored},
                {"$set": {"password_hash": rehashed}},
            ):
                stored = rehashed
        return User.from_document(document), stored

    async def user(self, user_id: str, *, password_hash: str | None = None) -> User | None:
        """An enabled user by id, as stored now (login and refresh re-read roles
        and status); with ``password_hash``, only while that is still the hash."""
        if not ObjectId.is_valid(user_id):
            return None
        document = await self.storage.find_one(self.users, {"_id": ObjectId(user_id)})
        if document is None or document.get("disabled"):
            return None
        if password_hash is not None and document.get("password_hash") != password_hash:
            return None
        return User.from_document(document)

    async def user_data(self, user_id: str) -> dict[str, Any]:
        """The user's ``data`` (what rules read as ``%%user.data``; ``shoal
        users set-data``); empty when there is none, or no such user."""
        if not ObjectId.is_valid(user_id):
            return {}
        document = await self.storage.find_one(
            self.users, {"_id": ObjectId(user_id)}, projection={"data": 1}
        )
        data = document.get("data") if document is not None else None
        return dict(data) if isinstance(data, dict) else {}

    async def set_data(self, name: str, data: dict[str, Any]) -> UserInfo | None:
        """Set fields of the user's ``data`` (the others are kept)."""
        if not data:
            return await self.find_user(name)
        return await self._change(
            name, {"$set": {f"data.{key}": value for key, value in data.items()}}
        )

    async def find_user(self, name: str) -> UserInfo | None:
        document = await self.storage.find_one(self.users, {"name": name})
        return UserInfo.from_document(document) if document is not None else None

    async def list_users(self) -> list[UserInfo]:
        documents = await self.storage.find_page(
            self.users,
            {},
            sort=[("name", 1)],
            projection={"password_hash": 0},
            skip=0,
            limit=0,
        )
        return [UserInfo.from_document(document) for document in documents]

    async def _change(self, name: str, update: dict[str, Any]) -> UserInfo | None:
        document = await self.storage.find_one(self.users, {"name": name})
        if document is None:
            return None
        if not await self.storage.update_one(self.users, {"_id": document["_id"]}, update):
            return None  # deleted in between
        changed = await self.storage.find_one(self.users, {"_id": document["_id"]})
        return UserInfo.from_document(changed) if changed is not None else None

    async def set_disabled(self, name: str, disabled: bool) -> UserInfo | None:
        return await self._change(name, {"$set": {"disabled": disabled}})

    async def set_roles(self, name: str, roles: list[str]) -> UserInfo | None:
        return await self._change(name, {"$set": {"roles": sorted(set(roles))}})

    async def set_password(self, name: str, password: str) -> UserInfo | None:
        hashed = await off_the_loop(hash_password, password)
        return await self._change(name, {"$set": {"password_hash": hashed}})

    async def delete_user(self, name: str) -> UserInfo | None:
        document = await self.storage.find_one(self.users, {"name": name})
        if document is None:
            return None
        if not await self.storage.delete_if(self.users, {"_id": document["_id"]}):
            return None
        return UserInfo.from_document(document)

    # -- API keys ----------------------------------------------------------

    async def create_api_key(self, name: str, roles: list[str]) -> tuple[str, ApiKeyInfo]:
        """A new key; the plain key is returned here and never again."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        document = {
            "_id": ObjectId(),
            "name": name,
            "roles": sorted(set(roles)),
            "key_hash": sha256_hex(key),
            "revoked": False,
            "_created": now(),
        }
        await self.storage.insert_many(self.apikeys, [document])
        return key, self._key_info(document)

    async def principal_for_key(self, key: str) -> Principal | None:
        if not key.startswith(API_KEY_PREFIX) or len(key) > 128:
            return None
        wanted = sha256_hex(key)
        document = await self.storage.find_one(self.apikeys, {"key_hash": wanted})
        if document is None or document.get("revoked"):
            return None
        # The lookup matched on the hash already; compare again in constant time
        # so that no code path compares secrets with ==.
        if not hmac.compare_digest(document["key_hash"], wanted):
            return None
        return Principal(
            id=str(document["_id"]),
            name=document["name"],
            roles=frozenset(document.get("roles", [])),
            kind="apikey",
            via="apikey",
        )

    async def api_key_active(self, key_id: str) -> bool:
        """Whether the API key ``key_id`` exists and is not revoked."""
        if not ObjectId.is_valid(key_id):
            return False
        document = await self.storage.find_one(
            self.apikeys, {"_id": ObjectId(key_id)}, projection={"revoked": 1}
        )
        return document is not None and not document.get("revoked")

    async def list_api_keys(self) -> list[ApiKeyInfo]:
        documents = await self.storage.find_page(
            self.apikeys, {}, sort=[("_created", 1)], projection=None, skip=0, limit=0
        )
        return [self._key_info(document) for document in documents]

    async def revoke_api_key(self, key_id: str) -> bool:
        if not ObjectId.is_valid(key_id):
            return False
        return await self.storage.update_one(
            self.apikeys, {"_id": ObjectId(key_id)}, {"$set": {"revoked": True}}
        )

    @staticmethod
    def _key_info(document: dict[str, Any]) -> ApiKeyInfo:
        return ApiKeyInfo(
            id=str(document["_id"]),
            name=document["name"],
            roles=frozenset(document.get("roles", [])),
            created=document.get("_created"),
            revoked=bool(document.get("revoked")),
        )
