"""The Atlas Data API drop-in over HTTP: every action in JSON and in EJSON,
bad bodies, refused operators, credentials, exposure and resource rules."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Int64, ObjectId
from quart import Quart

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.storage import get_storage
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, editor_client, token_for
from tests.utils.data_api import APP_ID, EJSON, DataApiClient, api_key, data_api_config
from tests.utils.settings import example_resources

Body = dict[str, Any]
OID = "6193504e1be4ab27791c8133"

NOTES = {
    "schema": {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string", "maxLength": 50}, "n": {"type": "integer"}},
    },
    "resource_methods": ["GET", "POST", "DELETE"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "allowed_roles": ["editor"],
    "auth_field": "owner",
    "atomic_updates": True,
}


#: A resource that takes inserts and reads, and nothing else.
EVENTS = {
    "schema": {"type": "object"},
    "allow_unknown": True,
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET"],
    "allowed_roles": ["editor"],
}


@pytest.fixture
def database() -> str:
    return f"dapi_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def data_app(settings_factory: SettingsFactory, database: str) -> AsyncIterator[Quart]:
    """Serves tasks (editor reads and writes; viewer reads), vault (admin
    only), the example's books and an owner-filtered notes resource."""
    collections = {
        "tasks": {"roles": ["editor"], "read_roles": ["editor", "viewer"]},
        "vault": {"roles": ["admin"]},
        "books": {"roles": ["editor"]},
        "notes": {"roles": ["editor"]},
        "ledger": {"read_roles": ["editor"], "write_roles": []},
        "events": {"roles": ["editor"]},
        "authors": {"roles": ["editor", "viewer"]},
    }
    settings = settings_factory(
        mongodb={"database": database},
        data_api=data_api_config(database, **collections),
        resources={**example_resources(), "notes": NOTES, "events": EVENTS},
    )
    application = create_app(settings)
    async with application.test_app():
        yield application


async def api(app: Quart, database: str, *roles: str, collection: str = "tasks") -> DataApiClient:
    key = await api_key(app, *(roles or ("editor",)))
    return DataApiClient(app.test_client(), database, collection, headers={"apiKey": key})


@pytest.fixture
async def tasks(data_app: Quart, database: str) -> DataApiClient:
    return await api(data_app, database)


# -- insertOne / insertMany ----------------------------------------------------


async def test_insert_one_in_json_answers_the_id_as_a_string(tasks: DataApiClient) -> None:
    reply = await tasks.call("insertOne", {"document": {"text": "Do the dishes", "n": 1}})
    assert reply.status == 201
    assert reply.content_type == "application/json"
    assert set(reply.json) == {"insertedId"}
    assert ObjectId.is_valid(reply.json["insertedId"])
    found = await tasks.call("findOne", {"filter": {"text": "Do the dishes"}})
    assert found.json == {
        "document": {"_id": reply.json["insertedId"], "text": "Do the dishes", "n": 1}
    }


async def test_insert_one_in_ejson_keeps_types_both_ways(tasks: DataApiClient) -> None:
    when = datetime(2022, 1, 12, 2, 33, 23, 67000, tzinfo=UTC)
    reply = await tasks.call(
        "insertOne",
        {"document": {"_id": ObjectId(OID), "when": when, "big": Int64(2**40)}},
        ejson=True,
        canonical=True,
    )
    assert reply.status == 201
    assert reply.content_type == EJSON
    assert reply.json == {"insertedId": {"$oid": OID}}
    # A $oid filter matches, and the answer is canonical EJSON.
    found = await tasks.call("findOne", {"filter": {"_id": ObjectId(OID)}}, ejson=True)
    assert found.json == {
        "document": {
            "_id": {"$oid": OID},
            "when": {"$date": {"$numberLong": "1641954803067"}},
            "big": {"$numberLong": str(2**40)},
        }
    }
    # In plain JSON: the hex string, an ISO date with milliseconds, a number.
    plain = await tasks.call("findOne", {"filter": {"_id": {"$oid": OID}}})
    assert plain.json == {
        "document": {"_id": OID, "when": "2022-01-12T02:33:23.067Z", "big": 2**40}
    }


async def test_insert_many_answers_ids_in_order(tasks: DataApiClient) -> None:
    reply = await tasks.call("insertMany", {"documents": [{"i": 1}, {"_id": "mine", "i": 2}]})
    assert reply.status == 201
    first, second = reply.json["insertedIds"]
    assert ObjectId.is_valid(first)
    assert second == "mine"
    ejson = await tasks.call("insertMany", {"documents": [{"i": 3}]}, ejson=True)
    assert set(ejson.json["insertedIds"][0]) == {"$oid"}
    listed = await tasks.call("find", {"sort": {"i": 1}, "projection": {"_id": 0}})
    assert listed.json == {"documents": [{"i": 1}, {"i": 2}, {"i": 3}]}


async def test_insert_many_of_nothing_is_refused(tasks: DataApiClient) -> None:
    reply = await tasks.call("insertMany", {"documents": []})
    assert reply.status == 400
    assert reply.json["error_code"] == "InvalidParameter"
    assert "one document or more" in reply.json["error"]


