"""Signing and sessions: tokens, API keys, login throttling, and the secret key's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .base import Section

#: The secret key a fresh config starts with; refused outside development.
SECRET_KEY_PLACEHOLDER = "change-me"  # noqa: S105 - refused outside development

#: The shortest secret_key for each HMAC algorithm: the hash's output size.
HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class AuthSettings(Section):
    """Tokens, sessions, API keys and login throttling."""

    issuer: str = "shoal"
    audience: str = "shoal-api"
    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"] = "HS256"
    private_key_file: Path | None = Field(
        default=None, description="PEM signing key for RS256/ES256/EdDSA; HS* use secret_key."
    )
    public_key_file: Path | None = None
    access_token_ttl: int = Field(default=900, gt=0, le=86_400)
    refresh_token_ttl: int = Field(default=14 * 86_400, gt=0)
    session_ttl: int = Field(default=8 * 3600, gt=0)
    revocation_cache: bool = Field(
        default=False,
        description="Keep each access token found not revoked in the worker's memory until "
        "Redis pushes a change of its user's auth keys (not on a Redis Cluster): a request "
        "with a bearer token then asks Redis nothing, and a revocation through another "
        "instance takes effect there once its push arrives rather than at once.",
    )
    session_cookie: str = Field(default="shoal_session", pattern=r"^[A-Za-z0-9_-]+$")
    users_collection: str = "shoal_users"
    apikeys_collection: str = "shoal_apikeys"
    login_slowdown_after: int = Field(
        default=3, ge=1, description="Failed logins (per user or address) before slowing down."
    )
    login_lockout_after: int = Field(
        default=10, ge=1, description="Failed logins before refusing for login_lockout_seconds."
    )
    login_lockout_seconds: int = Field(default=900, gt=0)

    @model_validator(mode="after")
    def _keys_for_algorithm(self) -> AuthSettings:
        if self.algorithm.startswith("HS"):
            return self
        # Imported here, not at the top: only configs with key files pay for
        # loading PyJWT and cryptography (the CLI's light commands do not).
        import jwt

        try:
            algorithm = jwt.get_algorithm_by_name(self.algorithm)
        except NotImplementedError:
            raise ValueError(
                f"algorithm {self.algorithm} needs the cryptography package: "
                "pip install 'shoal[keys]' (HS256, HS384 and HS512 do not)"
            ) from None
        for key in ("private_key_file", "public_key_file"):
            path = getattr(self, key)
            if path is None:
                raise ValueError(f"{key} is required with algorithm {self.algorithm}")
            if not Path(path).is_file():
                raise ValueError(f"{key}: {path} is not a readable file")
            try:
                loaded = algorithm.prepare_key(Path(path).read_bytes())
            except (ValueError, TypeError, jwt.InvalidKeyError) as error:
                raise ValueError(f"{key}: {path} is not a PEM key for {self.algorithm}") from error
            weakness = algorithm.check_key_length(loaded)
            if weakness is not None:
                raise ValueError(f"{key}: {weakness}")
        return self
