"""Rules (issue 23) on the Data API: a resource's collection is served with the
resource's rules, for every action (the roles and documents of
``test_rules.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from shoal.app import create_app
from shoal.config import ConfigError
from tests.api.test_rules import COSTS, INTERNAL, ORDERS, Callers, _seed
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, token_for
from tests.utils.data_api import DataApiClient, api_key, data_api_config

ROLES = {"roles": ["admin", "clerk", "editor", "visitor"]}
#: A collection no resource serves, with rules of its own in its data_api entry.
NOTES = {
    **ROLES,
    "rules": {
        "roles": [
            {
                "name": "admin",
                "apply_when": {"%%user.roles": "admin"},
                "write": True,
                "insert": True,
                "delete": True,
            },
            {
                "name": "clerk",
                "apply_when": {"%%user.roles": "clerk"},
                "document_filters": {
                    "read": {"region": "%%user.data.region"},
                    "write": {"region": "%%user.data.region"},
                },
                "fields": {"cost": {}, "stamp": {"read": True}},
                "additional_fields": {"write": True},
                "insert": True,
            },
        ]
    },
}


@pytest.fixture
def database() -> str:
    import uuid

    return f"rules_api_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def app(settings_factory: SettingsFactory, database: str) -> AsyncIterator[Quart]:
    settings = settings_factory(
        resources={"orders": ORDERS},
        mongodb={"database": database},
        data_api=data_api_config(database, orders=ROLES, notes=NOTES),
    )
    application = create_app(settings)
    async with application.test_app():
        yield application


def _client(app: Quart, database: str, caller: Any) -> DataApiClient:
    headers = dict(getattr(caller, "_headers", {}))
    return DataApiClient(app.test_client(), database, "orders", headers=headers)


@pytest.fixture
async def clients(app: Quart, database: str) -> dict[str, DataApiClient]:
    callers = await Callers(app).start()
    await _seed(callers.admin)
    made = {
        who: _client(app, database, getattr(callers, who))
        for who in ("admin", "clerk", "south", "nobody", "stray")
    }
    key = await api_key(app, "clerk")
    made["key"] = DataApiClient(app.test_client(), database, "orders", headers={"apiKey": key})
    editor = bearer(await token_for(app, "editor"))
    made["editor"] = DataApiClient(app.test_client(), database, "orders", headers=editor)
    return made


async def test_reads_are_filtered_and_masked(clients: dict[str, DataApiClient]) -> None:
    expected = {
        "admin": {"north_open", "south_open", "north_closed"},
        "clerk": {"north_open", "north_closed"},
        "south": {"south_open"},
        "nobody": {"north_open"},  # anyone's role
        "stray": set(),  # a clerk without a region
        "key": set(),  # an API key has no %%user.data
    }
    for who, visible in expected.items():
        client = clients[who]
        found = await client.call("find", {"filter": {}})
        assert found.status == 200, (who, found.text)
        items = {document["item"] for document in found.json["documents"]}
        assert items == visible, who
        one = await client.call("findOne", {"filter": {"item": "south_open"}})
        assert (one.json["document"] is not None) is ("south_open" in visible), who
        pipeline = [{"$project": {"item": 1, "cost": 1, "internal": 1}}]
        aggregated = await client.call("aggregate", {"pipeline": pipeline})
        assert aggregated.status == 200, (who, aggregated.text)
        assert {d["item"] for d in aggregated.json["documents"]} == visible, who
        for text in (found.text, one.text, aggregated.text):
            if who != "admin":
                assert not any(str(cost) in text for cost in COSTS.values()), (who, text)
            if who in ("nobody", "stray", "key"):
                assert INTERNAL not in text, who
    hidden = await clients["clerk"].call("find", {"filter": {"cost": {"$gt": 0}}})
    assert hidden.status == 400, hidden.text


async def test_writes_keep_to_the_write_filter_and_fields(
    clients: dict[str, DataApiClient],
) -> None:
    clerk = clients["clerk"]
    outside = await clerk.call("insertOne", {"document": {"item": "x", "region": "south"}})
    assert outside.status == 400, outside.text
    assert "south" not in json.dumps(outside.json.get("error", ""))
    costly = await clerk.call(
        "insertOne", {"document": {"item": "x", "region": "north", "cost": 1}}
    )
    assert costly.status == 403, costly.text
    made = await clerk.call(
        "insertOne", {"document": {"item": "new", "region": "north", "status": "open"}}
    )
    assert made.status == 201, made.text
    # Only the documents inside both filters are changed: north and not closed.
    updated = await clerk.call("updateMany", {"filter": {}, "update": {"$set": {"status": "seen"}}})
    assert updated.status == 200, updated.text
    assert updated.json["matchedCount"] == 2  # north_open and the new one
    refused = await clerk.call("updateOne", {"filter": {}, "update": {"$set": {"cost": 0}}})
    assert refused.status == 400, refused.text  # naming a field it may not read
    replaced = await clerk.call(
        "replaceOne",
        {
            "filter": {"item": "north_open"},
            "replacement": {"item": "north_open", "region": "north"},
        },
    )
    assert replaced.status == 200, replaced.text
    admin = clients["admin"]
    stored = await admin.call("findOne", {"filter": {"item": "north_open"}})
    assert stored.json["document"]["cost"] == COSTS["north_open"]
    for action in ("deleteOne", "deleteMany"):
        deleted = await clerk.call(action, {"filter": {}})
        assert deleted.status == 403, (action, deleted.text)
    # An upsert inserts: the role needs insert (anyone's has not) and the write filter.
    upsert: dict[str, Any] = {
        "filter": {"item": "z"},
        "update": {"$set": {"status": "x"}},
        "upsert": True,
    }
    assert (await clients["nobody"].call("updateOne", upsert)).status == 403
    upserted = await clients["editor"].call("updateOne", upsert)
    assert upserted.status == 403, upserted.text
    changed = await clients["editor"].call(
        "updateOne", {**upsert, "filter": {"item": "south_open"}}
    )
    assert changed.status == 200, changed.text
    into_south = {**upsert, "update": {"$set": {"region": "south"}}}
    assert (await clerk.call("updateOne", into_south)).status == 400
    nobody = await clients["nobody"].call("insertOne", {"document": {"item": "y"}})
    assert nobody.status == 403, nobody.text
    everything = await admin.call("deleteMany", {"filter": {}})
    assert everything.json["deletedCount"] == 4


async def test_a_projection_cannot_copy_a_hidden_field(clients: dict[str, DataApiClient]) -> None:
    for action in ("find", "findOne"):
        for projection in ({"x": "$cost"}, {"x": {"$add": ["$cost", 0]}}, {"cost": {"$slice": 1}}):
            found = await clients["clerk"].call(action, {"filter": {}, "projection": projection})
            assert found.status == 400, (action, projection, found.text)
            assert not any(str(cost) in found.text for cost in COSTS.values())
    plain = await clients["clerk"].call("find", {"filter": {}, "projection": {"item": 1}})
    assert plain.status == 200, plain.text


async def test_a_filter_cannot_reach_a_hidden_field_by_expression(
    clients: dict[str, DataApiClient],
) -> None:
    for filter in (
        {"$expr": {"$gt": ["$cost", 0]}},
        {"$jsonSchema": {"properties": {"cost": {"minimum": 5}}}},
        {"$and": [{"item": "north_open"}, {"$expr": {"$eq": ["$cost", 1]}}]},
    ):
        for action in ("find", "findOne", "updateMany"):
            fields: dict[str, Any] = {"filter": filter}
            if action == "updateMany":
                fields["update"] = {"$set": {"status": "x"}}
            answer = await clients["clerk"].call(action, fields)
            assert answer.status == 400, (action, filter, answer.text)


async def test_a_data_api_collection_takes_rules_of_its_own(
    clients: dict[str, DataApiClient],
) -> None:
    admin, clerk = clients["admin"], clients["clerk"]
    seeded = await admin.call(
        "insertMany",
        {
            "collection": "notes",
            "documents": [
                {"text": "n", "region": "north", "cost": COSTS["north_open"]},
                {"text": "s", "region": "south", "cost": COSTS["south_open"]},
            ],
        },
    )
    assert seeded.status == 201, seeded.text
    notes = {"collection": "notes"}
    found = await clerk.call("find", {**notes, "filter": {}})
    assert found.status == 200, found.text
    assert [document["text"] for document in found.json["documents"]] == ["n"]
    assert "cost" not in found.text
    assert all(str(cost) not in found.text for cost in COSTS.values())
    pipeline = [{"$project": {"text": 1, "cost": 1}}]
    aggregated = await clerk.call("aggregate", {**notes, "pipeline": pipeline})
    assert [document["text"] for document in aggregated.json["documents"]] == ["n"]
    assert "cost" not in aggregated.text
    assert (await clerk.call("find", {**notes, "filter": {"cost": 1}})).status == 400
    # Writes: the write filter, the writable fields, no deletes, no upserts.
    south = {**notes, "document": {"text": "x", "region": "south"}}
    assert (await clerk.call("insertOne", south)).status == 400
    costly = {**notes, "document": {"text": "x", "region": "north", "cost": 1}}
    assert (await clerk.call("insertOne", costly)).status == 403
    moved = {**notes, "document": {"text": "x", "region": "north"}}
    assert (await clerk.call("insertOne", moved)).status == 201
    stamp = {**notes, "filter": {}, "update": {"$set": {"stamp": "x"}}}
    refused = await clerk.call("updateMany", stamp)
    assert refused.status == 403, refused.text
    assert "stamp" in refused.json["error"]
    texts = {**notes, "filter": {}, "update": {"$set": {"text": "seen"}}}
    updated = await clerk.call("updateMany", texts)
    assert updated.json["matchedCount"] == 2, updated.text
    upsert = {**texts, "filter": {"text": "new"}, "upsert": True}
    assert (await clerk.call("updateOne", upsert)).status == 400
    replacement = {**notes, "filter": {}, "replacement": {"text": "r", "region": "north"}}
    assert (await clerk.call("replaceOne", replacement)).status == 403
    assert (await clerk.call("deleteMany", {**notes, "filter": {}})).status == 403
    everything = await admin.call("find", {**notes, "filter": {}})
    assert sorted(d["text"] for d in everything.json["documents"]) == ["s", "seen", "seen"]
    assert {d.get("cost") for d in everything.json["documents"]} >= {COSTS["north_open"]}


def test_a_collection_of_a_resource_takes_the_resources_rules(
    settings_factory: SettingsFactory, database: str
) -> None:
    with pytest.raises(ConfigError, match=r"put the rules on resources\.orders"):
        settings_factory(
            resources={"orders": ORDERS},
            mongodb={"database": database},
            data_api=data_api_config(database, orders=NOTES),
        )
