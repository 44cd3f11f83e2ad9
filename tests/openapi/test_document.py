"""/openapi.json and `shoal openapi`: a valid OpenAPI 3.1 document that covers
every route, and a property-based run of the API against it (schemathesis)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from quart import Quart, Response
from quart_schema import document_response, security_scheme
from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from shoal.app import create_app
from shoal.auth.accounts import Accounts
from shoal.config import ConfigError, Settings, load_settings, read_config_file
from shoal.openapi import (
    POLICY_ERRORS,
    ShoalOpenAPIProvider,
    document_errors,
    document_no_content,
    openapi_document,
)
from shoal.openapi.models import ErrorResponse
from shoal.storage import open_storage
from tests.utils.live import LiveServer, live_example
from tests.utils.processes import run_shoal
from tests.utils.settings import EXAMPLE_CONFIG, TEST_SECRET, example_resources

EVE_EXAMPLE = EXAMPLE_CONFIG.parents[1] / "eve-migration" / "shoal.yaml"

Document = dict[str, Any]


def example_settings(**overrides: Any) -> Settings:
    """The example config as written (no SHOAL_* variables), plus ``overrides``."""
    raw: dict[str, Any] = {
        "environment": "test",
        "secret_key": TEST_SECRET,
        "resources": example_resources(),
    }
    raw.update(overrides)
    return load_settings(raw, env={})


async def served_document(app: Quart) -> Document:
    response = await app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: Document = await response.get_json()
    return document


def documented_methods(path_item: Document) -> set[str]:
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return {key.upper() for key in path_item if key in methods}


def resolve(document: Document, pointer: str) -> Any:
    """Follow a local ``$ref`` (``#/a/b``) inside ``document``."""
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@pytest.fixture
def example_app() -> Quart:
    return create_app(example_settings())


# --- the document -------------------------------------------------------------------


async def test_the_document_is_valid_openapi_3_1(example_app: Quart) -> None:
    document = await served_document(example_app)
    assert document["openapi"].startswith("3.1.")
    validate(document)


#: Unusual method sets: read-only, HEAD without GET, no item routes at all.
ODD_RESOURCES = {
    "notes": {
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "resource_methods": ["GET"],
        "item_methods": ["HEAD"],
    },
    "events": {
        "schema": {"type": "object"},
        "resource_methods": ["POST"],
        "item_methods": [],
        "allow_unknown": True,
    },
}


#: The Data API, with the hosted URL shape as well.
DATA_API = {
    "enabled": True,
    "app_id": "data-abcde",
    "data_sources": {
        "mongodb-atlas": {"databases": {"shoal": {"collections": {"books": {"roles": ["editor"]}}}}}
    },
}


#: Eve's features: a sub-resource, a lookup, an aggregation, soft delete,
#: versions, references, ids that are not ObjectIds.
EVE_RESOURCES: dict[str, Any] = {
    **read_config_file(EVE_EXAMPLE)["resources"],
    "person_invoices": {
        "schema": {
            "type": "object",
            "properties": {
                "person": {
                    "type": "string",
                    "format": "objectid",
                    "data_relation": {"resource": "people", "embeddable": True},
                },
                "number": {"type": "integer"},
            },
        },
        "datasource": "invoices",
        "url": "people/<person>/invoices",
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET"],
    },
    "tags": {
        "schema": {
            "type": "object",
            "properties": {"_id": {"type": "string", "pattern": "^[a-z]+$"}},
        },
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET", "PUT"],
    },
    "products": {
        "schema": {
            "type": "object",
            "required": ["sku"],
            "properties": {"sku": {"type": "string"}, "price": {"type": "number"}},
        },
        "id_field": "sku",
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET", "PATCH"],
    },
}


@pytest.mark.parametrize(
    "overrides",
    [{}, {"resources": ODD_RESOURCES}, {"data_api": DATA_API}, {"resources": EVE_RESOURCES}],
    ids=["example", "odd", "data-api", "eve"],
)
async def test_every_route_appears_with_its_methods(overrides: dict[str, Any]) -> None:
    app = create_app(example_settings(**overrides))
    document = await served_document(app)
    validate(document)
    expected: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("docs."):
            continue  # the docs page and its files are not part of the API
        view = app.view_functions[rule.endpoint]
        if rule.endpoint.startswith("data_api.") and getattr(
            view, QUART_SCHEMA_HIDDEN_ATTRIBUTE, False
        ):
            continue  # the Data API's answers to paths it does not serve, and its beta copies
        methods = set(rule.methods or ()) - {"OPTIONS"}
        if "GET" in methods:
            methods.discard("HEAD")  # implied by GET
        if methods:
            path = rule.rule.replace("<", "{").replace(">", "}")
            expected.setdefault(path, set()).update(methods)

    documented = {path: documented_methods(item) for path, item in document["paths"].items()}
    assert documented == expected
    assert all(
        operation["responses"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
    )


async def test_every_resource_appears_with_its_configured_methods(example_app: Quart) -> None:
    document = await served_document(example_app)
    for name, resource in example_resources().items():
        collection = document["paths"][f"/{name}"]
        item = document["paths"][f"/{name}/{{item_id}}"]
        assert documented_methods(collection) == set(resource["resource_methods"]) - {"HEAD"}
        assert documented_methods(item) == set(resource["item_methods"]) - {"HEAD"}
        for operation in [*collection.values(), *item.values()]:
            if isinstance(operation, dict):
                assert operation["tags"] == [name]
    # books may be emptied in one request, authors may not
    assert "delete" in document["paths"]["/books"]
    assert "delete" not in document["paths"]["/authors"]


async def test_the_item_schema_is_the_resource_schema_plus_shoals_fields(
    example_app: Quart,
) -> None:
    document = await served_document(example_app)
    schemas = document["components"]["schemas"]
    configured = example_resources()["books"]["schema"]

    item = schemas["books.item"]
    for field in ("_id", "_etag", "_created", "_updated", "_links"):
        assert field in item["properties"]
        assert field in item["required"]
    for field, rule in configured["properties"].items():
        # A default is filled in on create: a document read may still lack the
        # field (a projection), so the read schema names no default.
        assert item["properties"][field] == {k: v for k, v in rule.items() if k != "default"}
    assert resolve(document, item["properties"]["_created"]["$ref"])["pattern"].endswith("GMT$")

    page = schemas["books.page"]
    assert set(page["required"]) == {"_items", "_meta", "_links"}
    assert page["properties"]["_items"]["items"] == {"$ref": "#/components/schemas/books.item"}

    created = schemas["books.input"]
    assert created["required"] == configured["required"]
    assert created["additionalProperties"] is False  # unknown fields are refused (422)
    assert created["properties"]["in_stock"]["default"] is True  # filled in when left out
    changes = schemas["books.patch"]
    assert "required" not in changes
    assert changes["properties"].keys() == configured["properties"].keys()
    # A PATCH leaves alone what it does not name: no default to send in its place.
    assert "default" not in changes["properties"]["in_stock"]


async def test_request_bodies_follow_the_write_rules(example_app: Quart) -> None:
    document = await served_document(example_app)
    paths = document["paths"]

    post = paths["/books"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    single, bulk = post["oneOf"]
    assert single == {"$ref": "#/components/schemas/books.input"}
    assert bulk["type"] == "array"
    assert bulk["items"] == single

    for method, schema in (("patch", "books.patch"), ("put", "books.input")):
        operation = paths["/books/{item_id}"][method]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{schema}"}
        assert {"412", "422", "428"} <= operation["responses"].keys()

    for method in ("patch", "put", "delete"):
        parameters = [
            resolve(document, parameter["$ref"])
            for parameter in paths["/books/{item_id}"][method]["parameters"]
        ]
        if_match = [p for p in parameters if p["name"] == "If-Match"]
        assert len(if_match) == 1
        assert if_match[0]["in"] == "header"
        assert if_match[0]["required"] is True

    listing = paths["/books"]["get"]
    names = {
        resolve(document, p["$ref"])["name"] if "$ref" in p else p["name"]
        for p in listing["parameters"]
    }
    assert {"where", "sort", "projection", "page", "max_results", "count"} <= names
    headers = listing["responses"]["200"]["headers"]
    assert {"ETag", "X-Total-Count"} <= headers.keys()

    unprocessable = resolve(document, paths["/books"]["post"]["responses"]["422"]["$ref"])
    schema = resolve(document, unprocessable["content"]["application/json"]["schema"]["$ref"])
    assert "_issues" in schema["properties"]


async def test_security_follows_public_methods(example_app: Quart) -> None:
    document = await served_document(example_app)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["apiKeyAuth"]["type"] == "apiKey"
    assert schemes["apiKeyAuth"]["in"] == "header"
    assert schemes["apiKeyAuth"]["name"] == "X-API-Key"

    assert schemes["sessionCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "shoal_session",
        "description": schemes["sessionCookie"]["description"],
    }
    assert schemes["csrfToken"]["in"] == "header"
    assert schemes["csrfToken"]["name"] == "X-CSRF-Token"

    # A write takes a token, a key, or a session with its CSRF token (both at once).
    writes: list[dict[str, list[str]]] = [
        {"bearerAuth": []},
        {"apiKeyAuth": []},
        {"sessionCookie": [], "csrfToken": []},
    ]
    books = document["paths"]["/books"]
    item = document["paths"]["/books/{item_id}"]
    assert books["get"]["security"] == []  # public_methods: [GET]
    assert item["get"]["security"] == []  # public_item_methods: [GET]
    for operation in (books["post"], books["delete"], item["patch"], item["put"], item["delete"]):
        assert operation["security"] == writes
        assert {"401", "403"} <= operation["responses"].keys()
    assert "403" not in books["get"]["responses"]

    private = create_app(example_settings(resources={"notes": {"schema": {"type": "object"}}}))
    notes = (await served_document(private))["paths"]["/notes"]["get"]
    assert notes["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}, {"sessionCookie": []}]


async def test_every_route_documents_what_its_policies_do() -> None:
    """The document is held against the request policies, route by route, as
    the route table says they apply: an Idempotency-Key wherever the
    idempotency policy honours one (POST of a list; PATCH, PUT and DELETE of an
    item), and nowhere else; a 429 wherever a rate limit counts the request,
    and nowhere else; no credentials wherever anyone may call it."""
    resources = example_resources()
    resources["books"]["rate_limits"] = {"write": "10/minute"}  # its own, on writes only
    resources["books"]["streams"] = True
    resources["books"]["additional_lookup"] = {"field": "isbn"}
    resources["authors"]["rate_limits"] = {"read": "100/minute"}
    app = create_app(example_settings(resources=resources))
    document = await served_document(app)
    policies_settings: Settings = app.extensions["shoal.settings"]
    idempotency: Any = app.extensions["shoal.idempotency"]
    checked = 0
    for route in app.extensions["shoal.resources"].routes:
        path_item = document["paths"][route.path]
        for method in route.methods:
            if method == "HEAD" and "GET" in route.methods:
                continue  # documented with GET
            operation = path_item[method.lower()]
            parameters = [p.get("$ref", p.get("name")) for p in operation.get("parameters", [])]
            keyed = method in idempotency.endpoints.get(route.qualified_endpoint, ())
            assert keyed == route.keyed(method)
            assert ("#/components/parameters/Idempotency-Key" in parameters) == keyed, (
                route.path,
                method,
            )
            limited = route.limited(method, policies_settings.rate_limits)
            assert ("429" in operation["responses"]) == limited, (route.path, method)
            for status, answer in operation["responses"].items():
                if status.startswith("2"):
                    named = "RateLimit-Remaining" in answer.get("headers", {})
                    assert named == limited, (route.path, method, status)
            public = ("GET" if method == "HEAD" else method) in route.public
            assert (operation["security"] == []) == public, (route.path, method)
            checked += 1
    assert checked >= 12


async def test_shoals_own_routes_declare_their_security_and_every_status(
    example_app: Quart,
) -> None:
    paths = (await served_document(example_app))["paths"]
    me, logout = paths["/auth/me"]["get"], paths["/auth/logout"]["post"]
    assert me["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}, {"sessionCookie": []}]
    assert logout["security"] == [
        {"bearerAuth": []},
        {"apiKeyAuth": []},
        {"sessionCookie": [], "csrfToken": []},
    ]
    assert paths["/auth/login"]["post"]["security"] == []
    assert paths["/auth/refresh"]["post"]["security"] == []
    assert logout["requestBody"]["required"] is False
    assert paths["/auth/login"]["post"]["requestBody"]["required"] is True

    # No catch-all: each error status a route answers is listed, with its envelope.
    for path, item in paths.items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                assert "default" not in operation["responses"], (method, path)
    assert set(paths["/auth/login"]["post"]["responses"]) == {
        "200", "400", "401", "413", "415", "422", "429", "503"
    }  # fmt: skip
    assert set(me["responses"]) == {"200", "401", "429", "503"}
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}

    # Both answers of a login: a token pair, or a cookie session.
    login = paths["/auth/login"]["post"]["responses"]["200"]["content"]["application/json"]
    assert login["schema"] == {"$ref": "#/components/schemas/LoginResponse"}
    assert resolve(await served_document(example_app), login["schema"]["$ref"])["anyOf"] == [
        {"$ref": "#/components/schemas/TokenResponse"},
        {"$ref": "#/components/schemas/SessionResponse"},
    ]


def operations(document: Document) -> Iterator[tuple[str, str, Document]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def schema_nodes(node: Any) -> Iterator[Document]:
    """Every schema object under ``node`` (data keywords such as ``enum`` skipped)."""
    if isinstance(node, list):
        for item in node:
            yield from schema_nodes(item)
    elif isinstance(node, dict):
        if isinstance(node.get("type"), str | list):
            yield node
        for key, value in node.items():
            if key not in {"const", "enum", "default", "example", "examples"}:
                yield from schema_nodes(value)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"resources": ODD_RESOURCES}, {"data_api": DATA_API}, {"resources": EVE_RESOURCES}],
    ids=["example", "odd", "data-api", "eve"],
)
async def test_the_document_reads_well_to_generators(overrides: dict[str, Any]) -> None:
    """What client generators trip over (tests/api/test_generated_clients.py runs
    two of them against a live server): each operation id a unique snake_case
    name, the error envelopes built on one named ``ErrorDetail``, every body and
    answer a named schema rather than a copy per operation, and no object schema
    that names no properties yet leaves ``additionalProperties`` unsaid (read as an
    object that holds nothing)."""
    document = await served_document(create_app(example_settings(**overrides)))
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in ids), ids

    schemas = document["components"]["schemas"]
    detail = {"$ref": "#/components/schemas/ErrorDetail"}
    for name in ("Error", "ValidationError", "FilterValidationError"):
        assert schemas[name]["properties"]["_error"] == detail
    for path, method, operation in operations(document):
        contents = [operation.get("requestBody", {}).get("content", {})]
        contents += [answer.get("content", {}) for answer in operation["responses"].values()]
        for content in contents:
            for media in content.values():
                assert "title" not in media["schema"], (path, method)

    for schema in schema_nodes(document["components"]):
        kind = schema["type"]
        if kind == "object" or (isinstance(kind, list) and "object" in kind):
            assert {"properties", "additionalProperties", "patternProperties"} & schema.keys()


async def test_error_answers_name_their_request_id_and_limits_their_headers(
    example_app: Quart,
) -> None:
    document = await served_document(example_app)
    responses = document["components"]["responses"]
    for name, response in responses.items():
        if "content" in response:  # an error envelope
            assert "X-Request-ID" in response["headers"], name
    assert {"Retry-After", "RateLimit-Remaining"} <= responses["TooManyRequests"]["headers"].keys()


async def test_a_write_ack_documents_only_the_links_it_carries(example_app: Quart) -> None:
    document = await served_document(example_app)
    ack = document["components"]["schemas"]["WriteAck"]
    links = resolve(document, ack["properties"]["_links"]["$ref"])
    assert links["properties"].keys() == {"self"}
    assert links["additionalProperties"] is False
    # Nothing else either (the live run below checks real answers against this).
    assert ack["additionalProperties"] is False


async def test_the_data_api_actions_are_documented_when_it_is_on(example_app: Quart) -> None:
    assert not [path for path in (await served_document(example_app))["paths"] if "action" in path]
    document = await served_document(create_app(example_settings(data_api=DATA_API)))
    paths = document["paths"]
    actions = ["findOne", "find", "insertOne", "insertMany", "updateOne", "updateMany"]
    actions += ["replaceOne", "deleteOne", "deleteMany", "aggregate"]
    for action in actions:
        for path in (f"/action/{action}", f"/app/data-abcde/endpoint/data/v1/action/{action}"):
            operation = paths[path]["post"]
            assert operation["tags"] == ["data-api"]
            body = operation["requestBody"]["content"]
            assert body.keys() == {"application/json", "application/ejson"}
            # One schema for both media types: generators make one type of it.
            schema = body["application/json"]["schema"]
            assert body["application/ejson"]["schema"] == schema
            required = resolve(document, schema["$ref"])["required"]
            assert required[:3] == ["dataSource", "database", "collection"]
            assert {"400", "401", "403"} <= operation["responses"].keys()
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert set(resolve(document, error["$ref"])["required"]) == {"error", "error_code"}
    insert = paths["/action/insertOne"]["post"]
    assert "201" in insert["responses"]
    assert resolve(document, insert["parameters"][0]["$ref"])["name"] == "Idempotency-Key"
    schemes = document["components"]["securitySchemes"]
    assert (schemes["dataApiKey"]["name"], schemes["dataApiKeyHyphen"]["name"]) == (
        "apiKey",
        "api-key",
    )


def test_local_refs_of_a_resource_schema_point_inside_its_component() -> None:
    address = {"type": "object", "properties": {"city": {"type": "string"}}}
    settings = example_settings(
        resources={
            "people": {
                "schema": {
                    "type": "object",
                    "$defs": {"address": address},
                    "properties": {
                        "home": {"$ref": "#/$defs/address"},
                        "work": {"$ref": "#/properties/home"},
                    },
                },
                "resource_methods": ["GET", "POST"],
            }
        }
    )
    document = openapi_document(create_app(settings))
    validate(json.loads(json.dumps(document)))
    for name in ("people.input", "people.item", "people.patch"):
        properties = document["components"]["schemas"][name]["properties"]
        assert resolve(document, properties["home"]["$ref"]) == address
        assert resolve(document, properties["work"]["$ref"]) == {"$ref": properties["home"]["$ref"]}


def test_patch_takes_partial_documents_at_every_level() -> None:
    author = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "required": {"type": "boolean"}},
    }
    settings = example_settings(
        resources={
            "papers": {
                "schema": {
                    "type": "object",
                    "required": ["author"],
                    "properties": {"author": author, "code": {"type": "string"}},
                },
                "item_methods": ["GET", "PATCH"],
                "readonly": ["code"],
            }
        }
    )
    schemas = openapi_document(create_app(settings))["components"]["schemas"]
    changes = schemas["papers.patch"]
    assert "required" not in changes
    assert "required" not in changes["properties"]["author"]  # nested objects merge
    # a field that happens to be called "required" is still a field
    assert changes["properties"]["author"]["properties"]["required"] == {"type": "boolean"}
    # what PATCH and POST refuse to take is marked read-only
    assert schemas["papers.input"]["properties"]["code"]["readOnly"] is True
    assert schemas["papers.input"]["required"] == ["author"]