async def test_a_duplicate_id_is_an_error_and_inserts_nothing(tasks: DataApiClient) -> None:
    await tasks.call("insertOne", {"document": {"_id": "a"}})
    reply = await tasks.call("insertMany", {"documents": [{"_id": "b"}, {"_id": "a"}]})
    assert reply.status == 409
    assert reply.json["error_code"] == "DuplicateKey"
    assert (await tasks.call("find", {})).json == {"documents": [{"_id": "a"}]}


# -- findOne / find ------------------------------------------------------------


@pytest.mark.parametrize("ejson", [False, True], ids=["json", "ejson"])
async def test_find_one_without_a_match_is_a_null_document(
    tasks: DataApiClient, ejson: bool
) -> None:
    reply = await tasks.call("findOne", {"filter": {"text": "nothing"}}, ejson=ejson)
    assert reply.status == 200
    assert reply.json == {"document": None}


@pytest.mark.parametrize("ejson", [False, True], ids=["json", "ejson"])
async def test_find_without_a_match_is_an_empty_list(tasks: DataApiClient, ejson: bool) -> None:
    reply = await tasks.call("find", {"filter": {"text": "nothing"}}, ejson=ejson)
    assert reply.status == 200
    assert reply.json == {"documents": []}


async def test_find_one_with_projection_and_no_filter(tasks: DataApiClient) -> None:
    await tasks.call("insertOne", {"document": {"text": "a", "status": "open", "n": 1}})
    reply = await tasks.call("findOne", {"projection": {"status": 1, "_id": 0}})
    assert reply.json == {"document": {"status": "open"}}


async def test_find_filters_sorts_skips_and_limits(tasks: DataApiClient) -> None:
    await tasks.call("insertMany", {"documents": [{"n": n, "even": n % 2 == 0} for n in range(10)]})
    reply = await tasks.call(
        "find",
        {
            "filter": {"even": True},
            "sort": {"n": -1},
            "skip": 1,
            "limit": 2,
            "projection": {"_id": 0},
        },
    )
    assert reply.json == {"documents": [{"n": 6, "even": True}, {"n": 4, "even": True}]}
    ejson = await tasks.call(
        "find",
        {"filter": {"n": {"$gte": 8}}, "sort": {"n": 1}, "projection": {"_id": 0, "n": 1}},
        ejson=True,
    )
    assert ejson.json == {"documents": [{"n": {"$numberInt": "8"}}, {"n": {"$numberInt": "9"}}]}


async def test_find_returns_1000_documents_unless_asked_for_more(tasks: DataApiClient) -> None:
    documents = [{"n": n} for n in range(1001)]
    assert (await tasks.call("insertMany", {"documents": documents})).status == 201
    default = await tasks.call("find", {"projection": {"_id": 0}})
    assert len(default.json["documents"]) == 1000
    everything = await tasks.call("find", {"limit": 50_000})
    assert len(everything.json["documents"]) == 1001


async def test_a_limit_above_50000_is_refused(tasks: DataApiClient) -> None:
    reply = await tasks.call("find", {"limit": 50_001})
    assert reply.status == 400
    assert reply.json["error_code"] == "InvalidParameter"
    assert "50000" in reply.json["error"]


async def test_relaxed_dates_without_fractions_and_real_clients_headers(
    tasks: DataApiClient,
) -> None:
    """What real clients send: dates without milliseconds, axios' Accept, extra
    headers, and upsert/skip left out."""
    body = _json({**tasks.namespace(), "document": {"due": {"$date": "2022-06-07T00:00:00Z"}}})
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/plain, */*",
        "Access-Control-Request-Headers": "*",
        "x-realm-op-name": "insertTask",
    }
    reply = await tasks.raw("insertOne", body, headers=headers)
    assert reply.status == 201
    assert reply.content_type == "application/json"
    since = {"$gte": {"$date": "2022-06-01T00:00:00Z"}}
    found = await tasks.raw(
        "findOne", _json({**tasks.namespace(), "filter": {"due": since}}), headers={"Accept": "*/*"}
    )
    assert found.content_type == "application/json"
    assert found.json["document"]["due"] == "2022-06-07T00:00:00.000Z"


