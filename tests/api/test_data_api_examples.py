"""The request and response examples of the Data API's own documentation
(its reference pages, its OpenAPI file and its docs team's tested curl
examples, in ``data/data_api_examples.json``), sent to Shoal with only the
base URL and the credentials changed: the answers have the same shape.

Placeholders the docs leave for the reader (``<cluster name>``,
``<database name>``) are filled in, as a reader would. The config maps each
database the examples name onto a database of this test run.

- The docs team's tested examples run in their file's order on empty
  collections, and their answers must equal what the docs' tests asserted.
- Every other example runs on freshly seeded collections, and its answer must
  have the documented shape: the same keys, the same JSON types, identifiers
  as strings in JSON and as ``{"$oid"}`` in EJSON, counts as numbers in JSON
  and as ``{"$numberInt"}`` in EJSON, errors with the same ``error_code``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from quart import Quart

from shoal.app import create_app
from shoal.auth import get_auth
from tests.conftest import SettingsFactory
from tests.utils.auth import token_for
from tests.utils.data_api import APP_ID, Reply, api_key
from tests.utils.settings import make_settings

EXAMPLES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "data_api_examples.json").read_text(encoding="utf-8")
)
BASE = f"/app/{APP_ID}/endpoint/data/v1"
USER, PASSWORD = "reader@example.com", "a long enough password"

#: What the docs leave for the reader to fill in.
PLACEHOLDERS = {"<cluster name>": "mongodb-atlas", "<database name>": "todo"}
PLACEHOLDERS["<collection name>"] = "tasks"

#: Examples that need MongoDB behaviour the stand-in lacks.
STAND_IN_GAPS = {
    "data-types": "the stand-in refuses collection names with a hyphen (data-types)",
    "ex070": "the stand-in stores a date written by $set as a string",
    "ex071": "the stand-in stores a date written by $set as a string",
    "ex108": "the stand-in refuses Decimal128 values",
}

#: Examples that need MongoDB behaviour FerretDB lacks (gap names of tests/utils/gaps.py).
FERRETDB_GAPS = {
    "ex025": "group_accumulators",  # $push
    "ex072": "group_accumulators",
    "ex100": "group_accumulators",
    "ex079": "decimal128",
    "ex108": "decimal128",
}


def _gap(example: dict[str, Any]) -> str | None:
    if example["id"] in STAND_IN_GAPS:
        return STAND_IN_GAPS[example["id"]]
    if '"data-types"' in (example["request_body_text"] or ""):
        return STAND_IN_GAPS["data-types"]
    return None


def _cases(kinds: set[str]) -> list[Any]:
    cases = []
    for example in EXAMPLES:
        if example["kind"] not in kinds:
            continue
        gap = _gap(example)
        marks = [pytest.mark.real_mongodb(reason=gap)] if gap else []
        if example["id"] in FERRETDB_GAPS:
            marks.append(pytest.mark.engine_gap(ferretdb=FERRETDB_GAPS[example["id"]]))
        cases.append(pytest.param(example, id=example["id"], marks=marks))
    return cases


def _databases(unique: str) -> dict[str, Any]:
    """Every database and collection the examples name, served to "editor"."""
    everything = {"roles": ["editor"]}
    names = {
        "todo": ["tasks"],
        "learn-data-api": ["tasks", "hello", "data-types"],
        "sample_mflix": ["movies"],
    }
    databases = {
        name: {
            "name": f"{name.replace('-', '_')}_{unique}",
            "collections": dict.fromkeys(collections, everything),
        }
        for name, collections in names.items()
    }
    return {source: {"databases": databases} for source in ("mongodb-atlas", "Cluster0")}


class Replayer:
    """Sends an example's request as written, with Shoal's base URL and credentials."""

    def __init__(self, app: Quart, unique: str, key: str, token: str) -> None:
        self.app = app
        self.unique = unique
        self.key = key
        self.token = token

    def database(self, name: str) -> str:
        return f"{name.replace('-', '_')}_{self.unique}"

    def headers(self, example: dict[str, Any]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in example["request_headers"] or []:
            lowered = name.lower()
            if lowered in {"apikey", "api-key"}:
                value = self.key
            elif lowered == "authorization":
                value = f"Bearer {self.token}"
            elif lowered == "email":
                value = USER
            elif lowered == "password":
                value = PASSWORD
            headers[name] = value
        credentials = {"apikey", "api-key", "authorization", "email", "jwttokenstring"}
        if not credentials & {name.lower() for name in headers}:
            # The OpenAPI file's examples give bodies and media types only.
            headers["apiKey"] = self.key
        return headers

    async def send(self, example: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
        body = example["request_body_text"] or ""
        for placeholder, value in PLACEHOLDERS.items():
            body = body.replace(placeholder, value)
        path = BASE + "/action/" + example["url"].rsplit("/action/", 1)[1]
        client: Any = self.app.test_client()  # the protocol's open() wants json=
        response = await client.open(
            path,
            method=example["method"],
            data=body.encode(),
            headers=self.headers(example) if headers is None else headers,
        )
        text = await response.get_data(as_text=True)
        return Reply(response.status_code, response.mimetype or "", text, response.headers)


@pytest.fixture(scope="module")
async def replayer(
    settings_factory_module: SettingsFactory, mongodb_uri: str
) -> AsyncIterator[Replayer]:
    unique = uuid.uuid4().hex[:8]
    settings = settings_factory_module(
        data_api={"enabled": True, "app_id": APP_ID, "data_sources": _databases(unique)},
        auth={"login_slowdown_after": 100, "login_lockout_after": 100},
    )
    app = create_app(settings)
    async with app.test_app():
        await get_auth(app).accounts.create_user(USER, PASSWORD, ["editor"])
        replayer = Replayer(
            app, unique, await api_key(app, "editor"), await token_for(app, "editor")
        )
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
        try:
            await client[replayer.database("sample_mflix")].movies.insert_one(
                {"title": "The Matrix", "year": 1999}
            )
        finally:
            await client.close()
        yield replayer


@pytest.fixture(scope="module")
def settings_factory_module(mongodb_uri: str, redis_url: str) -> SettingsFactory:
    def build(**overrides: Any) -> Any:
        return make_settings(mongodb_uri, redis_url, **overrides)

    return build


# -- the docs team's tested examples, in order -----------------------------------


def _jq(body: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        body = body[part]
    return body


@pytest.mark.parametrize("example", _cases({"tested-example"}))
async def test_the_tested_examples_get_the_tested_answers(
    replayer: Replayer, example: dict[str, Any]
) -> None:
    reply = await replayer.send(example)
    if any(name.lower() == "jwttokenstring" for name, _ in example["request_headers"]):
        # Custom JWT providers are an App Services feature Shoal does not have:
        # such a request has no credentials Shoal knows.
        assert reply.status == 400
        assert reply.json["error"] == "no authentication methods were specified"
        return
    assert 200 <= reply.status < 300, reply.text
    for assertion in example["response_assertions"]:
        expected = (
            json.loads(assertion["expected_text"])
            if assertion["jq"].startswith("jq -rc") and assertion["expected_text"][:1] in "[{"
            else assertion["expected_text"]
        )
        actual = _jq(reply.json, assertion["path"])
        if isinstance(expected, str) and not isinstance(actual, str):
            actual = json.dumps(actual)
        assert actual == expected, assertion["jq"]


# -- every other example: the same shape -------------------------------------------

SEEDS: dict[str, list[dict[str, Any]]] = {
    "tasks": [
        {"_id": ObjectId("6193504e1be4ab27791c8133"), "status": "open", "text": "Do the dishes"},
        {
            "_id": ObjectId("6194604e1d38dc33792d8257"),
            "status": "complete",
            "text": "Mop the floor",
            "completedAt": datetime(2021, 11, 16, tzinfo=UTC),
        },
        {"_id": ObjectId("6193ebd53821e5ec5b4f6c3b"), "status": "open", "text": "Call Jessica"},
    ],
    "hello": [
        {
            "_id": ObjectId("629971c0d71aad65bd59c545"),
            "greeting": "Hello, world!",
            "date": datetime(2022, 6, 7, 8, 10, 30, 998000, tzinfo=UTC),
        }
    ],
}


async def _seed(mongodb_uri: str, replayer: Replayer, *, empty: bool = False) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        for name in ("todo", "learn-data-api"):
            database = client[replayer.database(name)]
            for collection, documents in SEEDS.items():
                await database[collection].delete_many({})
                if not empty:
                    await database[collection].insert_many([dict(d) for d in documents])
    finally:
        await client.close()


def _lenient(text: str) -> Any:
    """A documented body; the docs elide with ``...``, which becomes nothing."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        text = re.sub(r"\{\s*\.\.\.\s*\}", "{}", text)
        text = re.sub(r",\s*\.\.\.", "", text)
        return json.loads(text)