async def test_a_developers_own_route_is_documented(example_app: Quart) -> None:
    @example_app.post("/reports/<report_id>/archive")
    @security_scheme([{"bearerAuth": []}, {"apiKeyAuth": []}])
    @document_no_content(204, "Archived.")
    @document_response(ErrorResponse, 404)
    async def archive(report_id: str) -> Response:
        return Response(b"", status=204)

    document = await served_document(example_app)
    validate(document)
    operation = document["paths"]["/reports/{report_id}/archive"]["post"]
    assert operation["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert operation["responses"]["204"] == {"description": "Archived."}
    error = operation["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    # anything else it answers is an error, in the one envelope
    assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}


async def test_a_route_with_document_errors_lists_them_and_nothing_else(
    example_app: Quart,
) -> None:
    @example_app.get("/reports/<report_id>")
    @security_scheme([{"bearerAuth": []}])
    @document_response(ErrorResponse, 200)
    @document_errors(401, 404, *POLICY_ERRORS)
    async def report(report_id: str) -> Response:
        return Response(b"{}")

    operation = (await served_document(example_app))["paths"]["/reports/{report_id}"]["get"]
    assert set(operation["responses"]) == {"200", "401", "404", "429", "503"}
    assert operation["responses"]["404"] == {"$ref": "#/components/responses/NotFound"}
    with pytest.raises(ValueError, match="no shared OpenAPI response for status"):
        document_errors(418)


async def test_the_document_is_built_once_per_process(
    example_app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    build = ShoalOpenAPIProvider._build

    def counting(provider: ShoalOpenAPIProvider) -> Document:
        builds.append(1)
        return build(provider)

    monkeypatch.setattr(ShoalOpenAPIProvider, "_build", counting)
    first = await served_document(example_app)
    second = await served_document(example_app)
    assert first == second
    assert len(builds) == 1
    assert openapi_document(example_app) is openapi_document(example_app)


# --- configuration ----------------------------------------------------------------------


async def test_title_version_description_and_servers_come_from_the_config() -> None:
    docs = {
        "title": "Bookstore API",
        "version": "2.1.0",
        "description": "Books and their authors.",
        "servers": [{"url": "https://books.example.test/api", "description": "production"}],
    }
    app = create_app(example_settings(docs=docs))
    document = await served_document(app)
    assert document["info"] == {
        "title": "Bookstore API",
        "version": "2.1.0",
        "description": "Books and their authors.",
    }
    assert document["servers"] == docs["servers"]

    page = await app.test_client().get("/docs")
    assert "<title>Bookstore API</title>" in (await page.get_data(as_text=True))
    policy = page.headers["Content-Security-Policy"]
    assert "connect-src 'self' https://books.example.test;" in policy


async def test_the_docs_page_can_be_turned_off() -> None:
    app = create_app(example_settings(docs={"enabled": False}))
    client = app.test_client()
    assert (await client.get("/docs")).status_code == 404
    assert (await client.get("/docs/assets/shoal-docs.js")).status_code == 404
    assert (await client.get("/openapi.json")).status_code == 200


async def test_the_document_can_be_turned_off_too() -> None:
    app = create_app(example_settings(docs={"enabled": False, "openapi": False}))
    client = app.test_client()
    assert (await client.get("/openapi.json")).status_code == 404
    assert (await client.get("/docs")).status_code == 404
    # `shoal openapi` still has it to print
    assert "/books" in openapi_document(app)["paths"]


def test_the_page_without_the_document_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        example_settings(docs={"enabled": True, "openapi": False})
    assert "docs.openapi: the docs page loads the document" in str(raised.value)


# --- shoal openapi ----------------------------------------------------------------------


async def test_shoal_openapi_prints_the_served_document(repo_root: Path) -> None:
    relative = EXAMPLE_CONFIG.relative_to(repo_root)
    result = run_shoal(["openapi", "--config", str(relative)], cwd=repo_root)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)

    served = await served_document(create_app(load_settings(EXAMPLE_CONFIG, env={})))
    assert printed == served
    validate(printed)


def test_shoal_openapi_with_a_bad_config_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "shoal.yaml").write_text("environment: development\ndocs: {titel: x}\n")
    result = run_shoal(["openapi", "--config", "shoal.yaml"], cwd=tmp_path)
    assert result.returncode == 2
    assert "docs.titel" in result.stderr
    assert result.stdout == ""