async def test_a_body_without_content_type_is_read_too(tasks: DataApiClient) -> None:
    body = _json(tasks.namespace())
    reply = await tasks.raw(
        "find", body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert reply.status == 200
    assert reply.json == {"documents": []}


# -- updateOne / updateMany / replaceOne ---------------------------------------


async def test_update_one_counts_and_sets(tasks: DataApiClient) -> None:
    inserted = await tasks.call("insertOne", {"document": {"text": "a", "done": False}})
    oid = inserted.json["insertedId"]
    reply = await tasks.call(
        "updateOne", {"filter": {"_id": {"$oid": oid}}, "update": {"$set": {"done": True}}}
    )
    assert reply.status == 200
    assert reply.json == {"matchedCount": 1, "modifiedCount": 1}
    again = await tasks.call(
        "updateOne",
        {"filter": {"_id": ObjectId(oid)}, "update": {"$set": {"done": True}}},
        ejson=True,
    )
    assert again.json == {"matchedCount": {"$numberInt": "1"}, "modifiedCount": {"$numberInt": "0"}}
    missing = await tasks.call(
        "updateOne", {"filter": {"text": "zzz"}, "update": {"$inc": {"n": 1}}}
    )
    assert missing.json == {"matchedCount": 0, "modifiedCount": 0}


@pytest.mark.parametrize("action", ["updateOne", "updateMany"])
async def test_an_upsert_answers_the_new_id(tasks: DataApiClient, action: str) -> None:
    reply = await tasks.call(
        action, {"filter": {"text": "new"}, "update": {"$set": {"n": 1}}, "upsert": True}
    )
    assert reply.status == 200
    assert reply.json["matchedCount"] == 0
    assert reply.json["modifiedCount"] == 0
    assert ObjectId.is_valid(reply.json["upsertedId"])
    ejson = await tasks.call(
        action,
        {"filter": {"text": "newer"}, "update": {"$set": {"n": 2}}, "upsert": True},
        ejson=True,
    )
    assert ejson.json["matchedCount"] == {"$numberInt": "0"}
    assert set(ejson.json["upsertedId"]) == {"$oid"}
    stored = await tasks.call("find", {"sort": {"n": 1}, "projection": {"_id": 0}})
    assert stored.json == {"documents": [{"text": "new", "n": 1}, {"text": "newer", "n": 2}]}


async def test_update_many_counts(tasks: DataApiClient) -> None:
    await tasks.call(
        "insertMany", {"documents": [{"g": 1, "v": 0}, {"g": 1, "v": 1}, {"g": 2, "v": 0}]}
    )
    reply = await tasks.call("updateMany", {"filter": {"g": 1}, "update": {"$set": {"v": 1}}})
    assert reply.json == {"matchedCount": 2, "modifiedCount": 1}
    ejson = await tasks.call("updateMany", {"filter": {}, "update": {"$inc": {"v": 1}}}, ejson=True)
    assert ejson.json == {"matchedCount": {"$numberInt": "3"}, "modifiedCount": {"$numberInt": "3"}}


async def test_replace_one_and_its_upsert(tasks: DataApiClient) -> None:
    await tasks.call("insertOne", {"document": {"_id": "t1", "text": "old", "extra": 1}})
    reply = await tasks.call(
        "replaceOne", {"filter": {"_id": "t1"}, "replacement": {"text": "new"}}
    )
    assert reply.json == {"matchedCount": 1, "modifiedCount": 1}
    assert (await tasks.call("findOne", {"filter": {"_id": "t1"}})).json == {
        "document": {"_id": "t1", "text": "new"}
    }
    upsert = await tasks.call(
        "replaceOne",
        {"filter": {"k": "x"}, "replacement": {"text": "made"}, "upsert": True},
        ejson=True,
    )
    assert upsert.json["matchedCount"] == {"$numberInt": "0"}
    assert set(upsert.json["upsertedId"]) == {"$oid"}
    none = await tasks.call("replaceOne", {"filter": {"k": "y"}, "replacement": {"a": 1}})
    assert none.json == {"matchedCount": 0, "modifiedCount": 0}


async def test_a_replacement_with_operators_is_refused(tasks: DataApiClient) -> None:
    reply = await tasks.call("replaceOne", {"filter": {}, "replacement": {"$set": {"a": 1}}})
    assert reply.status == 400
    assert "replacement" in reply.json["error"]


async def test_an_update_without_operators_is_refused(tasks: DataApiClient) -> None:
    reply = await tasks.call("updateOne", {"filter": {}, "update": {"a": 1}})
    assert reply.status == 400
    assert "update operators" in reply.json["error"]


async def test_what_mongodb_refuses_in_an_update_is_a_400(tasks: DataApiClient) -> None:
    await tasks.call("insertOne", {"document": {"_id": "s", "text": "a string"}})
    reply = await tasks.call("updateOne", {"filter": {"_id": "s"}, "update": {"$inc": {"text": 1}}})
    assert reply.status == 400
    assert reply.json["error"]


# -- deleteOne / deleteMany ----------------------------------------------------


@pytest.mark.parametrize("ejson", [False, True], ids=["json", "ejson"])
async def test_deletes_count(tasks: DataApiClient, ejson: bool) -> None:
    await tasks.call("insertMany", {"documents": [{"g": 1}, {"g": 1}, {"g": 1}, {"g": 2}]})
    one = await tasks.call("deleteOne", {"filter": {"g": 1}}, ejson=ejson)
    many = await tasks.call("deleteMany", {"filter": {"g": 1}}, ejson=ejson)
    nothing = await tasks.call("deleteMany", {"filter": {"g": 9}}, ejson=ejson)
    if ejson:
        assert one.json == {"deletedCount": {"$numberInt": "1"}}
        assert many.json == {"deletedCount": {"$numberInt": "2"}}
        assert nothing.json == {"deletedCount": {"$numberInt": "0"}}
    else:
        assert (one.json, many.json, nothing.json) == (
            {"deletedCount": 1},
            {"deletedCount": 2},
            {"deletedCount": 0},
        )


async def test_delete_many_needs_a_filter(tasks: DataApiClient) -> None:
    await tasks.call("insertOne", {"document": {"keep": True}})
    reply = await tasks.call("deleteMany", {})
    assert reply.status == 400
    assert reply.json["error_code"] == "MissingParameter"
    assert len((await tasks.call("find")).json["documents"]) == 1


# -- aggregate -----------------------------------------------------------------


@pytest.mark.parametrize("ejson", [False, True], ids=["json", "ejson"])
async def test_aggregate_groups(tasks: DataApiClient, ejson: bool) -> None:
    await tasks.call(
        "insertMany",
        {
            "documents": [
                {"status": "complete", "t": "a"},
                {"status": "complete", "t": "b"},
                {"status": "open", "t": "c"},
            ]
        },
    )
    pipeline = [
        {"$match": {"status": "complete"}},
        {"$group": {"_id": "$status", "count": {"$sum": 1}}},
    ]
    reply = await tasks.call("aggregate", {"pipeline": pipeline}, ejson=ejson)
    assert reply.status == 200
    count: Any = {"$numberInt": "2"} if ejson else 2
    assert reply.json == {"documents": [{"_id": "complete", "count": count}]}
    empty = await tasks.call(
        "aggregate", {"pipeline": [{"$match": {"status": "none"}}]}, ejson=ejson
    )
    assert empty.json == {"documents": []}


@pytest.mark.parametrize(
    ("action", "fields", "named"),
    [
        ("find", {"filter": {"$where": "this.a == 1"}}, "$where"),
        (
            "deleteMany",
            {"filter": {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}},
            "$function",
        ),
        ("aggregate", {"pipeline": [{"$out": "elsewhere"}]}, "$out"),
        ("aggregate", {"pipeline": [{"$merge": {"into": "elsewhere"}}]}, "$merge"),
        (
            "aggregate",
            {"pipeline": [{"$group": {"_id": 1, "x": {"$accumulator": {"init": "f"}}}}]},
            "$accumulator",
        ),
        (
            "aggregate",
            {
                "pipeline": [
                    {
                        "$lookup": {
                            "from": "vault",
                            "as": "v",
                            "localField": "a",
                            "foreignField": "b",
                        }
                    }
                ]
            },
            "vault",
        ),
        ("aggregate", {"pipeline": [{"$unionWith": "unlisted"}]}, "unlisted"),
        (
            "aggregate",
            {"pipeline": [{"$facet": {"a": [{"$graphLookup": {"from": "vault"}}]}}]},
            "vault",
        ),
        (
            "aggregate",
            {"pipeline": [{"$lookup": {"from": "notes", "as": "n", "pipeline": []}}]},
            "owners",
        ),
        ("updateOne", {"filter": {}, "update": {"$set": {"a": {"$function": {}}}}}, "$function"),
        (
            "find",
            {"projection": {"a": {"$function": {"body": "x", "args": [], "lang": "js"}}}},
            "$function",
        ),
    ],
)
async def test_refused_operators_and_stages_are_400(
    tasks: DataApiClient, action: str, fields: Body, named: str
) -> None:
    await tasks.call("insertOne", {"document": {"a": 1}})
    reply = await tasks.call(action, fields)
    assert reply.status == 400
    assert reply.json["error_code"] == "InvalidParameter"
    assert named in reply.json["error"]
    assert (await tasks.call("find", {"projection": {"_id": 0}})).json == {"documents": [{"a": 1}]}


@pytest.mark.engine_gap(ferretdb="union_with")
async def test_a_join_into_a_served_collection_is_allowed(
    data_app: Quart, database: str, tasks: DataApiClient
) -> None:
    books = await api(data_app, database, "editor", collection="books")
    await books.call("insertOne", {"document": {"title": "Dune"}})
    await tasks.call("insertOne", {"document": {"k": 1}})
    reply = await tasks.call("aggregate", {"pipeline": [{"$unionWith": {"coll": "books"}}]})
    assert reply.status == 200
    documents = reply.json["documents"]
    assert [document.get("k") for document in documents] == [1, None]
    assert documents[1]["title"] == "Dune"


# -- bad bodies ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["dataSource", "database", "collection"])
async def test_a_missing_namespace_field_is_400(tasks: DataApiClient, missing: str) -> None:
    body = {**tasks.namespace(), "filter": {}}
    del body[missing]
    reply = await tasks.raw("find", _json(body))
    assert reply.status == 400
    assert reply.json["error_code"] == "MissingParameter"
    assert missing in reply.json["error"]
    assert "link" in reply.json


@pytest.mark.parametrize(
    ("action", "fields", "named"),
    [
        ("find", {"filter": "text"}, "filter"),
        ("find", {"limit": "10"}, "limit"),
        ("find", {"limit": 0}, "limit"),
        ("find", {"skip": -1}, "skip"),
        ("find", {"sort": [["a", 1]]}, "sort"),
        ("find", {"projection": 1}, "projection"),
        ("updateOne", {"filter": {}, "update": {"$set": {}}, "upsert": "yes"}, "upsert"),
        ("insertOne", {"document": [1]}, "document"),
        ("insertMany", {"documents": {"a": 1}}, "documents"),
        ("insertMany", {"documents": [{"a": 1}, 2]}, "documents[1]"),
        ("aggregate", {"pipeline": {"$match": {}}}, "pipeline"),
        ("aggregate", {"pipeline": [{"$match": {}, "$limit": 1}]}, "pipeline[0]"),
        ("find", {"filters": {}}, "filters"),
        ("findOne", {"limit": 1}, "limit"),
        ("find", {"collection": 7}, "collection"),
    ],
)
async def test_fields_of_the_wrong_type_are_400(
    tasks: DataApiClient, action: str, fields: Body, named: str
) -> None:
    reply = await tasks.call(action, fields)
    assert reply.status == 400
    assert reply.json["error_code"] == "InvalidParameter"
    assert named in reply.json["error"]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[1, 2]",
        '{"filter": {"_id": {"$oid": "xyz"}}}',
        '{"a": {"$date": "someday"}}',
        '{"filter": {"price": {"$numberDecimal": "abc"}}}',
    ],
)
async def test_a_malformed_body_is_400(tasks: DataApiClient, body: str) -> None:
    reply = await tasks.raw("find", body)
    assert reply.status == 400
    assert reply.json["error_code"] == "InvalidParameter"
    assert reply.json["error"]


