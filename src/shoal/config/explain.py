"""``shoal check-config --explain``: the rules (App Services' shape, the
``rules`` key of docs/how-to/rules.md) that a resource's older settings amount
to: ``public_methods``, ``public_item_methods``, ``allowed_roles``,
``allowed_read_roles``, ``allowed_write_roles`` and ``auth_field``.

Each printed ``rules`` block loads as a resource's ``rules``. Where the older
settings say something rules cannot, a note says what differs; Shoal goes on
enforcing the older settings as they are (they are checked first, and a
resource's own ``rules`` narrow what they allow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from .resources import ResourceSettings
from .settings import Settings

#: The permission each method needs of a role.
_PERMISSION = {
    "GET": "read",
    "HEAD": "read",
    "POST": "insert",
    "PATCH": "write",
    "PUT": "write",
    "DELETE": "delete",
}
_KINDS = ("read", "write", "insert", "delete")
#: ``apply_when`` for any signed-in caller (an anonymous one has no ``%%user``).
SIGNED_IN: dict[str, Any] = {"%%user.id": {"$exists": True}}


@dataclass(frozen=True)
class Explained:
    """What one resource's settings amount to: its ``rules`` and the notes on
    what they cannot say."""

    roles: list[dict[str, Any]]
    notes: list[str]


def _permissions(methods: set[str]) -> set[str]:
    return {_PERMISSION[method] for method in methods if method in _PERMISSION}


def _holds(roles: list[str]) -> dict[str, Any]:
    """``apply_when`` for a caller with one of ``roles`` (any signed-in
    caller when the list is empty, as the settings read it)."""
    return {"%%user.roles": {"$in": list(roles)}} if roles else dict(SIGNED_IN)


def _role(
    name: str, apply_when: dict[str, Any], allowed: set[str], public: set[str], owner: str | None
) -> dict[str, Any]:
    """One role: ``allowed`` its permissions; with an owner field, a signed-in
    caller's document filters (a public read has none)."""
    made: dict[str, Any] = {"name": name, "apply_when": apply_when}
    filters: dict[str, Any] = {}
    if owner and apply_when:
        if "read" in allowed and "read" not in public:
            filters["read"] = {owner: "%%user.id"}
        if allowed & {"write", "insert", "delete"}:
            filters["write"] = {owner: "%%user.id"}
    if filters:
        made["document_filters"] = filters
    made.update({kind: kind in allowed for kind in _KINDS})
    return made


def explain_resource(resource: ResourceSettings) -> Explained:
    """The rules that ``resource``'s public methods, roles and owner field
    amount to, one role per kind of caller, first match first (as rules are
    read)."""
    served = _permissions({*resource.resource_methods, *resource.item_methods})
    public = _permissions({*resource.public_methods, *resource.public_item_methods})
    readers = resource.allowed_read_roles or resource.allowed_roles
    writers = resource.allowed_write_roles or resource.allowed_roles
    reads, writes = served & {"read"}, served - {"read"}
    # Signed-in callers: those with a reader's and a writer's role, then one
    # of them, then the others (an empty list: any signed-in caller).
    classes: list[tuple[str, dict[str, Any], set[str]]]
    if readers == writers:
        classes = [("allowed" if readers else "signed-in", _holds(readers), served)]
        if readers:
            classes.append(("signed-in", dict(SIGNED_IN), set()))
    elif readers and writers:
        classes = [
            ("readers-writers", {"$and": [_holds(readers), _holds(writers)]}, served),
            ("readers", _holds(readers), reads),
            ("writers", _holds(writers), writes),
            ("signed-in", dict(SIGNED_IN), set()),
        ]
    elif readers:
        classes = [("readers", _holds(readers), served), ("signed-in", dict(SIGNED_IN), writes)]
    else:
        classes = [("writers", _holds(writers), served), ("signed-in", dict(SIGNED_IN), reads)]

    roles: list[dict[str, Any]] = []
    notes: list[str] = []
    for name, apply_when, allowed in classes:
        allowed = (allowed | public) & served
        if allowed:
            roles.append(_role(name, apply_when, allowed, public, resource.auth_field))
        if "read" not in allowed and "write" in allowed:
            notes.append(
                f"role {name!r}: with rules, writing implies reading, so its callers could "
                "also GET the documents they may change, which these settings refuse (403)"
            )
        elif "read" not in allowed and "delete" in allowed:
            notes.append(
                f"role {name!r}: with rules, a role that may not read finds nothing to "
                "delete; these settings let its callers delete documents they cannot GET"
            )
    anonymous = public & served
    if anonymous:
        roles.append(_role("anonymous", {}, anonymous, public, resource.auth_field))
    notes.extend(_differences(resource))
    return Explained(roles=roles, notes=notes)


def _differences(resource: ResourceSettings) -> list[str]:
    notes: list[str] = []
    owner = resource.auth_field
    for method in sorted({*resource.public_methods} ^ {*resource.public_item_methods}):
        where = "the list" if method in resource.public_methods else "items"
        if method in resource.resource_methods and method in resource.item_methods:
            notes.append(
                f"{method} is public on {where} only: rules do not tell lists from items "
                f"(an anonymous {method} elsewhere is a 401)"
            )
    if owner:
        notes.append(
            f"auth_field {owner!r}: Shoal also sets {owner} to the caller's id on each "
            "document a signed-in caller creates; rules only check it"
        )
    projection = resource.datasource.projection
    if projection:
        notes.append(
            "datasource.projection applies to every caller as well: "
            + ", ".join(f"{name}: {flag}" for name, flag in projection.items())
        )
    if resource.rules is not None:
        names = ", ".join(role.name for role in resource.rules.roles)
        notes.append(
            f"its own rules (roles: {names}) apply after these: a caller needs a role of each"
        )
    return notes


def explain(settings: Settings) -> str:
    """``--explain``'s YAML: per resource, its ``rules`` and notes."""
    document: dict[str, Any] = {}
    for name, resource in settings.resources.items():
        explained = explain_resource(resource)
        entry: dict[str, Any] = {"rules": {"roles": explained.roles}}
        if not explained.roles:
            entry = {"rules": None}
            explained.notes.insert(0, "no caller may do anything (no method is served)")
        if explained.notes:
            entry["notes"] = explained.notes
        document[name] = entry
    header = (
        "# The rules each resource's public methods, allowed_* roles and auth_field\n"
        "# amount to (docs/how-to/rules.md). Shoal enforces those settings as they are;\n"
        "# the notes say where rules would differ.\n"
    )
    text = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=88,
        default_flow_style=None,
    )
    return header + text


class _Dumper(yaml.SafeDumper):
    """Each value written out where it is (no ``&id001`` anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