# --- the API against its document (property-based) --------------------------------------


#: The real user the live run logs in as (made with `shoal users create`).
EDITOR = ("fuzz-editor", "a long enough fuzzing password")


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str
) -> Iterator[LiveServer]:
    """`shoal serve` on the example config, on the test MongoDB and Redis, with a
    real editor user."""
    # Failed logins are slowed down on purpose; fuzzing makes hundreds of them.
    throttle = {"login_slowdown_after": 10_000, "login_lockout_after": 10_000}
    with live_example(
        tmp_path_factory.mktemp("fuzz"), mongodb_uri, redis_url, auth=throttle
    ) as server:
        server.create_user(*EDITOR, "editor")
        yield server


# The document does not depend on where the data lives: build it without a database.
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(openapi_document(create_app(example_settings()))))
)
# Both phases: documents that fit the schemas, and documents that break them
# (which must be refused with a 4xx the document lists).
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

#: What "conforms to the document" means here, plus "no 5xx" and "auth is enforced".
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    ignored_auth,
]
# A write without If-Match is refused with 428 Precondition Required.
schema.config.checks.missing_required_header.expected_statuses = [
    *schema.config.checks.missing_required_header.expected_statuses,
    "428",
]


class Tokens:
    """A real editor's tokens, kept fresh through /auth/refresh (no password check
    per case); a login again when a case logged them out."""

    def __init__(self) -> None:
        self.refresh_token: str | None = None

    def fresh(self, live: LiveServer) -> str:
        tokens = None
        if self.refresh_token is not None:
            tokens = live.refresh(self.refresh_token)
        if tokens is None:
            tokens = live.login(*EDITOR)
        self.refresh_token = tokens["refresh_token"]
        access: str = tokens["access_token"]
        return access


