"""JSON Schema draft 2020-12 (jsonschema-rs, see
docs/decisions/0003-json-schema-validator.md): a resource's schema is checked
when the config is loaded and compiled once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Offline: a schema's remote $ref must never make the server fetch anything.
_META_VALIDATOR = jsonschema_rs.Draft202012Validator({"$ref": DIALECT}, offline=True)


class SchemaProblem(ValueError):
    """A resource schema that is not valid JSON Schema 2020-12."""


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise SchemaProblem naming the schema path that is wrong."""
    if schema.get("type") != "object":
        raise SchemaProblem("type: a resource schema must have type: object")
    dialect = schema.get("$schema", DIALECT)
    if dialect != DIALECT:
        raise SchemaProblem(f"$schema: only draft 2020-12 ({DIALECT}) is supported")
    for error in _META_VALIDATOR.iter_errors(dict(schema)):
        where = "/".join(str(part) for part in error.instance_path) or "(schema root)"
        raise SchemaProblem(f"{where}: {error.message}")
    properties = schema.get("properties", {})
    for name in properties:
        if name.startswith("_"):
            raise SchemaProblem(f"properties/{name}: field names starting with '_' are Shoal's own")
    try:
        compile_schema(dict(schema))
    except (ValueError, jsonschema_rs.ReferencingError) as error:
        raise SchemaProblem(str(error)) from None


def compile_schema(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, offline=True)
