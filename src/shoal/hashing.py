"""One hash for keys and fingerprints: SHA-256, as lowercase hex."""

from __future__ import annotations

import hashlib


def sha256_hex(value: str | bytes) -> str:
    """The SHA-256 of ``value`` (text is UTF-8 encoded) as 64 hex characters.

    Used wherever Shoal stores or compares something derived from a secret or a
    caller (token and key hashes, rate-limit and cache keys, body fingerprints),
    so that the raw value never becomes a Redis key or a stored field.
    """
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()
