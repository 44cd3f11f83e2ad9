"""Aggregation endpoints (``datasource.aggregation``): the list envelope,
pages from a ``$facet``, declared variables only, owner filtering before the
configured stages, joins only into what the caller may read, and a time limit."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import ConfigError, Settings, load_settings
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.http import create

BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "author": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "shelf": {"type": "string"},
    },
}
SHELF = {"_id": 0, "shelf": 1}
PUBLIC = {"public_methods": ["GET"]}
COUNTS = {
    "pipeline": [
        {"$match": {"shelf": "$shelf"}},
        {"$group": {"_id": "$author", "count": {"$sum": "$weight"}}},
        {"$sort": {"count": -1, "_id": 1}},
    ],
    "variables": {"$shelf": {"type": "string"}, "$weight": {"type": "integer", "default": 1}},
}
#: Eve's own example: tags counted across books.
TAG_COUNTS = {
    "pipeline": [
        {"$unwind": "$tags"},
        {"$group": {"_id": "$tags", "count": {"$sum": 1}}},
        {"$sort": {"count": -1, "_id": 1}},
    ]
}
RESOURCES: dict[str, Any] = {
    "books": {
        "schema": BOOK,
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET"],
        "public_methods": ["GET", "POST"],
        "public_item_methods": ["GET"],
    },
    "counts": {
        "schema": {"type": "object"},
        "datasource": {"source": "books", "aggregation": COUNTS},
        **PUBLIC,
    },
    "tag_counts": {
        "schema": {"type": "object"},
        "datasource": {"source": "books", "aggregation": TAG_COUNTS},
        **PUBLIC,
    },
    "notes": {
        "schema": {"type": "object", "properties": {"shelf": {"type": "string"}}},
        "auth_field": "owner",
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET"],
    },
    "my_notes": {
        "schema": {"type": "object"},
        "auth_field": "owner",
        "datasource": {
            "source": "notes",
            "aggregation": {"pipeline": [{"$group": {"_id": "$shelf", "notes": {"$sum": 1}}}]},
        },
    },
    "shelves": {
        "schema": {"type": "object"},
        "datasource": {
            "source": "books",
            "aggregation": {
                "pipeline": [
                    {"$project": SHELF},
                    {"$unionWith": {"coll": "notes", "pipeline": [{"$project": SHELF}]}},
                    {"$sort": {"shelf": 1}},
                ]
            },
        },
        "allowed_read_roles": ["reader"],
    },
    "shelf_notes": {
        "schema": {"type": "object"},
        "datasource": {
            "source": "books",
            "aggregation": {
                "pipeline": [
                    {
                        "$lookup": {
                            "from": "notes",
                            "localField": "shelf",
                            "foreignField": "shelf",
                            "as": "notes",
                        }
                    },
                    {"$project": {"_id": 0, "title": 1, "notes": {"$size": "$notes"}}},
                    {"$sort": {"title": 1}},
                ]
            },
        },
        **PUBLIC,
    },
}


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory(resources=RESOURCES)


@pytest.fixture
def anonymous(app: Quart) -> Client:
    return app.test_client()


async def _shelf(client: Client) -> None:
    books = [
        {"title": "a", "author": "ann", "tags": ["x", "y"], "shelf": "s1"},
        {"title": "b", "author": "ann", "tags": ["x"], "shelf": "s2"},
        {"title": "c", "author": "bob", "tags": ["z", "x"], "shelf": "s1"},
        {"title": "d", "author": "cid", "tags": [], "shelf": "s2"},
    ]
    assert (await client.post("/books", json=books)).status_code == 201


def _aggregate(values: Any) -> str:
    return quote(json.dumps(values))


@pytest.mark.engine_gap(ferretdb="facet")
async def test_results_come_in_the_list_envelope(anonymous: Client) -> None:
    await _shelf(anonymous)
    every_shelf = _aggregate({"$shelf": {}})
    response = await anonymous.get(f"/counts?aggregate={every_shelf}")
    body = await response.get_json()
    assert response.status_code == 200
    # The shelf sent as {}: the condition that held it is dropped.
    assert body["_items"] == [
        {"_id": "ann", "count": 2},
        {"_id": "bob", "count": 1},
        {"_id": "cid", "count": 1},
    ]
    assert body["_meta"] == {"page": 1, "max_results": 25, "total": 3}
    assert body["_links"]["self"] == {
        "title": "counts",
        "href": "counts?" + urlencode({"aggregate": json.dumps({"$shelf": {}})}),
    }
    assert response.headers["X-Total-Count"] == "3"
    again = await anonymous.get(
        f"/counts?aggregate={every_shelf}", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304
    # No shelf sent and no default: "$shelf" stays as written and matches no
    # shelf, as in Eve.
    assert (await (await anonymous.get("/counts")).get_json())["_items"] == []


@pytest.mark.engine_gap(ferretdb="facet")
@pytest.mark.real_mongodb(reason="the stand-in's $facet breaks after $unwind")
async def test_eves_tag_count_example(anonymous: Client) -> None:
    await _shelf(anonymous)
    body = await (await anonymous.get("/tag_counts?max_results=2")).get_json()
    assert body["_items"] == [{"_id": "x", "count": 3}, {"_id": "y", "count": 1}]
    assert body["_meta"] == {"page": 1, "max_results": 2, "total": 3}


@pytest.mark.engine_gap(ferretdb="facet")
async def test_pages_and_links(anonymous: Client) -> None:
    await _shelf(anonymous)
    every = "aggregate=" + _aggregate({"$shelf": {}})
    body = await (await anonymous.get(f"/counts?{every}&max_results=1&page=2")).get_json()
    assert body["_items"] == [{"_id": "bob", "count": 1}]
    assert body["_meta"] == {"page": 2, "max_results": 1, "total": 3}
    assert {"next", "prev", "last"} <= body["_links"].keys()
    body = await (await anonymous.get(f"/counts?{every}&max_results=2&count=false")).get_json()
    assert len(body["_items"]) == 2
    assert "total" not in body["_meta"]
    assert "next" in body["_links"]
    body = await (await anonymous.get(f"/counts?{every}&page=9")).get_json()
    assert body["_items"] == []


@pytest.mark.engine_gap(ferretdb="facet")
async def test_declared_variables_fill_the_pipeline(anonymous: Client) -> None:
    await _shelf(anonymous)
    query = _aggregate({"$shelf": "s1", "$weight": 2})
    body = await (await anonymous.get(f"/counts?aggregate={query}")).get_json()
    assert body["_items"] == [{"_id": "ann", "count": 2}, {"_id": "bob", "count": 2}]
    # {} drops the condition that holds the variable, as in Eve.
    query = _aggregate({"$shelf": {}})
    body = await (await anonymous.get(f"/counts?aggregate={query}")).get_json()
    assert body["_meta"]["total"] == 3


@pytest.mark.parametrize(
    ("aggregate", "message"),
    [
        ({"$shelf": {"$ne": None}}, "cannot hold operators"),  # Eve runs it: every shelf
        ({"$bogus": 1}, "unknown variable $bogus"),
        ({"ann": "bob"}, "unknown variable ann"),  # Eve rewrites the server's literal
        ({"$weight": "heavy"}, "$weight"),
        (["$shelf"], "must be a JSON object"),  # Eve: 500
    ],
)
async def test_what_a_client_may_not_send(anonymous: Client, aggregate: Any, message: str) -> None:
    response = await anonymous.get(f"/counts?aggregate={_aggregate(aggregate)}")
    assert response.status_code == 400
    assert message in (await response.get_json())["_error"]["message"]


async def test_list_parameters_that_do_not_apply_are_refused(anonymous: Client) -> None:
    for query in ("where={}", "sort=count", "projection={}", "embedded={}"):
        response = await anonymous.get(f"/counts?{query}")
        assert response.status_code == 400, query
    assert (await anonymous.get("/counts?aggregate=notjson")).status_code == 400


async def test_only_get_on_the_list(anonymous: Client) -> None:
    assert (await anonymous.post("/counts", json={})).status_code == 405
    assert (await anonymous.get(f"/counts/{ObjectId()}")).status_code == 404


@pytest.mark.engine_gap(ferretdb="facet")
async def test_the_owner_filter_comes_before_the_configured_stages(app: Quart) -> None:
    ann = client_with(app, bearer(await token_for(app, user_id=str(ObjectId()))))
    bob = client_with(app, bearer(await token_for(app, user_id=str(ObjectId()))))
    for client, count in ((ann, 2), (bob, 3)):
        for _ in range(count):
            await create(client, "notes", {"shelf": "s"})
    for client, count in ((ann, 2), (bob, 3)):
        body = await (await client.get("/my_notes")).get_json()
        assert body["_items"] == [{"_id": "s", "notes": count}]


@pytest.mark.engine_gap(ferretdb=("union_with", "facet"))
async def test_joins_need_read_access_to_the_joined_resource(app: Quart, anonymous: Client) -> None:
    await _shelf(anonymous)
    owner = client_with(app, bearer(await token_for(app, user_id=str(ObjectId()))))
    await create(owner, "notes", {"shelf": "s0"})
    # shelves joins notes: an anonymous caller may not read notes.
    reader = client_with(app, bearer(await token_for(app, "reader")))
    response = await anonymous.get("/shelves")
    assert response.status_code == 401
    # A reader reads notes as an owner: only their own (none) are joined.
    body = await (await reader.get("/shelves")).get_json()
    assert [item["shelf"] for item in body["_items"]] == ["s1", "s1", "s2", "s2"]


@pytest.mark.engine_gap(ferretdb=("lookup", "facet"))
@pytest.mark.real_mongodb(reason="the stand-in's $lookup takes no pipeline beside localField")
async def test_a_lookup_joins_only_what_the_caller_may_read(app: Quart) -> None:
    books = app.test_client()
    await _shelf(books)
    ann = client_with(app, bearer(await token_for(app, user_id=str(ObjectId()))))
    bob = client_with(app, bearer(await token_for(app, user_id=str(ObjectId()))))
    await create(ann, "notes", {"shelf": "s1"})
    await create(bob, "notes", {"shelf": "s1"})
    body = await (await ann.get("/shelf_notes")).get_json()
    assert [(item["title"], item["notes"]) for item in body["_items"]] == [
        ("a", 1),
        ("b", 0),
        ("c", 1),
    ]


@pytest.mark.engine_gap(ferretdb="facet")
@pytest.mark.real_mongodb(reason="the stand-in ignores maxTimeMS")
async def test_a_pipeline_past_its_time_limit_is_a_503(
    settings_factory: SettingsFactory, mongodb_uri: str
) -> None:
    slow = {
        "schema": {"type": "object"},
        "datasource": {
            "source": "numbers",
            "aggregation": {
                "pipeline": [
                    {"$group": {"_id": {"$mod": ["$n", 5000]}, "n": {"$sum": 1}}},
                    {"$sort": {"_id": 1}},
                ],
                "options": {"maxTimeMS": 1},
            },
        },
        **PUBLIC,
    }
    settings = settings_factory(resources={"slow": slow})
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    await client[settings.mongodb.database]["numbers"].insert_many(
        [{"n": index} for index in range(50_000)]
    )
    await client.close()
    app = create_app(settings)
    async with app.test_app():
        response = await app.test_client().get("/slow")
    assert response.status_code == 503
    assert "maxTimeMS" in (await response.get_json())["_error"]["message"]


def _problem(aggregation: dict[str, Any]) -> str:
    resources = {
        "books": {"schema": BOOK},
        "agg": {
            "schema": {"type": "object"},
            "datasource": {"source": "books", "aggregation": aggregation},
        },
    }
    with pytest.raises(ConfigError) as raised:
        load_settings({"environment": "development", "resources": resources}, env={})
    (problem,) = raised.value.problems
    return problem


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ([{"$out": "copy"}], "$out writes to a collection"),
        ([{"$merge": {"into": "copy"}}], "$merge writes to a collection"),
        ([{"$match": {"$where": "1"}}], "$where runs JavaScript"),
        ([{"$addFields": {"x": {"$function": {}}}}], "$function runs JavaScript"),
        (
            [{"$lookup": {"from": "secrets", "as": "s", "pipeline": []}}],
            "'secrets' is no resource's collection",
        ),
        ([{"$match": {}, "$sort": {}}], "one $stage key"),
    ],
)
def test_the_config_refuses_unsafe_pipelines(pipeline: list[Any], message: str) -> None:
    assert message in _problem({"pipeline": pipeline})


def test_declared_variables_must_be_used() -> None:
    problem = _problem({"pipeline": [{"$match": {"a": "$a"}}], "variables": {"$b": {}}})
    assert "the pipeline does not use $b" in problem