async def test_null_optional_fields_are_left_out(tasks: DataApiClient) -> None:
    reply = await tasks.call("find", {"filter": None, "sort": None, "limit": None, "skip": None})
    assert reply.status == 200


async def test_an_unknown_action_is_404(tasks: DataApiClient) -> None:
    reply = await tasks.call("pipeline", {"pipeline": []})
    assert reply.status == 404
    assert reply.json["error_code"] == "NotFound"
    assert "'pipeline'" in reply.json["error"]


async def test_an_action_takes_post_and_get_with_a_body(tasks: DataApiClient) -> None:
    body = _json({**tasks.namespace(), "document": {"a": 1}})
    assert (await tasks.raw("insertOne", body, method="GET")).status == 201
    reply = await tasks.raw("find", _json(tasks.namespace()), method="PUT")
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD, POST"
    assert reply.json["error_code"] == "MethodNotAllowed"
    assert len((await tasks.call("find")).json["documents"]) == 1


async def test_a_body_over_the_limit_is_413_in_the_data_apis_shape(tasks: DataApiClient) -> None:
    body = _json({**tasks.namespace(), "filter": {"text": "x" * 1_100_000}})
    reply = await tasks.raw("find", body)
    assert reply.status == 413
    assert reply.json["error_code"] == "RequestTooLarge"


