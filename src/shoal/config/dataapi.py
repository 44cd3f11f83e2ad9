"""The Atlas Data API drop-in: which collections of which databases it serves, to whom."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .base import Section
from .rules import RulesSettings

#: A MongoDB database name (MongoDB refuses these characters in one).
_DATABASE_NAME = r"^[^/\\. \"$\x00]{1,63}$"


class DataApiCollectionSettings(Section):
    """One collection the Data API serves, and the roles that may use it.

    ``roles`` may read and write; ``read_roles`` and ``write_roles``, when given,
    replace it for reads (find, findOne, aggregate) or writes (insert, update,
    replace, delete). A role list left empty gives that kind of access to no one.
    """

    roles: list[str] = Field(default_factory=list)
    read_roles: list[str] | None = None
    write_roles: list[str] | None = None
    rules: RulesSettings | None = Field(
        default=None,
        description="Per-role document filters and field permissions (App Services rules), "
        "for a collection no resource serves; see docs/how-to/rules.md.",
    )

    @model_validator(mode="after")
    def _someone_may_use_it(self) -> DataApiCollectionSettings:
        if not self.reader_roles and not self.writer_roles:
            raise ValueError("gives no role any access: set roles, read_roles or write_roles")
        return self

    @property
    def reader_roles(self) -> frozenset[str]:
        return frozenset(self.roles if self.read_roles is None else self.read_roles)

    @property
    def writer_roles(self) -> frozenset[str]:
        return frozenset(self.roles if self.write_roles is None else self.write_roles)


class DataApiDatabaseSettings(Section):
    name: str | None = Field(
        default=None,
        pattern=_DATABASE_NAME,
        description="The MongoDB database this Data API database stands for; "
        "none: the one of the same name.",
    )
    collections: dict[str, DataApiCollectionSettings] = Field(default_factory=dict)

    @field_validator("collections")
    @classmethod
    def _collection_names(
        cls, collections: dict[str, DataApiCollectionSettings]
    ) -> dict[str, DataApiCollectionSettings]:
        for name in collections:
            if not name or "$" in name or "\x00" in name or name.startswith("system."):
                raise ValueError(f"{name!r} is not a collection name MongoDB accepts")
        return collections


class DataApiSourceSettings(Section):
    databases: dict[str, DataApiDatabaseSettings] = Field(default_factory=dict)

    @field_validator("databases")
    @classmethod
    def _database_names(
        cls, databases: dict[str, DataApiDatabaseSettings]
    ) -> dict[str, DataApiDatabaseSettings]:
        for name in databases:
            if not re.fullmatch(_DATABASE_NAME, name):
                raise ValueError(f"{name!r} is not a database name MongoDB accepts")
        return databases


class DataApiSettings(Section):
    """The Atlas Data API v1 drop-in (``POST /action/<action>``): off by default,
    and serving only the collections listed under ``data_sources``."""

    enabled: bool = False
    app_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Also serve /app/<app_id>/endpoint/data/v1/action/..., the hosted URL's shape.",
    )
    max_time_ms: int = Field(
        default=60_000, gt=0, description="Longest a find or aggregate may run in MongoDB."
    )
    data_sources: dict[str, DataApiSourceSettings] = Field(
        default_factory=dict,
        description="dataSource name → database name → collection name → roles.",
    )