def shape(value: Any) -> Any:
    """Keys and JSON types; an EJSON wrapper is its own type (``$oid``)."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)).startswith("$"):
            return next(iter(value))
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def assert_same_shape(action: str, expected: Any, actual: Any) -> None:
    if action in {"findOne", "find", "aggregate"} and isinstance(expected, dict):
        key = "document" if action == "findOne" else "documents"
        assert actual.keys() == expected.keys() == {key}
        wanted, got = expected[key], actual[key]
        if wanted is None or wanted == []:
            assert got == wanted
            return
        first_wanted = wanted if action == "findOne" else wanted[0]
        first_got = got if action == "findOne" else (got[0] if got else None)
        assert isinstance(first_got, dict), actual
        shared = first_wanted.keys() & first_got.keys()
        assert {name: shape(first_got[name]) for name in shared} == {
            name: shape(first_wanted[name]) for name in shared
        }
        return
    assert shape(actual) == shape(expected)


SHAPE_KINDS = {"openapi-example", "doc-io-code-block", "doc-request-response", "doc-request-only"}
SHAPE_KINDS |= {"openapi-x-codeSample"}


@pytest.mark.parametrize("example", _cases(SHAPE_KINDS))
async def test_the_documented_examples_get_answers_of_the_same_shape(
    replayer: Replayer, mongodb_uri: str, example: dict[str, Any]
) -> None:
    notes = example.get("notes") or ""
    await _seed(mongodb_uri, replayer, empty="when no document matches" in notes)
    reply = await replayer.send(example)
    if not example.get("request_body_is_valid_json", True) or "invalid JSON" in notes:
        # A body that is not JSON (a docs typo) is refused with the Data API's error.
        assert reply.status == 400
        assert reply.json["error_code"] == "InvalidParameter"
        return
    body = json.loads(example["request_body_text"])
    if not isinstance(body, dict):
        # The OpenAPI file's aggregate example is a bare pipeline (with a stage,
        # $groupBy, that MongoDB does not have): not a request body.
        assert reply.status == 400
        assert reply.json["error"] == "the request body must be a JSON object"
        return
    assert 200 <= reply.status < 300, reply.text
    if example["action"].startswith("insert"):
        assert reply.status == 201  # as the hosted service answered inserts
    if example["response_body_text"] is None:
        return
    expected = _lenient(example["response_body_text"])
    if example["action"] == "findOne" and "_id" in expected:
        # A docs slip: this output leaves out findOne's {"document": ...} wrapper.
        expected = {"document": expected}
    if "upsertedId" in expected and not body.get("upsert"):
        # Documented as the answer to an upsert, next to a request without one.
        del expected["upsertedId"]
    assert_same_shape(example["action"], expected, reply.json)


# -- the documented errors -----------------------------------------------------------


@pytest.mark.parametrize("example", _cases({"openapi-error-schema-const"}))
async def test_the_documented_errors_have_the_same_body(
    replayer: Replayer, example: dict[str, Any]
) -> None:
    expected = json.loads(example["response_body_text"])
    credentials = {
        "InvalidParameter": {},  # none at all
        "MissingParameter": {"email": USER},  # an email without its password
        "InvalidSession": {"apiKey": "shoal_not-a-key"},
    }[expected["error_code"]]
    namespace = {"dataSource": "mongodb-atlas", "database": "todo", "collection": "tasks"}
    request = {**example, "request_body_text": json.dumps(namespace)}
    reply = await replayer.send(
        request, headers={"Content-Type": "application/json", **credentials}
    )
    assert reply.status == example["response_status"]
    assert reply.json.keys() == expected.keys() == {"error", "error_code", "link"}
    assert reply.json["error_code"] == expected["error_code"]
    assert isinstance(reply.json["link"], str)
    if expected["error_code"] == "InvalidParameter":
        assert reply.json["error"] == expected["error"]
    if expected["error_code"] == "InvalidSession":
        assert reply.json["error"].startswith("invalid session: ")
