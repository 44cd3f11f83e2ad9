"""``resources.<name>.rules``: per-role document filters and field
permissions, in the shape of Atlas App Services rules (docs/how-to/rules.md).
The config is checked here; ``resources/roles.py`` applies it.

``%%root.<field>`` (a field of the document) is taken only as a top-level key
of ``apply_when``, where it makes the role apply per document; anywhere else
(inside ``$or``, as a value, in ``document_filters``) it is refused."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from pydantic import Field, field_validator

from ..pipelines import FILTER_REFUSED_OPERATORS, walk
from .base import Section

#: The expansions a rule may use (``%%user.data.<field>`` besides these).
RULE_EXPANSIONS = frozenset({"%%user.id", "%%user.name", "%%user.roles", "%%now"})
#: ``%%root.<field>``: a field of the document, as a top-level key of ``apply_when`` only.
ROOT = "%%root."


def _check_expansions(value: Any, where: str) -> None:
    """Refuse an expansion Shoal does not know, in names and in values (App
    Services' ``%`` operators, ``%function`` and the like, too)."""
    for text in _strings_and_keys(value):
        if not text.startswith("%"):
            continue
        if text.startswith("%%root"):
            raise ValueError(
                f"{where}: %%root is taken only as a top-level key of apply_when "
                "('%%root.<field>': value), not here"
            )
        if text in RULE_EXPANSIONS or re.fullmatch(r"%%user\.data\.[A-Za-z_][\w.-]*", text):
            continue
        if text.startswith("%%user.custom_data."):
            field = text.removeprefix("%%user.custom_data.")
            raise ValueError(
                f"{where}: {text!r}: the user's data is %%user.data here (shoal users "
                f"set-data); write %%user.data.{field}"
            )
        known = ", ".join(sorted(RULE_EXPANSIONS | {"%%user.data.<field>"}))
        if not text.startswith("%%"):
            raise ValueError(f"{where}: {text!r}: App Services' % operators are not supported")
        raise ValueError(f"{where}: {text!r} is not an expansion Shoal knows ({known})")


def _strings_and_keys(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            found.append(str(key))
            found.extend(_strings_and_keys(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_strings_and_keys(item))
    elif isinstance(value, str):
        found.append(value)
    return found


class RuleFieldSettings(Section):
    """What a role may do with one field (or with the fields ``fields`` does
    not list: ``additional_fields``). Writing implies reading."""

    read: bool = False
    write: bool = False


class RuleFiltersSettings(Section):
    """The documents a role may read and write: MongoDB query filters, with
    expansions (``%%user.data.region``)."""

    read: dict[str, Any] | None = None
    write: dict[str, Any] | None = None

    @field_validator("read", "write")
    @classmethod
    def _safe_filter(cls, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, _ in walk(filter or {}):
            if key in FILTER_REFUSED_OPERATORS:
                raise ValueError(f"{key} is not allowed in a document filter")
        _check_expansions(filter, "document_filters")
        return filter


class RuleRoleSettings(Section):
    """One role of a resource's rules, in the shape of Atlas App Services."""

    name: str = Field(min_length=1)
    apply_when: dict[str, Any] = Field(
        default_factory=dict,
        description="A MongoDB query on the caller's expansions ({'%%user.roles': 'admin'}); "
        "{} matches every caller, anonymous ones too. A top-level '%%root.<field>' key is a "
        "condition on the document ({'%%root.owner': '%%user.id'}): the role applies per "
        "document.",
    )
    document_filters: RuleFiltersSettings = RuleFiltersSettings()
    read: bool = False
    write: bool = False
    insert: bool = False
    delete: bool = False
    fields: dict[str, RuleFieldSettings] = Field(default_factory=dict)
    additional_fields: RuleFieldSettings | None = None

    @cached_property
    def static_filters(self) -> bool:
        """Whether the document filters name no expansion (then they are the
        same for every caller the role applies to)."""
        texts = _strings_and_keys(self.document_filters.model_dump())
        return not any(text.startswith("%") for text in texts)

    @field_validator("apply_when")
    @classmethod
    def _known_expansions(cls, apply_when: dict[str, Any]) -> dict[str, Any]:
        for key, _ in walk(apply_when):
            if key in FILTER_REFUSED_OPERATORS:
                raise ValueError(f"{key} is not allowed in apply_when")
        for key, value in apply_when.items():
            if str(key).startswith(ROOT):
                field = str(key).removeprefix(ROOT)
                if not field or field.startswith("$") or "" in field.split("."):
                    raise ValueError(f"apply_when: {key!r} names no field of the document")
                _check_expansions(value, f"apply_when[{key!r}]")
            else:
                _check_expansions({key: value}, "apply_when")
        return apply_when

    def reads(self, name: str) -> bool:
        """Whether the role lets a caller read the top-level field ``name``."""
        rule = self.fields.get(name, self.additional_fields)
        if rule is None:
            return self.read or self.write
        return rule.read or rule.write

    @property
    def reads_any(self) -> bool:
        """Whether the role lets a caller read some field (else no document)."""
        others = self.additional_fields
        if (self.read or self.write) if others is None else (others.read or others.write):
            return True
        return any(rule.read or rule.write for rule in self.fields.values())

    @cached_property
    def root_fields(self) -> list[str]:
        """The document's fields that ``apply_when`` names (``%%root.<field>``)."""
        return [key.removeprefix(ROOT) for key in self.apply_when if key.startswith(ROOT)]

    @field_validator("fields")
    @classmethod
    def _top_level_fields(cls, fields: dict[str, RuleFieldSettings]) -> dict[str, Any]:
        for name in fields:
            if not name or name.startswith(("$", "_")):
                raise ValueError(f"{name!r} is not a field a rule can govern")
            if "." in name:
                raise ValueError(f"{name!r}: rules on nested fields are not yet supported")
        return fields


class RulesSettings(Section):
    """``resources.<name>.rules``: the first role whose ``apply_when`` matches
    the caller applies; no role matching: nothing is allowed."""

    roles: list[RuleRoleSettings] = Field(min_length=1)

    @cached_property
    def root_fields(self) -> list[str]:
        """The document's fields some role's ``apply_when`` names (``%%root``)."""
        return sorted({field for role in self.roles for field in role.root_fields})

    @cached_property
    def uses_user_data(self) -> bool:
        """Whether a role names ``%%user.data.<field>`` (then each request
        reads the user's data); found once, asked on every request."""
        return any(
            text.startswith("%%user.data.")
            for role in self.roles
            for text in _strings_and_keys([role.apply_when, role.document_filters.model_dump()])
        )

    @field_validator("roles")
    @classmethod
    def _unique_names(cls, roles: list[RuleRoleSettings]) -> list[RuleRoleSettings]:
        names = [role.name for role in roles]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two roles are named {name!r}")
        return roles

    @field_validator("roles")
    @classmethod
    def _readable_roots(cls, roles: list[RuleRoleSettings]) -> list[RuleRoleSettings]:
        """Refuse a role that hides a field some ``%%root`` condition names:
        which role's view a caller gets would tell that field's value."""
        fields = {field for role in roles for field in role.root_fields}
        for role in roles:
            if not role.reads_any:
                continue
            for field in sorted(fields):
                top = field.split(".", 1)[0]
                if not top.startswith("_") and not role.reads(top):
                    raise ValueError(
                        f"role {role.name!r} hides {top!r}, which %%root.{field} names: "
                        "the view it gives would tell its value"
                    )
        return roles
