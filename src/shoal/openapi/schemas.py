"""The OpenAPI component schemas of a configured resource, built from its JSON
Schema (``resources.py`` builds its paths on them).

For a resource ``books`` (names are the resource's; ``.`` never occurs in one, so
they cannot collide with the shared components)::

    components/schemas/books.input   the resource's JSON Schema: what POST and PUT take
    components/schemas/books.patch   the same fields, none required: what PATCH takes
    components/schemas/books.item    a stored document: the fields plus _id, _etag,
                                     _created, _updated and _links
    components/schemas/books.page    the list envelope: _items, _meta, _links
    components/schemas/books.ack     what a write answers for one document
    components/schemas/books.bulk_ack    what a bulk insert answers: an ack per document
    components/schemas/books.bulk_items  the same with `Prefer: return=representation`

An aggregation endpoint has its page only, of the pipeline's documents. Dates are
documented as read: RFC 1123, as Eve renders them. JSON Schema 2020-12 is OpenAPI
3.1's own dialect, so the resource schema is embedded as it is; only its local
``$ref``s are rewritten to point inside the component that now holds it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..resources import Resource
from .components import Schema, query_parameter, ref

#: Top-level keywords that constrain a whole document; a partial (PATCH) body
#: or a stored document with Shoal's fields added need not satisfy them.
_WHOLE_DOCUMENT_KEYWORDS = (
    "required",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "if",
    "then",
    "else",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
)


def component_names(name: str) -> dict[str, str]:
    """The component names of one resource's schemas."""
    kinds = ("input", "patch", "item", "page", "ack", "bulk_ack", "bulk_items")
    return {kind: f"{name}.{kind}" for kind in kinds}


def _rewrite_refs(node: Any, base: str) -> Any:
    """Point the schema's local ``$ref``s (``#/...``) at ``base`` (a component)."""
    if isinstance(node, dict):
        rewritten = {key: _rewrite_refs(value, base) for key, value in node.items()}
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith("#"):
            rewritten["$ref"] = base + target[1:]
        return rewritten
    if isinstance(node, list):
        return [_rewrite_refs(item, base) for item in node]
    return node


