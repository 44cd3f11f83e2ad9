"""The OpenAPI paths and schemas of configured resources, built from the config.

For a resource ``books`` (names are the resource's; ``.`` never occurs in one, so
they cannot collide with the shared components)::

    components/schemas/books.input   the resource's JSON Schema: what POST and PUT take
    components/schemas/books.patch   the same fields, none required: what PATCH takes
    components/schemas/books.item    a stored document: the fields plus _id, _etag,
                                     _created, _updated and _links
    components/schemas/books.page    the list envelope: _items, _meta, _links

    /books              GET (list), POST (one object or an array), DELETE (all)
    /books/{item_id}    GET, PATCH, PUT, DELETE

only with the methods the resource serves. JSON Schema 2020-12 is OpenAPI 3.1's
own dialect, so the resource schema is embedded as it is; only its local
``$ref``s are rewritten to point inside the component that now holds it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ..resources import STREAM_SEGMENT, Resource
from ..resources.updates import UPDATE_MEDIA_TYPE
from .components import (
    AUTHENTICATED_READ,
    AUTHENTICATED_WRITE,
    ERROR_STATUSES,
    PUBLIC,
    Schema,
    Security,
    header_parameter,
    header_ref,
    query_parameter,
    ref,
    resolved_parameter,
)

#: Methods whose success needs no credentials and changes nothing.
_SAFE = frozenset({"GET", "HEAD"})
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
    return {kind: f"{name}.{kind}" for kind in ("input", "patch", "item", "page")}


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


class ResourceDocument:
    """The paths and component schemas of one resource."""

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
        properties = self.base_schema.setdefault("properties", {})
        for field in sorted(resource.schema.readonly):
            rule = properties.get(field)
            if isinstance(rule, dict):
                rule["readOnly"] = True
        self.owner_field = self.settings.auth_field

    # -- schemas ---------------------------------------------------------

    def schemas(self) -> dict[str, Schema]:
        return {
            self.names["input"]: self._input_schema(),
            self.names["patch"]: self._patch_schema(),
            self.names["item"]: self._item_schema(),
            self.names["page"]: self._page_schema(),
        }

    def _input_schema(self) -> Schema:
        schema = copy.deepcopy(self.base_schema)
        schema.setdefault("title", self.name)
        # A client may choose the new document's id (POST) or repeat it (PUT).
        schema["properties"] = {
            "_id": {**ref("ObjectId"), "description": "Optional: the id to give the document."},
            **schema["properties"],
        }
        return schema

    def _patch_schema(self) -> Schema:
        base = copy.deepcopy(self.base_schema)
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
        schema = copy.deepcopy(self.base_schema)
        schema.pop("$defs", None)
        required = list(schema.get("required", []))
        for keyword in _WHOLE_DOCUMENT_KEYWORDS:
            schema.pop(keyword, None)
        schema["title"] = f"{self.name} item"
        meta: dict[str, Schema] = {
            "_id": ref("ObjectId"),
            "_created": ref("HttpDate"),
            "_updated": ref("HttpDate"),
            "_etag": ref("ETag"),
            "_links": ref("ItemLinks"),
        }
        if self.owner_field:
            meta[self.owner_field] = {
                "description": "The owner's id, set by the server.",
                "readOnly": True,
            }
        schema["properties"] = {**meta, **schema.get("properties", {})}
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
            "required": ["_items", "_meta", "_links"],
            "properties": {
                "_items": {"type": "array", "items": ref(self.names["item"])},
                "_meta": ref("PageMeta"),
                "_links": ref("PageLinks"),
            },
        }

    # -- paths -----------------------------------------------------------

    def paths(self) -> dict[str, dict[str, Any]]:
        collection: dict[str, Any] = {}
        for method in _documented(self.settings.resource_methods):
            collection[method.lower()] = self._collection_operation(method)
        item: dict[str, Any] = {}
        for method in _documented(self.settings.item_methods):
            item[method.lower()] = self._item_operation(method)
        if item:
            item["parameters"] = [ref("item_id", "parameters")]
        paths = {}
        if collection:
            paths[f"/{self.name}"] = collection
        if item:
            paths[f"/{self.name}/{{item_id}}"] = item
        if self.settings.streams:
            paths[f"/{self.name}/{STREAM_SEGMENT}"] = {"get": self._stream_operation(item=False)}
            paths[f"/{self.name}/{{item_id}}/{STREAM_SEGMENT}"] = {
                "get": self._stream_operation(item=True),
                "parameters": [ref("item_id", "parameters")],
            }
        return paths

    def _stream_operation(self, *, item: bool) -> Schema:
        name, title = self.name, self.resource.item_title.lower()
        operation = self._operation(
            "GET",
            item=item,
            operation_id=f"stream_{name}_item" if item else f"stream_{name}",
            summary=f"Follow the changes of one {title}" if item else f"Follow {name}' changes",
            description="Server-Sent Events: one event per insert, update, replace or "
            "delete the caller may see, `id` being the resume token. Reconnect with "
            "`Last-Event-ID` to resume after it on any server; a comment line comes "
            "every heartbeat on an idle stream.",
        )
        operation["parameters"] = [
            ref("where", "parameters"),
            header_parameter(
                "Last-Event-ID",
                "Resume after this event (the `id` of the last event received).",
            ),
            query_parameter(
                "last_event_id",
                "`Last-Event-ID`, for clients that cannot set headers.",
                {"type": "string"},
            ),
        ]
        success = {
            "200": {
                "description": "The event stream; it lasts until the client leaves.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
        statuses = {400, 404, 501} if item else {400, 501}
        operation["responses"] = self._responses("GET", success, statuses, item=item)
        return operation

    def _security(self, method: str, *, item: bool) -> Security:
        public = self.settings.public_item_methods if item else self.settings.public_methods
        public_method = "GET" if method == "HEAD" else method
        if public_method in public:
            return PUBLIC
        return AUTHENTICATED_READ if method in _SAFE else AUTHENTICATED_WRITE

    def _responses(
        self, method: str, success: Mapping[str, Schema], statuses: Iterable[int], *, item: bool
    ) -> dict[str, Schema]:
        # 401 even where the method is public: credentials sent must be valid.
        codes = set(statuses) | {401, 429, 503}
        if self._security(method, item=item) or method not in _SAFE:
            codes.add(403)  # roles, or a browser session's CSRF check on a write
        responses = dict(success)
        for status in sorted(codes):
            responses[str(status)] = ref(ERROR_STATUSES[status], "responses")
        return dict(sorted(responses.items()))

    def _operation(
        self,
        method: str,
        *,
        item: bool,
        operation_id: str,
        summary: str,
        description: str | None = None,
    ) -> Schema:
        operation: Schema = {
            "tags": [self.name],
            "summary": summary,
            "operationId": operation_id,
            "security": self._security(method, item=item),
        }
        if description:
            operation["description"] = description
        return operation

    def _collection_operation(self, method: str) -> Schema:
        name = self.name
        if method in _SAFE:
            operation = self._operation(
                method,
                item=False,
                operation_id=f"{method.lower()}_{name}" if method == "HEAD" else f"list_{name}",
                summary=f"List {name}",
                description="A page of documents, filtered, sorted and projected as asked. "
                "Pages hold `max_results` documents; `_links.next` names the next page.",
            )
            operation["parameters"] = [
                ref("where", "parameters"),
                ref("sort", "parameters"),
                ref("projection", "parameters"),
                ref("page", "parameters"),
                ref("cursor", "parameters"),
                self._max_results(),
                self._count(),
                ref("If-None-Match", "parameters"),
                ref("PreferCount", "parameters"),
            ]
            success = _read_answers(
                method,
                f"A page of {name}.",
                self.names["page"],
                extra_headers=("X-Total-Count", "Preference-Applied"),
            )
            operation["responses"] = self._responses(method, success, {400}, item=False)
            return operation
        if method == "POST":
            operation = self._operation(
                method,
                item=False,
                operation_id=f"create_{name}",
                summary=f"Create one or more {name}",
                description="Send one document, or a JSON array of documents to insert "
                "them all at once: if any of them is invalid, none is inserted and the 422 "
                "lists the problems of each.",
            )
            operation["parameters"] = [
                ref("Idempotency-Key", "parameters"),
                ref("PreferReturn", "parameters"),
            ]
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                ref(self.names["input"]),
                                {"type": "array", "minItems": 1, "items": ref(self.names["input"])},
                            ]
                        }
                    }
                },
            }
            headers = {
                "Location": header_ref("Location"),
                "ETag": header_ref("ETag"),
                "Idempotent-Replayed": header_ref("Idempotent-Replayed"),
                "Preference-Applied": header_ref("Preference-Applied"),
            }
            item = ref(self.names["item"])
            answers = [
                ref("WriteAck"),
                ref("BulkWriteAck"),
                item,
                {"type": "object", "properties": {"_items": {"type": "array", "items": item}}},
            ]
            success = {
                "201": {
                    "description": "Created: the ack, or with `Prefer: return=representation` "
                    "the stored document (documents, for a bulk insert).",
                    "headers": headers,
                    "content": {"application/json": {"schema": {"anyOf": answers}}},
                },
                "204": {
                    "description": "Created (`Prefer: return=minimal`).",
                    "headers": headers,
                },
            }
            operation["responses"] = self._responses(
                method, success, {400, 409, 413, 415, 422}, item=False
            )
            return operation
        if method == "PATCH":
            operation = self._operation(
                method,
                item=False,
                operation_id=f"update_{name}_where",
                summary=f"Change the {name} a filter matches",
                description="The body's fields are merged into every document `where` "
                f"matches (at most {self.settings.max_affected}, else 409 and nothing is "
                "written); every result must match the schema, else 422 and nothing is "
                "written. Each document is written on its own ETag.",
            )
            operation["parameters"] = [
                {**resolved_parameter("where"), "required": True},
                ref("PreferReturn", "parameters"),
            ]
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(self.names["patch"])}},
            }
            operation["responses"] = self._responses(
                method, _counts_answers(), {400, 409, 413, 415, 422}, item=False
            )
            return operation
        bulk = self.settings.bulk_writes
        operation = self._operation(
            method,
            item=False,
            operation_id=f"delete_{name}",
            summary=f"Delete every document of {name}"
            + (", or those a filter matches" if bulk else ""),
        )
        if bulk:
            operation["description"] = (
                f"With `where`: only the documents it matches (at most "
                f"{self.settings.max_affected}, else 409 and nothing is deleted)."
            )
            operation["parameters"] = [
                ref("where", "parameters"),
                ref("PreferReturn", "parameters"),
            ]
            success = {"204": {"description": "Deleted."}, **_counts_answers()}
            operation["responses"] = self._responses(method, success, {400, 409}, item=False)
            return operation
        operation["responses"] = self._responses(
            method, {"204": {"description": "Deleted."}}, {400}, item=False
        )
        return operation

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

    def _item_operation(self, method: str) -> Schema:
        name, title = self.name, self.resource.item_title.lower()
        if method in _SAFE:
            operation = self._operation(
                method,
                item=True,
                operation_id=f"{method.lower()}_{name}_item",
                summary=f"Get one {title}",
            )
            operation["parameters"] = [
                ref("If-None-Match", "parameters"),
                ref("If-Modified-Since", "parameters"),
            ]
            success = _read_answers(method, f"The {title}.", self.names["item"])
            operation["responses"] = self._responses(method, success, {404}, item=True)
            return operation
        if method == "DELETE":
            operation = self._operation(
                method,
                item=True,
                operation_id=f"delete_{name}_item",
                summary=f"Delete one {title}",
            )
            operation["parameters"] = [ref("If-Match", "parameters")]
            operation["responses"] = self._responses(
                method, {"204": {"description": "Deleted."}}, {400, 404, 412, 428}, item=True
            )
            return operation
        if method == "PATCH":
            operation = self._operation(
                method,
                item=True,
                operation_id=f"update_{name}_item",
                summary=f"Change some fields of one {title}",
            )
            body = ref(self.names["patch"])
            operation["parameters"] = [ref("Idempotency-Key", "parameters")]
            if self.settings.atomic_updates:
                operation["description"] = (
                    "Send the changed fields as `application/json` (with `If-Match`), or "
                    f"update operators as `{UPDATE_MEDIA_TYPE}`: one atomic write, "
                    "`If-Match` optional."
                )
        else:
            operation = self._operation(
                method,
                item=True,
                operation_id=f"replace_{name}_item",
                summary=f"Replace one {title}",
                description="The body replaces the whole document (its `_id` and "
                "`_created` are kept).",
            )
            body = ref(self.names["input"])
        if_match = ref("If-Match", "parameters")
        content: Schema = {"application/json": {"schema": body}}
        if method == "PATCH" and self.settings.atomic_updates:
            if_match = {**resolved_parameter("If-Match"), "required": False}
            content[UPDATE_MEDIA_TYPE] = {"schema": ref("UpdateOperators")}
        operation["parameters"] = [
            if_match,
            *operation.get("parameters", []),
            ref("PreferReturn", "parameters"),
        ]
        operation["requestBody"] = {"required": True, "content": content}
        headers = {
            "ETag": header_ref("ETag"),
            "Last-Modified": header_ref("Last-Modified"),
            "Preference-Applied": header_ref("Preference-Applied"),
        }
        success = {
            "200": {
                "description": "Saved: the ack, carrying the new `_etag`, or with `Prefer: "
                "return=representation` the stored document.",
                "headers": headers,
                "content": {
                    "application/json": {
                        "schema": {"anyOf": [ref("WriteAck"), ref(self.names["item"])]}
                    }
                },
            },
            "204": {"description": "Saved (`Prefer: return=minimal`).", "headers": headers},
        }
        if method == "PATCH":
            success["200"]["headers"]["Idempotent-Replayed"] = header_ref("Idempotent-Replayed")
        operation["responses"] = self._responses(
            method, success, {400, 404, 409, 412, 413, 415, 422, 428}, item=True
        )
        return operation


def _counts_answers() -> dict[str, Schema]:
    headers = {"Preference-Applied": header_ref("Preference-Applied")}
    return {
        "200": {
            "description": "What the write did.",
            "headers": headers,
            "content": {"application/json": {"schema": ref("WriteCounts")}},
        },
        "204": {"description": "Done (`Prefer: return=minimal`).", "headers": headers},
    }


def _documented(methods: Iterable[str]) -> list[str]:
    """The methods to document: HEAD only where GET, which implies it, is absent."""
    unique = list(dict.fromkeys(methods))
    if "GET" in unique:
        unique = [method for method in unique if method != "HEAD"]
    return unique


def _read_answers(
    method: str, description: str, schema: str, *, extra_headers: tuple[str, ...] = ()
) -> dict[str, Schema]:
    """A GET's 200 with its validators (a HEAD's without a body), and its 304."""
    headers = {name: header_ref(name) for name in ("ETag", "Last-Modified", *extra_headers)}
    ok: Schema = {"description": description, "headers": headers}
    if method != "HEAD":
        ok["content"] = {"application/json": {"schema": ref(schema)}}
    return {"200": ok, "304": ref("NotModified", "responses")}
