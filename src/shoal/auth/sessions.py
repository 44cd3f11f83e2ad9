"""Server-side auth state in shared state (Redis), so every instance agrees
at once: refresh tokens and their families, revoked access tokens, browser
sessions, and each user's not-before mark.

Every key of a user carries the user's id as its Redis Cluster hash tag, so all
of them live in one slot and each check below is one ``MGET``, on a Cluster too
(under the configured prefix, each with a TTL):

- ``auth:{<user>}:epoch``           the user's not-before mark (see below);
- ``auth:{<user>}:revoked:<jti>``   present when an access token is revoked;
- ``auth:{<user>}:family:<id>``     present when a login's family is revoked;
- ``auth:{<user>}:refresh:<sha256>``  a refresh token's grant;
- ``auth:{<user>}:used:<sha256>``   set once that refresh token is rotated;
- ``auth:{<user>}:session:<sha256>``  a browser session's grant.

The user's id travels in what the client holds (the access token's ``sub``, and
the first part of refresh tokens and session ids), so each key can be named
without a lookup.

**Not-before mark.** Disabling, deleting, or changing a user's roles or
password stamps ``auth:{<user>}:epoch`` with a new value (Redis's clock in ms,
always above the previous one). Every credential carries the mark current when
it was issued; one carrying an older mark is refused. The mark is read before
the user's MongoDB document at login and refresh, and written after that
document changes, so a credential issued while a change races with it is
refused too. The key outlives every credential issued before it was written,
and a missing key counts as 0.

Only hashes of tokens are stored; a leaked Redis dump reveals no credential.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import orjson

from ..config import AuthSettings
from ..hashing import sha256_hex
from ..state import SharedState
from .verdicts import KeptVerdicts

#: What a user id in a client-held credential may look like (an ObjectId's hex,
#: in practice); anything else is not one of Shoal's.
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def user_key(user_id: str, name: str) -> str:
    """The key ``name`` of one user, in the user's own Cluster slot."""
    return f"auth:{{{user_id}}}:{name}"


@dataclass(frozen=True)
class Grant:
    """Who a refresh token or session belongs to, and the not-before mark it
    was issued under."""

    subject: str
    name: str
    roles: frozenset[str]
    family: str
    csrf_token: str | None = None
    epoch: int = 0

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "sub": self.subject,
                "name": self.name,
                "roles": sorted(self.roles),
                "fam": self.family,
                "csrf": self.csrf_token,
                "epoch": self.epoch,
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
            epoch=int(data.get("epoch", 0)),
        )


class RefreshReused(Exception):
    """A refresh token was presented again after its rotation."""


class SignedOut(Exception):
    """A credential issued before the user's not-before mark (the user was
    disabled, deleted, or had their roles or password changed since)."""


@dataclass(frozen=True)
class Rotation:
    """A refresh token, consumed: its grant and the user's current mark."""

    grant: Grant
    epoch: int = 0


def _split(credential: str, parts: int) -> list[str] | None:
    pieces = credential.split(".")
    if len(pieces) != parts or not all(pieces) or not _USER_ID.match(pieces[0]):
        return None
    return pieces