#: Keywords whose value is a map of names to schemas.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
#: Keywords whose value is one schema.
_SCHEMA_VALUES = (
    "items",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
#: Keywords whose value is a list of schemas.
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


def _without_defaults(node: Any) -> Any:
    """The schema with every ``default`` keyword dropped, at any depth (a property
    named ``default`` stays: names in ``properties`` are not keywords).

    Shoal fills defaults in when a document is created; a PATCH leaves out what
    it does not change, and a document read may lack a field (a projection, a
    document written by another program). Generators read ``default`` as "always
    there" (openapi-typescript) or send it when the caller left the field out
    (openapi-python-client), so only the schema of what POST and PUT take keeps it.
    """
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "default":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            result[key] = {name: _without_defaults(schema) for name, schema in value.items()}
        elif key in _SCHEMA_VALUES:
            result[key] = _without_defaults(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            result[key] = [_without_defaults(schema) for schema in value]
        else:
            result[key] = value
    return result


def _without_required(node: Any) -> Any:
    """The schema with every nested ``required`` dropped (PATCH merges nested objects).

    Only the keyword (a list) goes: a property that happens to be named ``required``
    (its value is a schema) stays.
    """
    if isinstance(node, dict):
        return {
            key: _without_required(value)
            for key, value in node.items()
            if not (key == "required" and isinstance(value, list))
        }
    if isinstance(node, list):
        return [_without_required(item) for item in node]
    return node


class ResourceSchemas:
    """The component schemas and the parameters of one resource."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.name = resource.name
        self.settings = resource.settings
        self.names = component_names(resource.name)
        base = f"#/components/schemas/{self.names['input']}"
        schema = dict(resource.schema.schema)
        for key in ("$schema", "$id"):
            schema.pop(key, None)
        self.base_schema: Schema = _rewrite_refs(schema, base)
        if not {"additionalProperties", "unevaluatedProperties"} & self.base_schema.keys():
            # allow_unknown: said out loud, so that generators type other fields too.
            self.base_schema["additionalProperties"] = True
        properties = self.base_schema.setdefault("properties", {})
        for field in sorted(resource.schema.readonly):
            rule = properties.get(field)
            if isinstance(rule, dict):
                rule["readOnly"] = True
        self.owner_field = self.settings.auth_field
        self.relations = list(resource.fields.relations.values())
        self.embeddable = sorted(r.name for r in self.relations if r.embeddable)

    def _field_schema(self, name: str) -> Schema:
        """What a field's values look like in a URL."""
        rule = self.settings.json_schema.get("properties", {}).get(name)
        if name == "_id" and rule is None:
            return ref("ObjectId")
        if not isinstance(rule, dict):
            return {"type": "string"}
        if rule.get("format") == "objectid":
            return ref("ObjectId")
        if rule.get("type") == "integer":
            return {"type": "integer"}
        schema: Schema = {"type": "string"}
        if isinstance(rule.get("pattern"), str):
            schema["pattern"] = rule["pattern"]
        return schema

    # -- parameters --------------------------------------------------------

    def _path_parameters(self) -> list[Schema]:
        """A sub-resource's parent ids, named in its path."""
        return [
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": f"The `{name}` of the parent whose {self.name} these are.",
                "schema": self._field_schema(name),
            }
            for name in self.settings.url_variables
        ]

    def _item_parameter(self) -> Schema:
        field = self.resource.ids.field
        if field == "_id" and "_id" not in self.settings.json_schema.get("properties", {}):
            return ref("item_id", "parameters")
        return {
            "name": "item_id",
            "in": "path",
            "required": True,
            "description": f"The document's `{field}`.",
            "schema": self._field_schema(field),
        }

    def _embedded(self) -> Schema:
        names = ", ".join(f"`{name}`" for name in self.embeddable)
        return query_parameter(
            "embedded",
            'References to embed, as JSON: `{"author": 1}` (`0` leaves out one embedded '
            f"by default). Embeddable here: {names}.",
            {"type": "string"},
        )

    def _lookup_parameter(self) -> Schema:
        lookup = self.settings.additional_lookup
        assert lookup is not None
        return {
            "name": "value",
            "in": "path",
            "required": True,
            "description": f"A `{lookup.field}` value.",
            "schema": self._field_schema(lookup.field),
        }

    def _max_results(self) -> Schema:
        settings = self.settings
        return query_parameter(
            "max_results",
            f"Documents per page (default {settings.default_max_results}; "
            f"values above {settings.pagination_limit} are lowered to it).",
            {"type": "integer", "minimum": 1},
        )

    def _count(self) -> Schema:
        default = "on" if self.settings.count else "off"
        return query_parameter(
            "count",
            f"Count the matching documents (`_meta.total`, `X-Total-Count`); "
            f"{default} by default for this resource. Turn it off on large collections.",
            {"type": "boolean"},
        )

    # -- schemas -----------------------------------------------------------

    def schemas(self) -> dict[str, Schema]:
        if self.settings.aggregation is not None:
            return {self.names["page"]: self._aggregation_page_schema()}
        return {
            self.names["input"]: self._input_schema(),
            self.names["patch"]: self._patch_schema(),
            self.names["item"]: self._item_schema(),
            self.names["page"]: self._page_schema(),
            self.names["ack"]: self._ack_schema(),
            self.names["bulk_ack"]: self._bulk_schema("bulk write", self.names["ack"]),
            self.names["bulk_items"]: self._bulk_schema("bulk representation", self.names["item"]),
        }

    def _bulk_schema(self, title: str, item: str) -> Schema:
        """What a bulk insert (a JSON array) answers: one entry per document."""
        return {
            "title": f"{self.name} {title}",
            "type": "object",
            "required": ["_status", "_items"],
            "properties": {
                "_status": {"const": "OK"},
                "_items": {"type": "array", "items": ref(item)},
            },
        }

    def _input_schema(self) -> Schema:
        schema = copy.deepcopy(self.base_schema)
        schema.setdefault("title", f"{self.name} input")
        # A client may choose the new document's id (POST) or repeat it (PUT).
        declared = schema["properties"].pop("_id", None)
        if declared is None:
            declared = {**ref("ObjectId"), "description": "Optional: the id to give the document."}
        schema["properties"] = {"_id": declared, **schema["properties"]}
        return schema

    def _ack_schema(self) -> Schema:
        """What a write answers for one document of this resource."""
        properties: dict[str, Schema] = {
            "_status": {"const": "OK"},
            "_id": self._field_schema("_id"),
            "_created": ref("HttpDate"),
            "_updated": ref("HttpDate"),
            "_etag": ref("ETag"),
            "_links": ref("ItemLinks"),
            **self._feature_properties(),
        }
        if self.resource.ids.field != "_id":
            properties[self.resource.ids.field] = self._field_schema(self.resource.ids.field)
        return {
            "title": f"{self.name} write",
            "type": "object",
            "description": "What a write answers for one document.",
            "required": ["_status", "_id", "_created", "_updated", "_etag", "_links"],
            "properties": properties,
        }

    def _feature_properties(self) -> dict[str, Schema]:
        """The fields soft delete and versioning add to documents."""
        properties: dict[str, Schema] = {}
        if self.settings.soft_delete:
            properties["_deleted"] = {
                "type": "boolean",
                "description": "Whether the document was (soft-)deleted.",
            }
        if self.settings.versioning:
            properties["_version"] = {"type": "integer", "minimum": 1}
            properties["_latest_version"] = {"type": "integer", "minimum": 1}
        return properties

    def _versions_page(self) -> Schema:
        """``?version=all`` or ``diffs``: a page of versions (a diff holds only
        what changed)."""
        return {
            "type": "object",
            "required": ["_items", "_meta", "_links"],
            "properties": {
                "_items": {"type": "array", "items": {"type": "object"}},
                "_meta": ref("PageMeta"),
                "_links": ref("PageLinks"),
            },
        }

    def _aggregation_page_schema(self) -> Schema:
        properties: dict[str, Schema] = {
            "_items": {
                "type": "array",
                "items": {"type": "object"},
                "description": "The documents as the pipeline makes them.",
            },
            "_links": ref("PageLinks"),
        }
        required = ["_items", "_links"]
        if self.settings.pagination:
            properties["_meta"] = ref("PageMeta")
            required.append("_meta")
        return {
            "title": f"{self.name} page",
            "type": "object",
            "required": required,
            "properties": properties,
        }

    def _patch_schema(self) -> Schema:
        base: Schema = _without_defaults(copy.deepcopy(self.base_schema))
        schema: Schema = {
            "title": f"{self.name} (changes)",
            "description": "The fields to change; nested objects are merged, and a dotted "
            "name (`author.name`) reaches into one. The merged document must satisfy the "
            "resource's schema (422 otherwise).",
            "type": "object",
            "minProperties": 1,
            "properties": _without_required(base.get("properties", {})),
        }
        if base.get("additionalProperties") is False:
            schema["additionalProperties"] = False
            schema["patternProperties"] = {r"^[^.$][^$]*\.": {}}
        elif "additionalProperties" in base:
            schema["additionalProperties"] = _without_required(base["additionalProperties"])
        return schema

    def _item_schema(self) -> Schema:
        schema: Schema = _without_defaults(copy.deepcopy(self.base_schema))
        schema.pop("$defs", None)
        required = list(schema.get("required", []))
        for keyword in _WHOLE_DOCUMENT_KEYWORDS:
            schema.pop(keyword, None)
        schema["title"] = f"{self.name} item"
        meta: dict[str, Schema] = {
            "_id": self._field_schema("_id"),
            "_created": ref("HttpDate"),
            "_updated": ref("HttpDate"),
            "_etag": ref("ETag"),
            "_links": ref("ItemLinks"),
            **self._feature_properties(),
        }
        if self.owner_field:
            meta[self.owner_field] = {
                "description": "The owner's id, set by the server.",
                "readOnly": True,
            }
        own = _as_read(schema.get("properties", {}))
        own.pop("_id", None)
        for relation in self.relations:
            if relation.embeddable and len(relation.path) <= 2 and relation.path[0] in own:
                own[relation.path[0]] = _embeddable(own[relation.path[0]], relation.many)
        for name in self.resource.media:
            if name in own:
                own[name] = {
                    "type": "string",
                    "format": "uri-reference",
                    "description": "The URL of the file (`/<resource>/<id>/<field>`).",
                }
        schema["properties"] = {**meta, **own}
        # A projection may leave out any field but these.
        schema["required"] = ["_id", "_created", "_updated", "_etag", "_links"]
        if required:
            names = ", ".join(f"`{name}`" for name in required)
            schema["description"] = (
                f"A stored document. Besides Shoal's fields it always has {names}, "
                "unless a `projection` leaves fields out."
            )
        return schema

    def _page_schema(self) -> Schema:
        return {
            "title": f"{self.name} page",
            "type": "object",
            "required": ["_items", "_meta", "_links"] if self.settings.pagination else ["_items"],
            "properties": {
                "_items": {"type": "array", "items": ref(self.names["item"])},
                "_meta": ref("PageMeta"),
                "_links": ref("PageLinks"),
            },
        }


def _as_read(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Property schemas as documents are read: dates in RFC 1123, as Eve renders
    them (a client sends RFC 3339 or RFC 1123)."""

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("format") == "date-time":
                read = {key: value for key, value in node.items() if key != "format"}
                read["description"] = "A date, in RFC 1123 (`Tue, 24 Nov 2026 10:00:00 GMT`)."
                return read
            return {key: visit(value) for key, value in node.items()}
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    return {name: visit(rule) for name, rule in properties.items()}


def _embeddable(rule: Schema, many: bool) -> Schema:
    """A reference that ``?embedded`` may turn into the document it names (or
    ``null`` when none is found)."""
    document: Schema = {"type": ["object", "null"], "description": "The embedded document."}
    if many:
        items = rule.get("items", {})
        return {**rule, "items": {"anyOf": [items, document]}}
    return {"anyOf": [rule, document]}
