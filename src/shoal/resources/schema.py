"""A resource's JSON Schema, compiled once and applied to every write.

Validation reports every problem of a document as Eve does: ``{field: message}``
with dotted field names (``author.name``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema_rs
import orjson

from ..schemas import DIALECT, compile_schema


class DocumentSchema:
    """The compiled schema of one resource and the rules around it."""

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        allow_unknown: bool,
        readonly: Iterable[str] = (),
        server_fields: Iterable[str] = (),
    ) -> None:
        compiled = copy.deepcopy(dict(schema))
        compiled.setdefault("$schema", DIALECT)
        if not allow_unknown and "additionalProperties" not in compiled:
            compiled["additionalProperties"] = False
        self.schema = compiled
        self.properties: dict[str, Any] = compiled.get("properties", {})
        self.readonly = frozenset(readonly) | {
            name for name, rule in self.properties.items() if rule.get("readOnly") is True
        }
        self._validator = compile_schema(compiled)
        #: Fields the server sets (the owner field): not validated, not writable.
        self.server_fields = frozenset(server_fields)
        self._id_validator: jsonschema_rs.Draft202012Validator | None = None

    def issues(self, document: Mapping[str, Any]) -> dict[str, str]:
        """Every problem with ``document``; empty when it is valid."""
        if self.server_fields:
            document = {k: v for k, v in document.items() if k not in self.server_fields}
        try:
            if self._validator.is_valid(document):
                return {}
        except ValueError:
            # A value read back from MongoDB (Int64, datetime, ObjectId) that the
            # validator has no JSON type for: validate its JSON rendering.
            document = orjson.loads(orjson.dumps(document, default=str))
            if self._validator.is_valid(document):
                return {}
        issues: dict[str, str] = {}
        for error in self._validator.iter_errors(document):
            for field, message in _describe(error):
                issues.setdefault(field, message)
        return issues

    def id_issues(self, value: Any) -> dict[str, str]:
        """Problems of an ``_id`` with the ``_id`` rule the schema declares."""
        rule = self.properties.get("_id")
        if rule is None:
            return {}
        if self._id_validator is None:
            self._id_validator = compile_schema({"$schema": DIALECT, **rule})
        value = value if isinstance(value, str | int) else str(value)
        for error in self._id_validator.iter_errors(value):
            return {"_id": error.message}
        return {}

    def unwritable(self, paths: Iterable[str], *, client_id: bool = False) -> dict[str, str]:
        """The fields (dotted paths) a client may not write, each with its one
        message: Shoal's own (``_``-prefixed; ``_id`` too, unless ``client_id``:
        a new document's id chosen by the client), the owner field (set by the
        server), and read-only fields (``readonly``, ``readOnly: true``)."""
        issues: dict[str, str] = {}
        for path in paths:
            top = path.split(".", 1)[0]
            if top.startswith("_") and not (client_id and path == "_id"):
                issues[path] = "field is read-only"
            elif top in self.server_fields:
                issues[path] = "field is set by the server"
            elif top in self.readonly:
                issues[path] = "field is read-only"
        return issues

    def apply_defaults(self, document: dict[str, Any]) -> dict[str, Any]:
        """Fill in ``default`` values of absent properties (nested objects too)."""
        _fill_defaults(document, self.properties)
        return document


def _fill_defaults(document: dict[str, Any], properties: Mapping[str, Any]) -> None:
    for name, rule in properties.items():
        if not isinstance(rule, Mapping):
            continue
        if name not in document and "default" in rule:
            document[name] = copy.deepcopy(rule["default"])
        child = document.get(name)
        if isinstance(child, dict) and isinstance(rule.get("properties"), Mapping):
            _fill_defaults(child, rule["properties"])


def _dotted(path: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in path)


def _describe(error: jsonschema_rs.ValidationError) -> list[tuple[str, str]]:
    """(field, message) pairs for one validation error, in Eve's terms."""
    base = list(error.instance_path)
    kind = error.kind
    if kind.name == "required":
        return [(_dotted([*base, kind.as_dict()["property"]]), "required field")]
    if kind.name in {"additionalProperties", "unevaluatedProperties"}:
        names = kind.as_dict().get("unexpected") or []
        return [(_dotted([*base, name]), "unknown field") for name in names]
    return [(_dotted(base) or "(document)", error.message)]