async def test_ejson_only_when_accept_names_it(tasks: DataApiClient) -> None:
    await tasks.call("insertOne", {"document": {"_id": "x", "n": 1}})
    body = _json(tasks.namespace())
    for accept, media in [
        ("application/ejson", EJSON),
        ("application/json;q=0.9, application/ejson", EJSON),
        ("application/ejson;q=0", "application/json"),
        ("*/*", "application/json"),
        ("application/json, text/plain, */*", "application/json"),
    ]:
        reply = await tasks.raw("find", body, headers={"Accept": accept})
        assert reply.content_type == media, accept
        n = reply.json["documents"][0]["n"]
        assert n == ({"$numberInt": "1"} if media == EJSON else 1)


# -- credentials ---------------------------------------------------------------


async def test_no_credentials_is_400_invalid_parameter(tasks: DataApiClient) -> None:
    reply = await DataApiClient(tasks.client, tasks.database, "tasks").call("find")
    assert reply.status == 400
    assert reply.json["error"] == "no authentication methods were specified"
    assert reply.json["error_code"] == "InvalidParameter"


@pytest.mark.parametrize("header", ["apiKey", "api-key", "X-API-Key", "APIKEY"])
async def test_an_api_key_in_any_of_its_headers(
    data_app: Quart, database: str, header: str
) -> None:
    key = await api_key(data_app, "editor")
    client = DataApiClient(data_app.test_client(), database, "tasks", headers={header: key})
    assert (await client.call("find")).status == 200


@pytest.mark.parametrize(
    "headers",
    [{"apiKey": "shoal_not-a-key"}, {"api-key": "nonsense"}, {"Authorization": "Bearer nope"}],
)
async def test_bad_credentials_are_401_invalid_session(
    tasks: DataApiClient, headers: dict[str, str]
) -> None:
    client = DataApiClient(tasks.client, tasks.database, "tasks", headers=headers)
    reply = await client.call("find")
    assert reply.status == 401
    assert reply.json["error_code"] == "InvalidSession"
    assert reply.json["error"].startswith("invalid session: ")


async def test_a_bearer_token(data_app: Quart, database: str) -> None:
    token = await token_for(data_app, "editor")
    client = DataApiClient(data_app.test_client(), database, "tasks", headers=bearer(token))
    assert (await client.call("insertOne", {"document": {"a": 1}})).status == 201


async def test_email_and_password_headers_log_in(data_app: Quart, database: str) -> None:
    await get_auth(data_app).accounts.create_user("ada@example.com", "correct horse", ["editor"])
    good = {"email": "ada@example.com", "password": "correct horse"}
    client = DataApiClient(data_app.test_client(), database, "tasks", headers=good)
    assert (await client.call("find")).status == 200
    wrong = DataApiClient(
        data_app.test_client(), database, "tasks", headers={**good, "password": "wrong"}
    )
    assert (await wrong.call("find")).status == 401
    half = DataApiClient(
        data_app.test_client(), database, "tasks", headers={"email": "ada@example.com"}
    )
    reply = await half.call("find")
    assert reply.status == 400
    assert reply.json["error_code"] == "MissingParameter"


async def test_wrong_passwords_are_throttled_like_logins(
    settings_factory: SettingsFactory, database: str
) -> None:
    settings = settings_factory(
        mongodb={"database": database},
        data_api=data_api_config(database, tasks={"roles": ["editor"]}),
        auth={"login_slowdown_after": 5, "login_lockout_after": 2},
    )
    app = create_app(settings)
    async with app.test_app():
        await get_auth(app).accounts.create_user("bob", "right password", ["editor"])
        client = DataApiClient(
            app.test_client(), database, "tasks", headers={"email": "bob", "password": "wrong"}
        )
        assert [(await client.call("find")).status for _ in range(2)] == [401, 401]
        locked = await client.call("find", headers={"password": "right password"})
        assert locked.status == 429
        assert locked.json["error_code"] == "TooManyRequests"
        assert "Retry-After" in locked.headers