EDITOR_TOKENS = Tokens()


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_conforms_to_its_document(case: Any, live: LiveServer) -> None:
    """Every operation against a real server, as a real editor logged in over HTTP
    (writes really write; each case gets fresh tokens through /auth/refresh,
    and logs in again when an earlier case's logout ended that login);
    ``ignored_auth`` also sends the secured ones without credentials."""
    headers = {"Authorization": f"Bearer {EDITOR_TOKENS.fresh(live)}"}
    case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS)


@pytest.fixture(scope="module")
def live_eve(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str
) -> Iterator[LiveServer]:
    """`shoal serve` on Eve's features (EVE_RESOURCES)."""
    throttle = {"login_slowdown_after": 10_000, "login_lockout_after": 10_000}
    with live_example(
        tmp_path_factory.mktemp("fuzz-eve"),
        mongodb_uri,
        redis_url,
        auth=throttle,
        resources=EVE_RESOURCES,
    ) as server:
        yield server


eve_schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(openapi_document(create_app(example_settings(resources=EVE_RESOURCES)))))
)
eve_schema.config.checks.missing_required_header.expected_statuses = [
    *eve_schema.config.checks.missing_required_header.expected_statuses,
    "428",
]


@eve_schema.parametrize()
# Derandomized: the same cases every run, so a failure is the API's and not the
# generator's luck (its negative cases can be valid requests with allowEmptyValue).
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_eves_features_conform_to_their_document(case: Any, live_eve: LiveServer) -> None:
    """Sub-resources, lookups, an aggregation, soft delete, versions, references
    and ids that are not ObjectIds, against a real server."""
    headers = {"Authorization": f"Bearer {live_eve.token('editor')}"}
    case.call_and_validate(base_url=live_eve.url, headers=headers, checks=CHECKS)


