"""Server-side auth state in shared state (Redis), so every instance agrees
at once: refresh tokens and their families, revoked access tokens, and
browser sessions.

Keys (under the configured prefix), each with a TTL:

- ``auth:refresh:<sha256>``  the refresh token's owner and family;
- ``auth:used:<sha256>``     set once the refresh token is rotated;
- ``auth:family:<id>``       present when a family is revoked;
- ``auth:revoked:<jti>``     present when an access token is revoked;
- ``auth:session:<sha256>``  a browser session (user, roles, CSRF token).

Only hashes of tokens are stored; a leaked Redis dump reveals no credential.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import orjson

from ..hashing import sha256_hex
from ..state import SharedState


@dataclass(frozen=True)
class Grant:
    """Who a refresh token or session belongs to."""

    subject: str
    name: str
    roles: frozenset[str]
    family: str
    csrf_token: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "sub": self.subject,
                "name": self.name,
                "roles": sorted(self.roles),
                "fam": self.family,
                "csrf": self.csrf_token,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Grant:
        data = orjson.loads(raw)
        return cls(
            subject=data["sub"],
            name=data["name"],
            roles=frozenset(data["roles"]),
            family=data["fam"],
            csrf_token=data.get("csrf"),
        )


class RefreshReused(Exception):
    """A refresh token was presented again after its rotation."""


class AuthStore:
    def __init__(self, state: SharedState, *, refresh_ttl: int, session_ttl: int) -> None:
        self.state = state
        self.refresh_ttl = refresh_ttl
        self.session_ttl = session_ttl

    # -- refresh tokens ----------------------------------------------------

    async def new_refresh_token(self, grant: Grant) -> str:
        token = f"{grant.family}.{secrets.token_urlsafe(32)}"
        await self.state.set(
            f"auth:refresh:{sha256_hex(token)}", grant.encode(), ttl=self.refresh_ttl
        )
        return token

    async def rotate(self, token: str) -> Grant | None:
        """The grant of a refresh token, consuming it; None if unknown/expired.

        A token presented a second time revokes its whole family (someone
        else holds a copy) and raises RefreshReused.
        """
        key = sha256_hex(token)
        raw, used = await self.state.get_many(f"auth:refresh:{key}", f"auth:used:{key}")
        if raw is None:
            return None
        grant = Grant.decode(raw)
        if used is not None or await self.family_revoked(grant.family):
            await self.revoke_family(grant.family)
            raise RefreshReused()
        # Claiming the token is one atomic SET NX: of two concurrent uses,
        # exactly one wins and the other is treated as a replay.
        claimed = await self.state.set(
            f"auth:used:{key}", b"1", ttl=self.refresh_ttl, only_if_absent=True
        )
        if not claimed:
            await self.revoke_family(grant.family)
            raise RefreshReused()
        return grant

    async def revoke_family(self, family: str) -> None:
        await self.state.set(f"auth:family:{family}", b"1", ttl=self.refresh_ttl)

    async def family_revoked(self, family: str) -> bool:
        return await self.state.get(f"auth:family:{family}") is not None

    # -- access tokens -----------------------------------------------------

    async def revoke_token(self, jti: str, ttl: float) -> None:
        await self.state.set(f"auth:revoked:{jti}", b"1", ttl=max(ttl, 1.0))

    async def token_refused(self, jti: str, family: str | None) -> bool:
        """Whether an access token was revoked, itself or through its family."""
        keys = [f"auth:revoked:{jti}"]
        if family is not None:
            keys.append(f"auth:family:{family}")
        return any(value is not None for value in await self.state.get_many(*keys))

    # -- browser sessions --------------------------------------------------

    async def new_session(self, grant: Grant) -> str:
        session_id = secrets.token_urlsafe(32)
        await self.state.set(
            f"auth:session:{sha256_hex(session_id)}", grant.encode(), ttl=self.session_ttl
        )
        return session_id

    async def session(self, session_id: str) -> Grant | None:
        raw = await self.state.get(f"auth:session:{sha256_hex(session_id)}")
        return Grant.decode(raw) if raw is not None else None

    async def end_session(self, session_id: str) -> None:
        await self.state.delete(f"auth:session:{sha256_hex(session_id)}")
