"""Access tokens: short-lived JWTs (PyJWT), signed with the secret key (HS*)
or a key file (RS256/ES256/EdDSA); see docs/decisions/0005-auth-libraries.md.

Decoding accepts only the configured algorithm (so ``alg: none`` and algorithm
confusion are refused), and requires ``iss``, ``aud``, ``exp``, ``iat``, ``jti``
and ``sub``; a token issued in the future is refused. A token also carries
``epoch``, the user's not-before mark when it was issued (see ``sessions``).

A token whose signature and claims were checked once is kept, by the token
itself, in a bounded per-process table: a token cannot change, so a later use
only has its expiry checked again (PyJWT's checks cost about a tenth of a
signed-in item GET's CPU). Revocation is not in it: ``sessions.token_refused``
asks Redis on every request.

Keys shorter than PyJWT recommends for the algorithm are refused by the config
(``shoal.config.settings``); PyJWT is also told to refuse them, so its
``InsecureKeyLengthWarning`` can never be raised.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from ..config import AuthSettings

_REQUIRED = ["iss", "aud", "exp", "iat", "jti", "sub"]
#: Seconds of clock difference forgiven on ``exp`` and ``iat``.
LEEWAY = 5
#: Checked tokens kept per process (the oldest goes first).
VERIFIED_KEPT = 1024
#: Subjects are user ids (an ObjectId's hex); they name Redis keys (sessions.py).
_SUBJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class TokenError(Exception):
    """A token that cannot be accepted; the message says why (never the token)."""


@dataclass(frozen=True)
class AccessToken:
    token: str
    jti: str
    expires_in: int


class TokenIssuer:
    def __init__(self, settings: AuthSettings, secret_key: str) -> None:
        self.settings = settings
        self.algorithm = settings.algorithm
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._verified: dict[str, dict[str, Any]] = {}
        if settings.algorithm.startswith("HS"):
            self._signing_key: Any = secret_key
            self._verifying_key: Any = secret_key
        else:
            assert settings.private_key_file is not None
            assert settings.public_key_file is not None
            self._signing_key = settings.private_key_file.read_bytes()
            self._verifying_key = settings.public_key_file.read_bytes()

    def issue(
        self,
        *,
        subject: str,
        name: str,
        roles: frozenset[str],
        family: str | None,
        epoch: int = 0,
    ) -> AccessToken:
        now = int(time.time())
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "iat": now,
            "exp": now + self.settings.access_token_ttl,
            "jti": jti,
            "sub": subject,
            "name": name,
            "roles": sorted(roles),
            "epoch": epoch,
        }
        if family is not None:
            claims["fam"] = family
        token = self._jwt.encode(claims, self._signing_key, algorithm=self.algorithm)
        return AccessToken(token, jti, self.settings.access_token_ttl)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of ``token``, checked (TokenError says why not)."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._checked(token)
            if len(self._verified) >= VERIFIED_KEPT:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        elif time.time() > claims["exp"] + LEEWAY:
            del self._verified[token]
            raise TokenError("the access token has expired")
        return dict(claims)

    def _checked(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                options={"require": _REQUIRED},
                leeway=LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the access token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the access token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the access token has another issuer") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("the access token's algorithm is not accepted") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the access token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"the access token lacks the {error.claim} claim") from None
        except jwt.InvalidTokenError:
            raise TokenError("the access token is malformed") from None
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise TokenError("the access token's roles claim is malformed")
        if not isinstance(claims["sub"], str) or not _SUBJECT.match(claims["sub"]):
            raise TokenError("the access token's sub claim is malformed")
        epoch = claims.setdefault("epoch", 0)
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise TokenError("the access token's epoch claim is malformed")
        return claims
