"""Media fields: a schema property that holds a file, stored in GridFS.

A top-level property declares a file with ``{type: string, format: binary}``,
or with Shoal's own ``x-media`` annotation (which implies it)::

    photo:
      type: string
      x-media: {max_bytes: 5000000, content_types: [image/png, image/jpeg]}

``max_bytes`` bounds the file (413 beyond); ``content_types`` lists the types a
client may send, each checked against the file's first bytes where the type
has a known signature (415 otherwise). A resource's ``media`` section bounds
the whole multipart body and its number of parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ..schemas import schema_fields
from .base import Section

MEDIA_KEYS = frozenset({"max_bytes", "content_types"})
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class MediaSettings(Section):
    """Limits of a resource's ``multipart/form-data`` writes."""

    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Bytes a multipart body may hold, files and fields (413 beyond).",
    )
    max_parts: int = Field(
        default=32, gt=0, le=1000, description="Parts a multipart body may hold (413 beyond)."
    )
    max_field_bytes: int = Field(
        default=64 * 1024,
        gt=0,
        description="Bytes the non-file parts may hold together (413 beyond).",
    )
    base64: bool = Field(
        default=False,
        description="Give each file inline, base64-encoded, in item and list reads "
        "(Eve's RETURN_MEDIA_AS_BASE64_STRING) instead of its URL.",
    )


@dataclass(frozen=True)
class MediaField:
    """One media field of a schema."""

    name: str
    max_bytes: int | None = None
    content_types: tuple[str, ...] | None = None


def is_media(rule: Mapping[str, Any]) -> bool:
    """Whether a schema property declares a file."""
    return rule.get("format") == "binary" or "x-media" in rule


def media_fields(schema: Mapping[str, Any]) -> dict[str, MediaField]:
    """The media fields of a resource's schema, by name; ValueError (naming
    the property) for a declaration Shoal cannot serve."""
    found: dict[str, MediaField] = {}
    for path, rule in schema_fields(schema):
        if not isinstance(rule, Mapping) or not is_media(rule):
            continue
        where = "schema." + ".".join(path)
        if len(path) != 1:
            raise ValueError(f"{where}: a media field must be a top-level property")
        kind = rule.get("type", "string")
        if kind != "string" and not (isinstance(kind, list) and "string" in kind):
            raise ValueError(f"{where}: a media field is type: string (it holds the file's id)")
        found[path[0]] = _field(path[0], rule.get("x-media", {}), where)
    return found


def _field(name: str, options: Any, where: str) -> MediaField:
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}.x-media: a mapping of max_bytes and content_types")
    unknown = sorted(set(options) - MEDIA_KEYS)
    if unknown:
        raise ValueError(
            f"{where}.x-media: unknown keys {', '.join(map(str, unknown))} "
            "(it takes max_bytes and content_types)"
        )
    max_bytes = options.get("max_bytes")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0
    ):
        raise ValueError(f"{where}.x-media.max_bytes: a whole number of bytes above 0")
    types = options.get("content_types")
    if types is not None:
        if not isinstance(types, list) or not types:
            raise ValueError(f"{where}.x-media.content_types: a non-empty list, e.g. [image/png]")
        for value in types:
            if not isinstance(value, str) or not _CONTENT_TYPE.match(value.lower()):
                raise ValueError(
                    f"{where}.x-media.content_types: {value!r} is not a media type (image/png)"
                )
        types = tuple(value.lower() for value in types)
    return MediaField(name, max_bytes, types)