# -- exposure and roles --------------------------------------------------------


async def test_an_unknown_data_source_is_400(tasks: DataApiClient) -> None:
    reply = await tasks.raw("find", _json({**tasks.namespace(), "dataSource": "Cluster9"}))
    assert reply.status == 400
    assert "Cluster9" in reply.json["error"]


@pytest.mark.parametrize(
    "namespace",
    [{"collection": "unlisted"}, {"database": "admin"}, {"collection": "shoal_apikeys"}],
)
async def test_collections_not_served_are_403(
    tasks: DataApiClient, namespace: dict[str, str]
) -> None:
    reply = await tasks.raw("find", _json({**tasks.namespace(), **namespace}))
    assert reply.status == 403
    assert reply.json["error_code"] == "NoMatchingRuleFound"


async def test_roles_decide_reads_and_writes(data_app: Quart, database: str) -> None:
    viewer = await api(data_app, database, "viewer")
    assert (await viewer.call("find")).status == 200
    refused = await viewer.call("insertOne", {"document": {"a": 1}})
    assert refused.status == 403
    assert refused.json["error_code"] == "NoMatchingRuleFound"
    assert "editor" in refused.json["error"]
    editor = await api(data_app, database, "editor")
    assert (await editor.call("find", collection="vault")).status == 403
    ledger_write = await editor.call("insertOne", {"document": {"a": 1}}, collection="ledger")
    assert ledger_write.status == 403
    assert (await editor.call("find", collection="ledger")).status == 200


async def test_the_data_api_is_off_unless_enabled(app: Quart) -> None:
    response = await app.test_client().post("/action/find", json={})
    assert response.status_code == 404


# -- hosted URL shapes ---------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "beta"])
async def test_the_hosted_path_serves_the_same_actions(tasks: DataApiClient, version: str) -> None:
    hosted = DataApiClient(
        tasks.client,
        tasks.database,
        "tasks",
        headers=tasks.headers,
        base=f"/app/{APP_ID}/endpoint/data/{version}",
    )
    assert (await hosted.call("insertOne", {"document": {"a": 1}})).status == 201
    assert len((await tasks.call("find")).json["documents"]) == 1


async def test_another_app_id_is_404(tasks: DataApiClient) -> None:
    other = DataApiClient(
        tasks.client,
        tasks.database,
        "tasks",
        headers=tasks.headers,
        base="/app/data-zzzzz/endpoint/data/v1",
    )
    reply = await other.call("find")
    assert reply.status == 404
    assert reply.json["error"] == "cannot find app using Client App ID 'data-zzzzz'"


# -- resources' rules on their collections -------------------------------------


async def test_a_resources_schema_applies_to_inserts(data_app: Quart, database: str) -> None:
    books = await api(data_app, database, "editor", collection="books")
    refused = await books.call("insertOne", {"document": {"year": -5}})
    assert refused.status == 400
    assert refused.json["error_code"] == "SchemaValidationFailedWrite"
    assert "title" in refused.json["error"]
    made = await books.call("insertOne", {"document": {"title": "Dune", "year": 1965}})
    assert made.status == 201
    rest = await data_app.test_client().get(f"/books/{made.json['insertedId']}")
    assert rest.status_code == 200
    item = await rest.get_json()
    assert item["title"] == "Dune"
    assert item["in_stock"] is True  # the schema's default, as a REST POST gets it
    assert item["_etag"]


async def test_a_resources_updates_are_checked_and_stamped(data_app: Quart, database: str) -> None:
    books = await api(data_app, database, "editor", collection="books")
    made = await books.call("insertOne", {"document": {"title": "Dune", "year": 1965}})
    oid = made.json["insertedId"]
    before = await (await data_app.test_client().get(f"/books/{oid}")).get_json()
    changed = await books.call(
        "updateOne", {"filter": {"_id": {"$oid": oid}}, "update": {"$set": {"year": 1966}}}
    )
    assert changed.json == {"matchedCount": 1, "modifiedCount": 1}
    after = await (await data_app.test_client().get(f"/books/{oid}")).get_json()
    assert after["year"] == 1966
    assert after["_etag"] != before["_etag"]  # REST clients holding the old ETag get 412
    invalid = await books.call(
        "updateOne", {"filter": {"_id": {"$oid": oid}}, "update": {"$set": {"year": -1}}}
    )
    assert invalid.status == 400
    assert invalid.json["error_code"] == "SchemaValidationFailedWrite"
    # books takes no update operators over REST (atomic_updates is off): nor here.
    inc = await books.call("updateOne", {"filter": {}, "update": {"$inc": {"year": 1}}})
    assert inc.status == 400
    assert "$inc" in inc.json["error"]
    assert "atomic_updates" in inc.json["error"]
    final = await (await data_app.test_client().get(f"/books/{oid}")).get_json()
    assert final["year"] == 1966