def test_streamed_resources_document_their_event_streams() -> None:
    resources = example_resources()
    resources["books"]["streams"] = True
    document = openapi_document(create_app(example_settings(resources=resources)))
    validate(document)
    collection = document["paths"]["/books/_stream"]["get"]
    item = document["paths"]["/books/{item_id}/_stream"]["get"]
    for operation in (collection, item):
        assert "text/event-stream" in operation["responses"]["200"]["content"]
        names = {parameter.get("name") for parameter in operation["parameters"]}
        assert {"Last-Event-ID", "last_event_id"} <= names
    assert "404" in item["responses"]
    assert "/authors/_stream" not in document["paths"]


def test_writes_by_filter_operators_cursors_and_prefer_are_documented() -> None:
    resources = example_resources()
    resources["books"].update(
        {
            "resource_methods": ["GET", "POST", "PATCH", "DELETE"],
            "bulk_writes": True,
            "atomic_updates": True,
        }
    )
    document = openapi_document(create_app(example_settings(resources=resources)))
    validate(document)
    books = document["paths"]["/books"]
    assert set(books["patch"]["responses"]) >= {"200", "204", "409", "422"}
    assert any(
        parameter.get("name") == "where" and parameter.get("required")
        for parameter in books["patch"]["parameters"]
    )
    item_patch = document["paths"]["/books/{item_id}"]["patch"]
    assert "application/vnd.shoal.update+json" in item_patch["requestBody"]["content"]
    if_match = next(p for p in item_patch["parameters"] if p.get("name") == "If-Match")
    assert if_match["required"] is False
    listing = json.dumps(books["get"]["parameters"])
    assert "cursor" in listing
    assert "PreferCount" in listing
    authors = document["paths"]["/authors"]
    assert "patch" not in authors


