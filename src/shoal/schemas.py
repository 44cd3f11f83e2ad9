"""JSON Schema draft 2020-12 (jsonschema-rs, see
docs/decisions/0003-json-schema-validator.md): a resource's schema is checked
when the config is loaded and compiled once.

Besides the standard formats, ``format: objectid`` names a MongoDB ObjectId (24
hexadecimal digits); with ``format: date-time`` it is one of the formats Shoal
stores as a native BSON type (see ``resources/fields.py``).

A schema may hold only the keywords of JSON Schema 2020-12, Shoal's own
(``data_relation``) and annotations named ``x-…``: the standard ignores an
unknown keyword, so a misspelt one (``maxLenght``) would be a rule that
silently does nothing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema_rs

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Offline: a schema's remote $ref must never make the server fetch anything.
_META_VALIDATOR = jsonschema_rs.Draft202012Validator({"$ref": DIALECT}, offline=True)


class SchemaProblem(ValueError):
    """A resource schema that is not valid JSON Schema 2020-12; one line per
    problem (``problems``)."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise SchemaProblem naming the schema path that is wrong."""
    if schema.get("type") != "object":
        raise SchemaProblem("type: a resource schema must have type: object")
    dialect = schema.get("$schema", DIALECT)
    if dialect != DIALECT:
        raise SchemaProblem(f"$schema: only draft 2020-12 ({DIALECT}) is supported")
    for path, rule in schema_fields(schema):
        kind = rule.get("type")
        if isinstance(kind, str) and kind in _EVE_TYPES:
            where = "/".join(path)
            raise SchemaProblem(
                f"{where}: type {kind} is Eve's (Cerberus); in JSON Schema write "
                f"type: string, {_EVE_TYPES[kind]}"
            )
    check_value_schema(schema)
    properties = schema.get("properties", {})
    for name in properties:
        if name == "_id":
            _check_id_rule(properties[name])
        elif name.startswith("_"):
            raise SchemaProblem(f"properties/{name}: field names starting with '_' are Shoal's own")


def check_value_schema(schema: Mapping[str, Any]) -> None:
    """Raise SchemaProblem unless ``schema`` is a JSON Schema 2020-12 (of any value)."""
    problems = vocabulary_problems(schema)
    if problems:
        raise SchemaProblem(*problems)
    for error in _META_VALIDATOR.iter_errors(dict(schema)):
        where = "/".join(str(part) for part in error.instance_path) or "(schema root)"
        raise SchemaProblem(f"{where}: {error.message}")
    try:
        compile_schema(dict(schema))
    except (ValueError, jsonschema_rs.ReferencingError) as error:
        raise SchemaProblem(str(error)) from None