class AuthStore:
    def __init__(
        self, state: SharedState, *, refresh_ttl: int, session_ttl: int, access_ttl: int
    ) -> None:
        self.state = state
        self.refresh_ttl = refresh_ttl
        self.session_ttl = session_ttl
        # The mark must outlive every credential issued before it, whatever kind.
        self.epoch_ttl = max(refresh_ttl, session_ttl, access_ttl) + 60
        #: Verdicts kept in memory (``keep_verdicts``), or None: Redis every time.
        self.kept: KeptVerdicts | None = None

    def keep_verdicts(self) -> None:
        """Keep tokens found not refused in this worker's memory, where the
        store can watch keys (``auth.revocation_cache``; see ``verdicts``)."""
        watch = self.state.watch()
        if watch is not None:
            self.kept = KeptVerdicts(watch)

    @classmethod
    def for_settings(cls, state: SharedState, settings: AuthSettings) -> AuthStore:
        """The auth state of a config, for the server and for ``shoal users``."""
        return cls(
            state,
            refresh_ttl=settings.refresh_token_ttl,
            session_ttl=settings.session_ttl,
            access_ttl=settings.access_token_ttl,
        )

    # -- the not-before mark -----------------------------------------------

    async def epoch(self, user_id: str) -> int:
        """The user's current not-before mark (0 when there is none)."""
        return int(await self.state.get(user_key(user_id, "epoch")) or 0)

    async def sign_out_everywhere(self, user_id: str) -> int:
        """Refuse, from now on and on every instance, every access token,
        refresh token and session the user holds; returns the new mark."""
        self._forget(user_id)
        mark = await self.state.stamp(user_key(user_id, "epoch"), ttl=self.epoch_ttl)
        self._forget(user_id)
        return mark

    def _forget(self, user_id: str) -> None:
        # Before a change of the user's keys (no read begun earlier is kept) and
        # after it (nor one that read the old values meanwhile).
        if self.kept is not None:
            self.kept.forget(user_id)

    # -- refresh tokens ----------------------------------------------------

    async def new_refresh_token(self, grant: Grant) -> str:
        token = f"{grant.subject}.{grant.family}.{secrets.token_urlsafe(32)}"
        key = user_key(grant.subject, f"refresh:{sha256_hex(token)}")
        await self.state.set(key, grant.encode(), ttl=self.refresh_ttl)
        return token

    async def rotate(self, token: str) -> Rotation | None:
        """The grant of a refresh token, consuming it; None if unknown/expired.

        A token presented a second time revokes its whole family (someone
        else holds a copy) and raises RefreshReused; one issued before the
        user's not-before mark raises SignedOut.
        """
        pieces = _split(token, 3)
        if pieces is None:
            return None
        user_id, family, _ = pieces
        digest = sha256_hex(token)
        raw, used, revoked, epoch = await self.state.get_many(
            user_key(user_id, f"refresh:{digest}"),
            user_key(user_id, f"used:{digest}"),
            user_key(user_id, f"family:{family}"),
            user_key(user_id, "epoch"),
        )
        if raw is None:
            return None
        grant = Grant.decode(raw)
        if grant.subject != user_id or grant.family != family:
            return None
        if used is not None or revoked is not None:
            await self.revoke_family(user_id, family)
            raise RefreshReused()
        current = int(epoch or 0)
        if grant.epoch < current:
            await self.revoke_family(user_id, family)
            raise SignedOut()
        # Claiming the token is one atomic SET NX: of two concurrent uses,
        # exactly one wins and the other is treated as a replay.
        claimed = await self.state.set(
            user_key(user_id, f"used:{digest}"), b"1", ttl=self.refresh_ttl, only_if_absent=True
        )
        if not claimed:
            await self.revoke_family(user_id, family)
            raise RefreshReused()
        return Rotation(grant, current)

    @staticmethod
    def refresh_subject(token: str) -> str | None:
        """The user id a refresh token names (unverified: only to find its keys)."""
        pieces = _split(token, 3)
        return pieces[0] if pieces is not None else None

    async def revoke_family(self, user_id: str, family: str) -> None:
        self._forget(user_id)
        await self.state.set(user_key(user_id, f"family:{family}"), b"1", ttl=self.refresh_ttl)
        self._forget(user_id)

    # -- access tokens -----------------------------------------------------

    async def revoke_token(self, user_id: str, jti: str, ttl: float) -> None:
        self._forget(user_id)
        await self.state.set(user_key(user_id, f"revoked:{jti}"), b"1", ttl=max(ttl, 1.0))
        self._forget(user_id)

    async def token_refused(
        self, user_id: str, jti: str, family: str | None, epoch: int
    ) -> str | None:
        """Why an access token is no longer accepted (None: it is): revoked
        itself or through its family, or issued before the user's mark.

        One round trip (one ``MGET``, one Cluster slot), whatever the answer,
        or none for a token found not refused before (``keep_verdicts``).
        """
        kept, token = self.kept, (jti, family, epoch)
        if kept is not None:
            if kept.accepted(user_id, token):
                return None
            version = kept.version(user_id)
        keys = [user_key(user_id, "epoch"), user_key(user_id, f"revoked:{jti}")]
        if family is not None:
            keys.append(user_key(user_id, f"family:{family}"))
        current, *revocations = await self.state.get_many(*keys)
        if any(value is not None for value in revocations):
            return "the access token was revoked"
        if epoch < int(current or 0):
            return "the access token was revoked: the account changed since; log in again"
        if kept is not None:
            kept.accept(user_id, token, version)
        return None

    # -- browser sessions --------------------------------------------------

    async def new_session(self, grant: Grant) -> str:
        session_id = f"{grant.subject}.{secrets.token_urlsafe(32)}"
        key = user_key(grant.subject, f"session:{sha256_hex(session_id)}")
        await self.state.set(key, grant.encode(), ttl=self.session_ttl)
        return session_id

    async def session(self, session_id: str) -> Grant | None:
        """The session's grant; None when it is unknown, ended or expired, or
        was started before the user's not-before mark (it is ended then)."""
        pieces = _split(session_id, 2)
        if pieces is None:
            return None
        key = user_key(pieces[0], f"session:{sha256_hex(session_id)}")
        raw, epoch = await self.state.get_many(key, user_key(pieces[0], "epoch"))
        if raw is None:
            return None
        grant = Grant.decode(raw)
        if grant.subject != pieces[0]:
            return None
        if grant.epoch < int(epoch or 0):
            await self.state.delete(key)
            return None
        return grant

    async def end_session(self, session_id: str) -> None:
        pieces = _split(session_id, 2)
        if pieces is not None:
            await self.state.delete(user_key(pieces[0], f"session:{sha256_hex(session_id)}"))