# --- the Data API against its document (property-based) ------------------------------


@pytest.fixture(scope="module")
def data_api_live(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str
) -> Iterator[tuple[LiveServer, str]]:
    """`shoal serve` with the Data API on, serving a database of its own."""
    database = {
        "name": f"fuzz_{uuid.uuid4().hex[:10]}",
        "collections": {"books": {"roles": ["editor"]}},
    }
    config = {**DATA_API, "data_sources": {"mongodb-atlas": {"databases": {"shoal": database}}}}
    with live_example(
        tmp_path_factory.mktemp("fuzz-data-api"), mongodb_uri, redis_url, data_api=config
    ) as server:
        yield server, asyncio.run(_editor_key(server))


async def _editor_key(server: LiveServer) -> str:
    async with open_storage(server.settings.mongodb) as storage:
        key, _ = await Accounts(storage, server.settings.auth).create_api_key("fuzz", ["editor"])
    return key


# Extended JSON is JSON text: send the generated bodies as they are.
schemathesis.serializer.alias("application/ejson", "application/json")

data_api_schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(openapi_document(create_app(example_settings(data_api=DATA_API)))))
).include(tag="data-api", path_regex="^/action/")  # the hosted paths run the same views


@data_api_schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_data_api_conforms_to_its_document(
    case: Any, data_api_live: tuple[LiveServer, str]
) -> None:
    """Every action against a real server, with a key. ``ignored_auth`` is left
    out: the Data API answers a request without credentials with 400
    (``InvalidParameter``), as the hosted service did, where the check wants 401."""
    server, key = data_api_live
    checks = [check for check in CHECKS if check is not ignored_auth]
    case.call_and_validate(base_url=server.url, headers={"apiKey": key}, checks=checks)