async def test_a_resources_upsert_and_replace_are_validated(data_app: Quart, database: str) -> None:
    books = await api(data_app, database, "editor", collection="books")
    upsert = await books.call(
        "updateOne",
        {"filter": {"title": "Emma"}, "update": {"$set": {"year": 1815}}, "upsert": True},
    )
    assert upsert.status == 200
    oid = upsert.json["upsertedId"]
    item = await (await data_app.test_client().get(f"/books/{oid}")).get_json()
    assert (item["title"], item["year"]) == ("Emma", 1815)
    replaced = await books.call(
        "replaceOne", {"filter": {"title": "Emma"}, "replacement": {"title": "Emma", "year": 1816}}
    )
    assert replaced.json == {"matchedCount": 1, "modifiedCount": 1}
    bad = await books.call("replaceOne", {"filter": {"title": "Emma"}, "replacement": {"year": 1}})
    assert bad.status == 400
    assert bad.json["error_code"] == "SchemaValidationFailedWrite"


async def test_a_resources_unset_and_set_on_insert(data_app: Quart, database: str) -> None:
    books = await api(data_app, database, "editor", collection="books")
    made = await books.call("insertOne", {"document": {"title": "Dune", "price": 9.5}})
    oid = made.json["insertedId"]
    unset = await books.call(
        "updateOne", {"filter": {"_id": {"$oid": oid}}, "update": {"$unset": {"price": ""}}}
    )
    assert unset.json == {"matchedCount": 1, "modifiedCount": 1}
    item = await (await data_app.test_client().get(f"/books/{oid}")).get_json()
    assert "price" not in item
    required = await books.call(
        "updateOne", {"filter": {"_id": {"$oid": oid}}, "update": {"$unset": {"title": ""}}}
    )
    assert required.status == 400
    assert "title" in required.json["error"]
    upsert = await books.call(
        "updateMany",
        {
            "filter": {"title": "Emma"},
            "update": {"$setOnInsert": {"year": 1815}, "$set": {"price": 3}},
            "upsert": True,
        },
    )
    created = await (
        await data_app.test_client().get(f"/books/{upsert.json['upsertedId']}")
    ).get_json()
    assert (created["title"], created["year"], created["price"]) == ("Emma", 1815, 3)


async def test_owners_see_and_change_only_their_documents(data_app: Quart, database: str) -> None:
    alice = await api(data_app, database, "editor", collection="notes")
    bob = await api(data_app, database, "editor", collection="notes")
    await alice.call("insertMany", {"documents": [{"text": "a1"}, {"text": "a2"}]})
    await bob.call("insertOne", {"document": {"text": "b1"}})
    own = await alice.call("find", {"projection": {"_id": 0, "text": 1}, "sort": {"text": 1}})
    assert own.json == {"documents": [{"text": "a1"}, {"text": "a2"}]}
    grouped = await bob.call(
        "aggregate", {"pipeline": [{"$group": {"_id": None, "n": {"$sum": 1}}}]}
    )
    assert grouped.json == {"documents": [{"_id": None, "n": 1}]}
    assert (await bob.call("deleteMany", {"filter": {}})).json == {"deletedCount": 1}
    assert (await alice.call("updateMany", {"filter": {}, "update": {"$set": {"n": 1}}})).json == {
        "matchedCount": 2,
        "modifiedCount": 2,
    }
    counted = await alice.call("updateMany", {"filter": {}, "update": {"$inc": {"n": 2}}})
    assert counted.json == {"matchedCount": 2, "modifiedCount": 2}
    too_long = await alice.call(
        "updateOne", {"filter": {"text": "a1"}, "update": {"$set": {"text": "x" * 60}}}
    )
    assert too_long.status == 400
    assert too_long.json["error_code"] == "SchemaValidationFailedWrite"
    texts = await alice.call(
        "find", {"projection": {"_id": 0, "text": 1, "n": 1}, "sort": {"text": 1}}
    )
    assert texts.json == {"documents": [{"text": "a1", "n": 3}, {"text": "a2", "n": 3}]}
    unknown = await alice.call("updateOne", {"filter": {}, "update": {"$rename": {"n": "m"}}})
    assert unknown.status == 400
    assert "$rename" in unknown.json["error"]
    upsert = await alice.call(
        "updateOne", {"filter": {"text": "new"}, "update": {"$inc": {"n": 1}}, "upsert": True}
    )
    assert upsert.status == 400
    assert "$set and $setOnInsert" in upsert.json["error"]
    stolen = await alice.call("updateOne", {"filter": {}, "update": {"$set": {"owner": "x"}}})
    assert stolen.status == 400
    assert len((await alice.call("find")).json["documents"]) == 2


async def test_a_resource_that_does_not_serve_a_method_refuses_its_action(
    data_app: Quart, database: str
) -> None:
    events = await api(data_app, database, "editor", collection="events")
    assert (await events.call("insertOne", {"document": {"kind": "login"}})).status == 201
    refused: list[tuple[str, Body]] = [
        ("updateOne", {"filter": {}, "update": {"$set": {"kind": "x"}}}),
        ("replaceOne", {"filter": {}, "replacement": {"kind": "x"}}),
        ("deleteMany", {"filter": {}}),
    ]
    for action, fields in refused:
        reply = await events.call(action, fields)
        assert reply.status == 403, action
        assert reply.json["error_code"] == "NoMatchingRuleFound"
        assert "does not serve" in reply.json["error"]
    assert len((await events.call("find")).json["documents"]) == 1


