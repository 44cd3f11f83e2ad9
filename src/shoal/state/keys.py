"""What Shoal's key names hold."""

from __future__ import annotations


def hash_tag(key: str) -> str:
    """The part of ``key`` between its first ``{`` and the next ``}`` (the whole
    key when it has none), as Redis Cluster reads it: every key of Shoal's has
    one (``cache:{books}:gen``, ``auth:{<user id>}:epoch``)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key