def test_eves_features_are_documented() -> None:
    document = openapi_document(create_app(example_settings(resources=EVE_RESOURCES)))
    validate(document)
    paths = document["paths"]
    schemas = document["components"]["schemas"]

    def names(operation: dict[str, Any]) -> set[str]:
        return {parameter.get("name") or parameter["$ref"] for parameter in operation["parameters"]}

    assert "show_deleted" in names(paths["/people"]["get"])
    assert "embedded" in names(paths["/invoices"]["get"])
    assert {"version", "#/components/parameters/projection"} <= names(
        paths["/people/{item_id}"]["get"]
    )
    assert "embedded" in names(paths["/invoices/{item_id}"]["get"])
    lookup = paths["/people/by-lastname/{value}"]
    assert set(lookup) == {"get", "parameters"}
    people = schemas["people.item"]["properties"]
    assert {"_deleted", "_version", "_latest_version"} <= people.keys()
    assert "format" not in people["born"]  # read as RFC 1123
    invoice = schemas["invoices.item"]["properties"]["person"]
    assert {"type": ["object", "null"]}.items() <= invoice["anyOf"][1].items()

    aggregation = paths["/people_by_role"]
    assert set(aggregation) == {"get"}
    assert "aggregate" in names(aggregation["get"])
    assert "people_by_role.item" not in schemas

    parent = paths["/people/{person}/invoices"]
    assert parent["parameters"][0]["name"] == "person"
    item = paths["/people/{person}/invoices/{item_id}"]
    assert [parameter.get("name", "item_id") for parameter in item["parameters"]] == [
        "person",
        "item_id",
    ]
    tag = paths["/tags/{item_id}"]["parameters"][0]
    assert tag["schema"] == {"type": "string", "pattern": "^[a-z]+$"}
    assert schemas["tags.ack"]["properties"]["_id"] == tag["schema"]
    assert schemas["products.ack"]["properties"]["sku"] == {"type": "string"}
