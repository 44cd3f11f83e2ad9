"""The OpenAPI paths of configured resources, built from the route table.

::

    /books              GET (list), POST (one object or an array), DELETE (all,
                        or by ``where`` with bulk_writes), PATCH (by ``where``,
                        with bulk_writes)
    /books/{item_id}    GET, PATCH, PUT, DELETE
    /books/by-isbn/{value}           GET (additional_lookup)
    /books/_stream, /books/{item_id}/_stream   GET (streams: true)

only with the methods the resource serves, at its ``url`` when it has one
(``/people/{person}/invoices``, the parent's id a path parameter); what the
request policies add to each operation (an ``Idempotency-Key``, a 429) comes
from the route table, as the policies themselves read it. The component
schemas the operations name are ``schemas.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..resources import Resource
from ..resources.routes import Route
from ..resources.updates import UPDATE_MEDIA_TYPE
from .components import (
    AUTHENTICATED_READ,
    AUTHENTICATED_WRITE,
    ERROR_STATUSES,
    PUBLIC,
    RATE_LIMIT_HEADERS,
    Schema,
    Security,
    header_parameter,
    header_ref,
    query_parameter,
    ref,
    resolved_parameter,
)
from .media import FORM_DATA, media_download, multipart_body
from .schemas import ResourceSchemas

#: Methods whose success needs no credentials and changes nothing.
_SAFE = frozenset({"GET", "HEAD"})


class ResourceDocument(ResourceSchemas):
    """The paths and component schemas of one resource."""

    def __init__(
        self, resource: Resource, routes: list[Route], limited: Callable[[Route, str], bool]
    ) -> None:
        super().__init__(resource)
        #: The resource's routes (the route table's rows).
        self.routes = routes
        #: Whether a rate limit counts a method on a route (the limiter says).
        self.limited = limited

    def paths(self) -> dict[str, dict[str, Any]]:
        """Every route of the resource (the route table's), with its methods."""
        paths: dict[str, dict[str, Any]] = {}
        parents = self._path_parameters()
        for route in self.routes:
            entry: dict[str, Any] = {}
            for method in _documented(route.methods):
                operation = self._operation_of(route, method)
                entry[method.lower()] = self._with_policies(operation, route, method)
            if not entry:
                continue
            parameters = [*parents]
            if route.kind in ("item", "item_stream"):
                parameters.append(self._item_parameter())
            elif route.kind == "lookup":
                parameters.append(self._lookup_parameter())
            if parameters:
                entry["parameters"] = parameters
            paths[route.path] = entry
            if route.kind == "item" and "GET" in route.methods:
                for name in self.resource.media:
                    paths[f"{route.path}/{name}"] = {
                        "get": media_download(
                            self.resource, name, self._security("GET", item=True)
                        ),
                        "parameters": [*parents, self._item_parameter()],
                    }
        return paths

    def _operation_of(self, route: Route, method: str) -> Schema:
        if route.kind == "collection":
            if self.settings.aggregation is not None:
                return self._aggregation_operation(method)
            return self._collection_operation(method)
        if route.kind == "item":
            return self._item_operation(method)
        if route.kind == "lookup":
            return self._lookup_operation()
        return self._stream_operation(item=route.kind == "item_stream")

    def _with_policies(self, operation: Schema, route: Route, method: str) -> Schema:
        """What the request policies add to an operation, as the route table
        says they apply: an ``Idempotency-Key`` where it makes the write done
        once (with the replay's header and the key's own errors), a 429 where
        a rate limit counts the request."""
        responses: dict[str, Schema] = dict(operation["responses"])
        if route.keyed(method):
            parameters = list(operation.get("parameters", []))
            key = ref("Idempotency-Key", "parameters")
            if key not in parameters:
                parameters.insert(0, key)
            operation["parameters"] = parameters
            for status, answer in responses.items():
                if status.startswith("2") and "$ref" not in answer:
                    headers = dict(answer.get("headers", {}))
                    headers["Idempotent-Replayed"] = header_ref("Idempotent-Replayed")
                    responses[status] = {**answer, "headers": headers}
            # 409: the key's first request still runs; 422: the key was used
            # with another body.
            for code in (409, 422):
                responses.setdefault(str(code), ref(ERROR_STATUSES[code], "responses"))
        if self.settings.rules is not None:
            note = (
                "Rules apply: the caller's role (the first of the resource's `rules` whose "
                "`apply_when` matches) decides the documents it reaches (others are a 404) "
                "and the fields it reads and writes (a field it may not write is a 403)."
            )
            described = operation.get("description")
            operation["description"] = f"{described}\n\n{note}" if described else note
            if method not in ("GET", "HEAD"):
                responses.setdefault("403", ref(ERROR_STATUSES[403], "responses"))
        if self.limited(route, method):
            responses["429"] = ref(ERROR_STATUSES[429], "responses")
            for status, answer in responses.items():
                if status.startswith("2") and "$ref" not in answer:
                    headers = dict(answer.get("headers", {}))
                    headers.update((name, header_ref(name)) for name in RATE_LIMIT_HEADERS)
                    responses[status] = {**answer, "headers": headers}
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _lookup_operation(self) -> Schema:
        lookup = self.settings.additional_lookup
        assert lookup is not None
        title = self.resource.item_title.lower()
        operation = self._operation(
            "GET",
            item=True,
            operation_id=f"get_{self.name}_by_{lookup.field}",
            summary=f"Get one {title} by its {lookup.field}",
            description=f"The first {title} whose `{lookup.field}` is the value (read only; "
            "its `_links.self` names it by id).",
        )
        operation["parameters"] = [
            ref("projection", "parameters"),
            *([self._embedded()] if self.embeddable else []),
            ref("If-None-Match", "parameters"),
            ref("If-Modified-Since", "parameters"),
        ]
        success = _read_answers("GET", f"The {title}.", self.names["item"])
        operation["responses"] = self._responses("GET", success, {400, 404}, item=True)
        return operation

    def _aggregation_operation(self, method: str) -> Schema:
        name = self.name
        aggregation = self.settings.aggregation
        assert aggregation is not None
        variables = ", ".join(f"`{variable}`" for variable in aggregation.variables) or "none"
        operation = self._operation(
            method,
            item=False,
            operation_id=f"{method.lower()}_{name}" if method == "HEAD" else f"aggregate_{name}",
            summary=f"Run the {name} aggregation",
            description="A page of what the resource's pipeline makes. Its variables: "
            f"{variables}.",
        )
        operation["parameters"] = [
            query_parameter(
                "aggregate",
                'Values of the pipeline\'s variables, as JSON: `{"$name": value}`; `{}` '
                "drops the condition that holds a variable.",
                {"type": "string"},
            ),
            *(
                [ref("page", "parameters"), self._max_results(), self._count()]
                if self.settings.pagination
                else []
            ),
            ref("If-None-Match", "parameters"),
        ]
        success = _read_answers(
            method, f"A page of {name}.", self.names["page"], extra_headers=("X-Total-Count",)
        )
        operation["responses"] = self._responses(method, success, {400}, item=False)
        return operation

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
        # (429 where a limit counts the request: ``_with_policies``.)
        codes = set(statuses) | {401, 503}
        if self.settings.url_variables:
            codes.add(404)  # a parent id that cannot be one
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
            settings = self.settings
            operation["parameters"] = [
                ref("where", "parameters"),
                *([ref("sort", "parameters")] if settings.sorting else []),
                ref("projection", "parameters"),
                *(
                    [
                        ref("page", "parameters"),
                        ref("cursor", "parameters"),
                        self._max_results(),
                        self._count(),
                    ]
                    if settings.pagination
                    else []
                ),
                *([self._embedded()] if self.embeddable else []),
                *(
                    [
                        query_parameter(
                            "show_deleted",
                            "Include (soft-)deleted documents (`true`, `1`, or no value).",
                            {"type": "boolean"},
                        )
                    ]
                    if settings.soft_delete
                    else []
                ),
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
            operation["parameters"] = [ref("PreferReturn", "parameters")]
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
                    },
                    **(
                        {FORM_DATA: multipart_body(self.resource, partial=False)}
                        if self.resource.media
                        else {}
                    ),
                },
            }
            headers = {
                "Location": header_ref("Location"),
                "ETag": header_ref("ETag"),
                "Preference-Applied": header_ref("Preference-Applied"),
            }
            item = ref(self.names["item"])
            ack = ref(self.names["ack"])
            answers = [ack, ref(self.names["bulk_ack"]), item, ref(self.names["bulk_items"])]
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
            responses = self._responses(method, _counts_answers(), {400, 409, 413, 415}, item=False)
            responses["422"] = ref("UnprocessableFilter", "responses")
            operation["responses"] = dict(sorted(responses.items()))
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

    def _item_operation(self, method: str) -> Schema:
        name, title = self.name, self.resource.item_title.lower()
        if method in _SAFE:
            lookup = self.settings.additional_lookup
            operation = self._operation(
                method,
                item=True,
                operation_id=f"{method.lower()}_{name}_item",
                summary=f"Get one {title}",
                description=None
                if lookup is None
                else f"A value that cannot be an id (and that the lookup's pattern matches) "
                f"is a `{lookup.field}`, as in Eve: the {title} it names, as "
                f"`/{self.resource.path}/by-{lookup.field}/{{value}}` answers.",
            )
            operation["parameters"] = [
                ref("projection", "parameters"),
                *([self._embedded()] if self.embeddable else []),
                *(
                    [
                        query_parameter(
                            "version",
                            "A version of the document (`1`, `2`...), `all` of them, or "
                            "`diffs` (each version's changes), oldest first, in pages "
                            "(`page`, `max_results`).",
                            {"type": "string", "pattern": "^([1-9][0-9]*|all|diffs)$"},
                        ),
                        ref("page", "parameters"),
                        self._max_results(),
                    ]
                    if self.settings.versioning
                    else []
                ),
                ref("If-None-Match", "parameters"),
                ref("If-Modified-Since", "parameters"),
            ]
            schema = self.names["item"]
            success = _read_answers(method, f"The {title}.", schema)
            if self.settings.versioning and method != "HEAD":
                success["200"]["content"]["application/json"]["schema"] = {
                    "anyOf": [ref(schema), self._versions_page()]
                }
            operation["responses"] = self._responses(method, success, {400, 404}, item=True)
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
        if self.resource.media:
            content[FORM_DATA] = multipart_body(self.resource, partial=method == "PATCH")
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
                        "schema": {"anyOf": [ref(self.names["ack"]), ref(self.names["item"])]}
                    }
                },
            },
            "204": {"description": "Saved (`Prefer: return=minimal`).", "headers": headers},
        }
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
