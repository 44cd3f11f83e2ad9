"""Who is calling: a user (token or cookie session) or an API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    roles: frozenset[str]
    kind: Literal["user", "apikey"]
    #: How the caller proved it: "bearer", "apikey", "session", or "password"
    #: (name and password headers on every request, where a route accepts them).
    via: Literal["bearer", "apikey", "session", "password"]
    #: For bearer tokens: the token's id and refresh family (for logout).
    token_id: str | None = None
    family: str | None = None
    #: For cookie sessions: the session's key and CSRF token.
    session_key: str | None = None
    csrf_token: str | None = None
    #: The user's not-before mark the credentials carry (bearer, password), and
    #: when a bearer token expires.
    epoch: int = 0
    expires: float | None = None

    @property
    def rate_key(self) -> str:
        """The key rate limits count this caller under."""
        return f"{self.kind}:{self.id}"
