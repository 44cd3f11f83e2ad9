"""Document-level rules shared by every write: ids, ETags, timestamps, merges,
and the field names a client may use.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import bson
import orjson
from bson.errors import InvalidDocument

Document = dict[str, Any]


def content_of(document: Mapping[str, Any]) -> Document:
    """The client's fields of a document: names starting with ``_`` are Shoal's
    (``_id``, ``_etag``, ``_links``...) and clients cannot write them."""
    return {key: value for key, value in document.items() if not key.startswith("_")}


def etag_key(secret: str) -> bytes:
    """The key content ETags are made with, from the server's secret."""
    return hashlib.sha256(b"shoal-etag\0" + secret.encode()).digest()


def document_etag(document: Mapping[str, Any], key: bytes) -> str:
    """A deterministic ETag from the document's content (meta fields excluded),
    its version where it has one, and whether it is (soft-)deleted: deleting or
    writing a new version always changes the ETag, so a writer holding the old
    one gets 412. It is an HMAC with ``key`` (``etag_key``), not a plain hash:
    anyone could otherwise test guesses of a field they cannot read (a salary)
    against the ETag of a document they can."""
    content = content_of(document)
    for name in ("_deleted", "_version"):
        if document.get(name):
            content[name] = document[name]
    encoded = orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str)
    return hmac.new(key, encoded, hashlib.sha1).hexdigest()


def etag_of(document: Mapping[str, Any], key: bytes) -> str:
    """A stored document's ETag: its ``_etag``, or, for a document another
    program wrote without one, the ETag of its content (as Eve does). A write
    conditional on that ETag matches the stored document by its missing
    ``_etag`` (``{"_etag": None}``), so it is still refused if a writer got
    there first."""
    stored = document.get("_etag")
    return stored if isinstance(stored, str) else document_etag(document, key)


def new_etag() -> str:
    """An ETag for a version whose content is known only to MongoDB (after
    update operators): unique, the same length as the content ETags."""
    return secrets.token_hex(20)


def name_issues(document: Mapping[str, Any], *, dotted_top_level: bool = False) -> dict[str, str]:
    """Field names MongoDB or Shoal cannot take: ``$``-prefixed, ``.`` inside
    a name (except PATCH's top-level dotted paths), empty, or NUL."""
    issues: dict[str, str] = {}

    def visit(value: Any, path: str, top: bool) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                full = f"{path}.{key}" if path else str(key)
                parts = str(key).split(".") if (top and dotted_top_level) else [str(key)]
                if any(not part or part.startswith("$") or "\x00" in part for part in parts):
                    issues[full] = "invalid field name"
                elif "." in str(key) and not (top and dotted_top_level):
                    issues[full] = "field names cannot contain '.'"
                else:
                    visit(child, full, False)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                visit(child, f"{path}.{index}", False)

    visit(document, "", True)
    return issues


def merge_patch(document: Document, changes: Mapping[str, Any]) -> dict[str, str]:
    """Apply a PATCH body to ``document`` in place; returns issues, if any.

    Nested objects merge rather than replace, and a dotted key (``author.name``)
    reaches into a nested object, creating it when absent.
    """
    issues: dict[str, str] = {}
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        target: Any = document
        for depth, part in enumerate(parents):
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                issues[key] = f"{'.'.join(parents[: depth + 1])} is not an object"
                break
            target = child
        else:
            current = target.get(leaf)
            if isinstance(value, dict) and isinstance(current, dict):
                _deep_merge(current, value)
            else:
                target[leaf] = value
    return issues


def set_paths(
    document: Document, values: Mapping[str, Any], removed: Iterable[str] = ()
) -> dict[str, str]:
    """MongoDB's ``$set`` and ``$unset`` on ``document``, in place: a dotted path
    (``author.name``) reaches into nested objects, which ``$set`` creates where
    they are missing; unlike a PATCH, a value replaces what was there. Returns
    issues for paths that cross something other than an object (an array index
    included)."""
    issues: dict[str, str] = {}
    for path, value in values.items():
        *parents, leaf = path.split(".")
        target = _walk(document, parents, create=True)
        if isinstance(target, str):
            issues[path] = target
        elif target is not None:
            target[leaf] = copy.deepcopy(value)
    for path in removed:
        *parents, leaf = path.split(".")
        target = _walk(document, parents, create=False)
        if isinstance(target, str):
            issues[path] = target
        elif target is not None:
            target.pop(leaf, None)
    return issues


def _walk(document: Document, parents: list[str], *, create: bool) -> Document | str | None:
    """The object at ``parents`` (created when asked), None when it is absent,
    or a message when the path crosses a value that is not an object."""
    target: Document = document
    for depth, part in enumerate(parents):
        child = target.get(part)
        if child is None and part not in target:
            if not create:
                return None
            child = target[part] = {}
        if not isinstance(child, dict):
            return f"{'.'.join(parents[: depth + 1])} is not an object"
        target = child
    return target


def _deep_merge(target: Document, changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _deep_merge(current, value)
        else:
            target[key] = value


#: MongoDB's largest document (BSON), less room for the meta fields.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 - 1024


def storable_issues(document: Mapping[str, Any]) -> dict[str, str]:
    """What MongoDB could not store: an integer beyond 64 bits, a document
    over 16 MiB (a 422 here rather than a driver error later)."""
    try:
        size = len(bson.encode(document))
    except (InvalidDocument, OverflowError) as error:
        return {"(document)": f"cannot be stored in MongoDB: {error}"}
    if size > MAX_DOCUMENT_BYTES:
        return {"(document)": f"is {size} bytes; MongoDB's limit is 16 MiB"}
    return {}
