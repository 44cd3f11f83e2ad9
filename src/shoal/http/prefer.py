"""The ``Prefer`` request header (RFC 7240) and ``Preference-Applied``.

    Prefer: return=representation        writes answer with the stored document
    Prefer: return=minimal               writes answer 204 with headers only
    Prefer: count=none|estimated|exact   how a list counts its documents

Preferences a server does not know are ignored, as the RFC says; the answer's
``Preference-Applied`` names those it honoured.
"""

from __future__ import annotations

from collections.abc import Mapping

from .call import Call, Reply

#: The preferences Shoal knows, and their values.
KNOWN = {
    "return": frozenset({"representation", "minimal"}),
    "count": frozenset({"none", "estimated", "exact"}),
}


def parse_prefer(headers: list[str]) -> dict[str, str]:
    """The known preferences of ``Prefer`` header values (the first of each
    wins; unknown names, unknown values and parameters are ignored)."""
    preferences: dict[str, str] = {}
    for header in headers:
        for item in header.split(","):
            token = item.split(";", 1)[0].strip()
            name, _, value = token.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"').lower()
            if name in KNOWN and value in KNOWN[name] and name not in preferences:
                preferences[name] = value
    return preferences


def preferences(call: Call) -> dict[str, str]:
    """The request's known preferences."""
    return parse_prefer(call.headers.getlist("Prefer"))


def applied(reply: Reply, honoured: Mapping[str, str]) -> Reply:
    """Say which preferences the answer honoured (and that it depends on them)."""
    if honoured:
        reply.headers["Preference-Applied"] = ", ".join(
            f"{name}={value}" for name, value in honoured.items()
        )
    reply.headers.vary("Prefer")
    return reply
