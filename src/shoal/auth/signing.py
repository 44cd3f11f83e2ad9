"""The secret that signs access tokens (HS256/384/512).

Outside development it is ``secret_key`` (``SHOAL_SECRET_KEY``), which the
config refuses while it is the placeholder or too short. In development a
config may leave it out: Shoal then signs with a random secret of its own, kept
in ``.shoal/secret_key`` beside the config (the embedded store's folder; the
working directory's ``.shoal/`` without a config file), readable by its owner
only, so tokens survive restarts and every worker signs alike. The placeholder
is never used to sign anything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from ..config import Settings


def signing_secret(settings: Settings) -> str:
    """The secret to sign HS* tokens with (made on first use in development)."""
    if settings.generates_secret:
        return development_secret(settings.development_secret_file)
    return settings.secret_key.get_secret_value()


def development_secret(path: Path) -> str:
    """The secret kept in ``path``; made (random, 512 bits, mode 0600) when there
    is none. Several workers starting at once all end up with the same one: the
    file appears whole or not at all."""
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_urlsafe(64) + "\n")
        # link() refuses to replace an existing file: the first worker's wins.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 64:
        raise RuntimeError(
            f"{path} holds no usable secret; delete it and Shoal makes a new one "
            "(tokens signed with the old one stop working)"
        )
    return secret
