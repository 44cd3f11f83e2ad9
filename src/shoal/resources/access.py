"""What a caller may reach of a resource: auth decides it, the service applies it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Document = dict[str, Any]


@dataclass(frozen=True)
class Access:
    """Which documents a caller may see, and what a caller's inserts carry.

    ``filter`` is added to every lookup (owner restriction); ``owner`` is the
    (field, value) pair set on every document the caller creates.
    """

    filter: Mapping[str, Any] = field(default_factory=dict)
    owner: tuple[str, Any] | None = None
    #: Callers with the same cache_key see the same documents (the response
    #: cache keys on it): "public", "all", or "owner:<id>".
    cache_key: str = "all"

    def restrict(self, query: Mapping[str, Any]) -> Document:
        if not self.filter:
            return dict(query)
        if not query:
            return dict(self.filter)
        return {"$and": [dict(query), dict(self.filter)]}


UNRESTRICTED = Access()