async def test_a_resources_roles_apply_on_top_of_the_data_apis(
    data_app: Quart, database: str
) -> None:
    viewer = await api(data_app, database, "viewer", collection="authors")
    assert (await viewer.call("find")).status == 200  # authors are public to read
    refused = await viewer.call("insertOne", {"document": {"name": "Le Guin"}})
    assert refused.status == 403
    assert "editor" in refused.json["error"]


async def test_a_data_api_write_moves_the_resources_cache_on(
    settings_factory: SettingsFactory, database: str
) -> None:
    resources = example_resources()
    resources["books"] = {**resources["books"], "cache_ttl": 60}
    settings = settings_factory(
        mongodb={"database": database},
        resources=resources,
        data_api=data_api_config(database, books={"roles": ["editor"]}),
    )
    app = create_app(settings)
    async with app.test_app():
        books = await api(app, database, "editor", collection="books")
        first = await (await app.test_client().get("/books")).get_json()
        assert first["_items"] == []
        await books.call("insertOne", {"document": {"title": "Fresh"}})
        second = await (await app.test_client().get("/books")).get_json()
        assert [item["title"] for item in second["_items"]] == ["Fresh"]
        await books.call("deleteMany", {"filter": {}})
        third = await (await app.test_client().get("/books")).get_json()
        assert third["_items"] == []


# -- policies ------------------------------------------------------------------


async def test_rate_limits_count_finds_as_reads(
    settings_factory: SettingsFactory, database: str
) -> None:
    settings = settings_factory(
        mongodb={"database": database},
        data_api=data_api_config(database, tasks={"roles": ["editor"]}),
        rate_limits={"read": "2/minute", "write": "100/minute"},
    )
    app = create_app(settings)
    async with app.test_app():
        client = await api(app, database, "editor")
        statuses = [(await client.call("find")).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = await client.call("find")
        assert refused.json["error_code"] == "TooManyRequests"
        assert "Retry-After" in refused.headers
        assert (await client.call("insertOne", {"document": {"a": 1}})).status == 201


async def test_an_idempotency_key_inserts_once(tasks: DataApiClient) -> None:
    headers = {"Idempotency-Key": "insert-42"}
    first = await tasks.call("insertOne", {"document": {"a": 1}}, headers=headers)
    second = await tasks.call("insertOne", {"document": {"a": 1}}, headers=headers)
    assert first.status == second.status == 201
    assert first.json == second.json
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len((await tasks.call("find")).json["documents"]) == 1
    other = await tasks.call("insertOne", {"document": {"a": 2}}, headers=headers)
    assert other.status == 422
    assert other.json["error"]


def _json(body: Body) -> str:
    return json.dumps(body)


async def test_writes_by_filter_on_a_resource_keep_its_max_affected(
    settings_factory: SettingsFactory, database: str
) -> None:
    resources = example_resources()
    resources["books"] = {**resources["books"], "max_affected": 2}
    settings = settings_factory(
        mongodb={"database": database},
        resources=resources,
        data_api=data_api_config(database, books={"roles": ["editor"]}),
    )
    app = create_app(settings)
    async with app.test_app():
        books = await api(app, database, "editor", collection="books")
        documents = [{"title": f"b{n}", "year": 2000} for n in range(3)]
        assert (await books.call("insertMany", {"documents": documents})).status == 201
        for action, body in (
            ("updateMany", {"filter": {"year": 2000}, "update": {"$set": {"year": 1}}}),
            ("deleteMany", {"filter": {"year": 2000}}),
        ):
            refused = await books.call(action, body)
            assert refused.status == 409, action
            assert refused.json["error_code"] == "TooManyMatches"
            assert "max_affected" in refused.json["error"]
        left = await books.call("find", {"filter": {"year": 2000}})
        assert len(left.json["documents"]) == 3  # nothing was changed or deleted
        two = await books.call("deleteMany", {"filter": {"title": {"$in": ["b0", "b1"]}}})
        assert two.json == {"deletedCount": 2}


async def test_a_resources_own_documents_and_soft_delete_hold_on_the_data_api(
    settings_factory: SettingsFactory, database: str
) -> None:
    resources = example_resources()
    novels = {
        "schema": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "kind": {"type": "string"}},
        },
        "datasource": {"source": "shelf", "filter": {"kind": "novel"}},
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET", "DELETE"],
        "allowed_roles": ["editor"],
        "soft_delete": True,
    }
    resources["novels"] = novels
    settings = settings_factory(
        mongodb={"database": database},
        resources=resources,
        data_api=data_api_config(database, shelf={"roles": ["editor"]}),
    )
    app = create_app(settings)
    async with app.test_app():
        editor = await editor_client(app)
        assert (await editor.post("/novels", json={"title": "Dune"})).status_code == 201
        await get_storage(app).insert_many("shelf", [{"title": "An atlas", "kind": "atlas"}])
        shelf = await api(app, database, "editor", collection="shelf")
        found = await shelf.call("find")
        assert [document["title"] for document in found.json["documents"]] == ["Dune"]
        deleted = await shelf.call("deleteOne", {"filter": {"title": "Dune"}})
        assert deleted.json == {"deletedCount": 1}
        # Soft delete: marked, not removed; gone from the resource and the Data API.
        assert (await shelf.call("find")).json["documents"] == []
        assert (await editor.get("/novels")).status_code == 200
        assert (await (await editor.get("/novels")).get_json())["_items"] == []
        stored = await get_storage(app).find_one("shelf", {"title": "Dune"})
        assert stored is not None
        assert stored["_deleted"] is True