#: The keywords of JSON Schema 2020-12, vocabulary by vocabulary.
KEYWORDS_2020_12 = frozenset(
    {
        # core
        "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor",
        "$vocabulary", "$comment", "$defs",
        # applicator
        "prefixItems", "items", "contains", "additionalProperties", "properties",
        "patternProperties", "dependentSchemas", "propertyNames", "if", "then", "else",
        "allOf", "anyOf", "oneOf", "not",
        # unevaluated
        "unevaluatedItems", "unevaluatedProperties",
        # validation
        "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
        "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties",
        "required", "dependentRequired",
        # meta-data
        "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
        # format (asserted by Shoal) and content
        "format", "contentEncoding", "contentMediaType", "contentSchema",
    }
)  # fmt: skip
#: Shoal's own keywords (``resources/relations.py``).
SHOAL_KEYWORDS = frozenset({"data_relation"})
#: Where a schema holds further schemas: one, a mapping of them, a list of them.
_SUBSCHEMA = frozenset(
    {
        "additionalProperties", "items", "contains", "propertyNames", "if", "then", "else",
        "not", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
    }
)  # fmt: skip
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
#: Names of types in other schema languages (Cerberus, Python), and their JSON Schema type.
_TYPE_NAMES = {"dict": "object", "list": "array", "float": "number", "int": "integer"}
_TYPE_NAMES |= {"bool": "boolean", "str": "string", "none": "null"}
#: Older drafts' keywords, and what 2020-12 calls them.
_RENAMED = {
    "definitions": "$defs",
    "dependencies": "dependentRequired or dependentSchemas",
    "nullable": 'a type list with "null"',
    "example": "examples (a list)",
}


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def vocabulary_problems(schema: Any) -> list[str]:
    """Every keyword of ``schema`` (nested schemas too) that is not JSON
    Schema 2020-12's, Shoal's or an ``x-`` annotation, and every ``type`` that
    is no JSON Schema type, each with the nearest valid word."""
    problems: list[str] = []
    known = KEYWORDS_2020_12 | SHOAL_KEYWORDS

    def visit(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, Mapping):
            return  # a boolean schema, or a wrong value the metaschema reports
        for key, value in node.items():
            where = "/".join((*path, str(key)))
            if not isinstance(key, str) or (key not in known and not key.startswith("x-")):
                nearest = _RENAMED.get(str(key)) or _nearest(str(key), known)
                if nearest:
                    problems.append(
                        f"{where}: not a JSON Schema 2020-12 keyword; did you mean {nearest}?"
                    )
                else:
                    problems.append(
                        f"{where}: not a JSON Schema 2020-12 keyword, nor Shoal's; "
                        f"name an annotation of your own x-{key}"
                    )
                continue
            if key == "type":
                _check_type(value, where)
            elif key in _SUBSCHEMA:
                visit(value, (*path, key))
            elif key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
                for name, child in value.items():
                    visit(child, (*path, key, str(name)))
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                for number, child in enumerate(value):
                    visit(child, (*path, key, str(number)))

    def _check_type(value: Any, where: str) -> None:
        for kind in value if isinstance(value, list) else [value]:
            if isinstance(kind, str) and kind not in JSON_TYPES:
                nearest = _TYPE_NAMES.get(kind.lower()) or _nearest(kind, JSON_TYPES)
                hint = f"did you mean {nearest}? " if nearest else ""
                problems.append(
                    f"{where}: {kind} is not a JSON Schema type; {hint}The types are "
                    f"{', '.join(JSON_TYPES)}."
                )

    visit(schema, ())
    return problems


#: Eve's (Cerberus) types that are formats in JSON Schema.
_EVE_TYPES = {
    "datetime": "format: date-time",
    "objectid": "format: objectid",
    "media": "format: binary (a file; see x-media)",
}
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


def _check_id_rule(rule: Any) -> None:
    """``_id`` may be declared to say what ids look like: an ObjectId (the
    default), a string or an integer."""
    kind = rule.get("type") if isinstance(rule, Mapping) else None
    if kind not in ("string", "integer"):
        raise SchemaProblem(
            "properties/_id: declare ids as {type: string} (format: objectid for "
            "ObjectIds) or {type: integer}"
        )


def _is_object_id(value: str) -> bool:
    return bool(_OBJECT_ID.match(value))


def compile_schema(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(
        schema, validate_formats=True, offline=True, formats={"objectid": _is_object_id}
    )


#: A path segment that stands for "every item of the array" (``tags.[]``).
ITEMS = "[]"


def resolve_ref(rule: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``rule`` with a local ``$ref`` (``#/$defs/...``) followed; anything else as is."""
    seen: set[str] = set()
    while isinstance(rule.get("$ref"), str) and rule["$ref"].startswith("#/"):
        pointer = rule["$ref"]
        if pointer in seen:
            break
        seen.add(pointer)
        node: Any = root
        for part in pointer[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return rule
            node = node[part]
        if not isinstance(node, Mapping):
            return rule
        rule = node
    return rule


def schema_fields(
    schema: Mapping[str, Any], *, max_depth: int = 16
) -> list[tuple[tuple[str, ...], Mapping[str, Any]]]:
    """Every property rule of an object schema with its path: ``("author",)``,
    ``("meta", "reviewer")``, ``("tags", "[]")`` for the items of an array.
    Local ``$ref``s are followed; recursion stops at ``max_depth``."""
    found: list[tuple[tuple[str, ...], Mapping[str, Any]]] = []

    def visit(rule: Mapping[str, Any], path: tuple[str, ...]) -> None:
        if len(path) > max_depth:
            return
        rule = resolve_ref(rule, schema)
        if path:
            found.append((path, rule))
        properties = rule.get("properties")
        if isinstance(properties, Mapping):
            for name, child in properties.items():
                if isinstance(child, Mapping):
                    visit(child, (*path, str(name)))
        items = rule.get("items")
        if isinstance(items, Mapping) and path:
            visit(items, (*path, ITEMS))

    visit(schema, ())
    return found


def dotted(path: tuple[str, ...]) -> str:
    """A schema path as MongoDB names the field: ``("tags", "[]")`` → ``tags``."""
    return ".".join(part for part in path if part != ITEMS)
