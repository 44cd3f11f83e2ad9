"""Rules (issue 23) on the paths a resource's options add: operator updates,
versions, change streams, the response cache, references and embedding, and a
resource no role of whose rules applies to most callers (the roles and
documents of ``test_rules.py``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from quart import Quart

from shoal.app import create_app
from tests.api.test_rules import COSTS, INTERNAL, ORDERS, Callers, _get, _seed
from tests.conftest import SettingsFactory
from tests.utils.cache import worker_tier_ready
from tests.utils.http import if_match
from tests.utils.streams import listening


@pytest.fixture
def database() -> str:
    return f"rules_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def _app(
    settings_factory: SettingsFactory, database: str, **resources: dict[str, Any]
) -> AsyncIterator[Quart]:
    settings = settings_factory(resources=resources, mongodb={"database": database})
    application = create_app(settings)
    async with application.test_app():
        yield application


async def test_operator_updates(settings_factory: SettingsFactory, database: str) -> None:
    settings = settings_factory(
        resources={"orders": {**ORDERS, "atomic_updates": True}}, mongodb={"database": database}
    )
    application = create_app(settings)
    operators = {"Content-Type": "application/vnd.shoal.update+json"}
    async with application.test_app():
        callers = await Callers(application).start()
        made = await _seed(callers.admin)
        clerk = callers.clerk
        north = f"/orders/{made['north_open']['_id']}"
        _, view, _ = await _get(clerk, north)
        stale = if_match(made["north_open"]["_etag"])
        response = await clerk.patch(
            north, data=json.dumps({"$set": {"status": "x"}}), headers=stale | operators
        )
        assert response.status_code == 412
        fresh = if_match(view["_etag"]) | operators
        response = await clerk.patch(
            north, data=json.dumps({"$set": {"status": "packed"}}), headers=fresh
        )
        body = await response.get_json()
        assert response.status_code == 200, body
        assert str(COSTS["north_open"]) not in json.dumps(body)
        response = await clerk.patch(
            north, data=json.dumps({"$set": {"published": False}}), headers=operators
        )
        assert response.status_code == 403
        assert "published" in (await response.get_json())["_error"]["message"]
        response = await clerk.patch(
            north, data=json.dumps({"$inc": {"cost": 1}}), headers=operators
        )
        assert response.status_code == 400  # it may not read cost: its values stay untested
        for key in ("north_closed", "south_open"):
            path = f"/orders/{made[key]['_id']}"
            response = await clerk.patch(
                path, data=json.dumps({"$set": {"published": True}}), headers=operators
            )
            assert response.status_code == 404, key
        _, stored, _ = await _get(callers.admin, north)
        assert stored["status"] == "packed"
        assert stored["cost"] == COSTS["north_open"]


async def test_versions_show_what_the_role_may_read(
    settings_factory: SettingsFactory, database: str
) -> None:
    settings = settings_factory(
        resources={"orders": {**ORDERS, "versioning": True}}, mongodb={"database": database}
    )
    application = create_app(settings)
    async with application.test_app():
        callers = await Callers(application).start()
        admin, clerk = callers.admin, callers.clerk
        made = await admin.post(
            "/orders",
            json={
                "item": "moved",
                "region": "south",
                "status": "new",
                "cost": COSTS["south_open"],
            },
        )
        first = await made.get_json()
        path = f"/orders/{first['_id']}"
        # Version 2 moves it north, into the clerk's read filter.
        moved = await admin.patch(
            path,
            json={"region": "north", "cost": COSTS["north_open"], "internal": "moved north"},
            headers=if_match(first["_etag"]),
        )
        assert moved.status_code == 200, await moved.get_json()
        _, view, _ = await _get(clerk, path)
        assert view["_version"] == 2
        assert (await clerk.get(path + "?version=1")).status_code == 404
        status, second, _ = await _get(clerk, path + "?version=2")
        assert status == 200
        assert second["region"] == "north"
        assert "cost" not in second
        for listing in ("all", "diffs"):
            status, body, headers = await _get(clerk, f"{path}?version={listing}")
            assert status == 200, body
            text = json.dumps(body) + json.dumps(dict(headers))
            assert "south" not in text, (listing, text)
            assert not any(str(cost) in text for cost in COSTS.values()), listing
        # The clerk's write makes version 3, inside her filters.
        changed = await clerk.patch(path, json={"status": "open"}, headers=if_match(view["_etag"]))
        assert changed.status_code == 200, await changed.get_json()
        _, stored, _ = await _get(admin, path + "?version=3")
        assert stored["cost"] == COSTS["north_open"]
        assert (await callers.anonymous.get(path + "?version=2")).status_code == 404


async def test_no_role_matching_allows_nothing(
    settings_factory: SettingsFactory, database: str
) -> None:
    only_admins = {
        "roles": [{"name": "admin", "apply_when": {"%%user.roles": "admin"}, "write": True}]
    }
    ledger = {
        **ORDERS,
        "rules": {**only_admins, "roles": [{**only_admins["roles"][0], "insert": True}]},
    }
    settings = settings_factory(resources={"ledger": ledger}, mongodb={"database": database})
    application = create_app(settings)
    async with application.test_app():
        callers = await Callers(application).start()
        made = await callers.admin.post("/ledger", json={"item": "a", "cost": 1})
        assert made.status_code == 201
        item = f"/ledger/{(await made.get_json())['_id']}"
        for client in (callers.anonymous, callers.nobody):
            status, body, _headers = await _get(client, "/ledger")
            assert status == 200
            assert body["_items"] == []
            assert body["_meta"]["total"] == 0
            assert (await client.get(item)).status_code == 404
            assert (await client.head(item)).status_code == 404
        nobody = callers.nobody
        assert (await nobody.post("/ledger", json={"item": "b"})).status_code == 403
        assert (await nobody.patch(item, json={"item": "b"})).status_code == 403
        assert (await nobody.delete(item)).status_code == 403
        assert (await nobody.patch("/ledger?where={}", json={"item": "b"})).status_code == 403


@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_stream_events_are_filtered_and_masked_per_subscriber(
    settings_factory: SettingsFactory, database: str
) -> None:
    settings = settings_factory(
        resources={"orders": {**ORDERS, "streams": True}}, mongodb={"database": database}
    )
    application = create_app(settings)
    async with application.test_app():
        callers = await Callers(application).start()
        admin = callers.admin
        async with (
            listening(callers.clerk, "/orders/_stream") as clerk,
            listening(callers.anonymous, "/orders/_stream") as anonymous,
            listening(callers.stray, "/orders/_stream") as stray,
        ):
            made = await _seed(admin)
            north = made["north_open"]
            changed = await admin.patch(
                f"/orders/{north['_id']}",
                json={"status": "packed"},
                headers=if_match(north["_etag"]),
            )
            assert changed.status_code == 200
            clerk_events = await clerk.wait_for(3)
            anonymous_events = await anonymous.wait_for(2)
            # The last write: every stream has had the time to pass it on.
            await admin.post("/orders", json={"item": "last", "region": "north", "published": True})
            await clerk.wait_for(4)
            await anonymous.wait_for(3)
        assert [e.data["document"]["item"] for e in clerk_events] == [
            "north_open",
            "north_closed",
            "north_open",
        ]
        assert [e.data["document"]["item"] for e in anonymous_events] == ["north_open"] * 2
        assert stray.events == []
        for event in [*clerk.events, *anonymous.events]:
            text = json.dumps(event.data)
            assert not any(str(cost) in text for cost in COSTS.values()), text
        for event in anonymous.events:
            assert INTERNAL not in json.dumps(event.data)


# -- the cache ----------------------------------------------------------------


@pytest.mark.parametrize("tier", ["redis", "worker"])
async def test_the_cache_never_answers_across_roles(
    settings_factory: SettingsFactory, database: str, tier: str
) -> None:
    settings = settings_factory(
        resources={"orders": {**ORDERS, "cache_ttl": 60, "cache_tier": tier}},
        mongodb={"database": database},
    )
    application = create_app(settings)
    async with application.test_app():
        local_hits = await worker_tier_ready(application, "orders")
        callers = await Callers(application).start()
        await _seed(callers.admin)
        before = local_hits()
        seen: dict[str, set[str]] = {}
        for _ in range(2):  # the second round is answered from the cache
            for who in ("admin", "clerk", "south", "anonymous", "nobody"):
                _, body, _ = await _get(getattr(callers, who), "/orders")
                items = {item["item"] for item in body["_items"]}
                assert seen.setdefault(who, items) == items, who
        assert seen["clerk"] == {"north_open", "north_closed"}
        assert seen["south"] == {"south_open"}
        assert seen["anonymous"] == {"north_open"}
        assert seen["nobody"] == {"north_open"}
        # With the worker tier, the second round came from the worker's memory.
        assert (local_hits() - before > 0) == (tier == "worker")


NOTES: dict[str, Any] = {
    "schema": {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "region": {"type": "string"},
            "order": {
                "type": "string",
                "format": "objectid",
                "data_relation": {"resource": "orders", "embeddable": True},
            },
        },
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH"],
    "public_methods": ["GET"],
    "public_item_methods": ["GET"],
}


async def test_references_and_embedding_keep_to_the_targets_rules(
    settings_factory: SettingsFactory, database: str
) -> None:
    async with _app(settings_factory, database, orders=ORDERS, notes=NOTES) as app:
        callers = await Callers(app).start()
        made = await _seed(callers.admin)
        ids = {key: document["_id"] for key, document in made.items()}
        clerk = callers.clerk
        # A reference to an order she may not read is one to no order.
        hidden = await clerk.post("/notes", json={"text": "x", "order": ids["south_open"]})
        nowhere = await clerk.post(
            "/notes", json={"text": "x", "order": "6b0000000000000000000000"}
        )
        assert (hidden.status_code, nowhere.status_code) == (422, 422)
        hidden_issue = (await hidden.get_json())["_issues"]["order"]
        nowhere_issue = (await nowhere.get_json())["_issues"]["order"]
        assert hidden_issue.replace(ids["south_open"], "?") == nowhere_issue.replace(
            "6b0000000000000000000000", "?"
        )
        mine = await clerk.post("/notes", json={"text": "n", "order": ids["north_open"]})
        assert mine.status_code == 201, await mine.get_json()
        note = f"/notes/{(await mine.get_json())['_id']}"
        written = await mine.get_json()
        moved = await clerk.patch(
            note, json={"order": ids["south_open"]}, headers=if_match(written["_etag"])
        )
        assert moved.status_code == 422, await moved.get_json()
        theirs = await callers.admin.post("/notes", json={"text": "s", "order": ids["south_open"]})
        assert theirs.status_code == 201
        other = f"/notes/{(await theirs.get_json())['_id']}"
        embedded = '?embedded={"order": 1}'
        _, shown, _ = await _get(clerk, note + embedded)
        assert shown["order"]["item"] == "north_open"
        assert "cost" not in shown["order"]
        _, shown, _ = await _get(clerk, other + embedded)
        assert shown["order"] is None
        _, listed, _ = await _get(callers.anonymous, "/notes" + embedded)
        orders = [item["order"] for item in listed["_items"]]
        assert [order and order["item"] for order in orders] == ["north_open", None]
        text = json.dumps(listed)
        assert INTERNAL not in text
        assert not any(str(cost) in text for cost in COSTS.values())


SUMMARY: dict[str, Any] = {
    "schema": {"type": "object"},
    "datasource": {
        "source": "orders",
        "aggregation": {"pipeline": [{"$project": {"item": 1, "cost": 1, "internal": 1}}]},
    },
    "public_methods": ["GET"],
}
#: Notes, each with the orders of its region joined in.
JOINED: dict[str, Any] = {
    "schema": {"type": "object"},
    "datasource": {
        "source": "notes",
        "aggregation": {
            "pipeline": [
                {
                    "$lookup": {
                        "from": "orders",
                        "localField": "region",
                        "foreignField": "region",
                        "as": "orders",
                    }
                },
                {"$project": {"text": 1, "orders.item": 1, "orders.cost": 1}},
            ]
        },
    },
    "public_methods": ["GET"],
}


async def test_aggregations_start_from_what_the_role_may_read(
    settings_factory: SettingsFactory, database: str
) -> None:
    resources = {"orders": ORDERS, "notes": NOTES, "summary": SUMMARY, "joined": JOINED}
    async with _app(settings_factory, database, **resources) as app:
        callers = await Callers(app).start()
        await _seed(callers.admin)
        for region in ("north", "south"):
            note = await callers.admin.post("/notes", json={"text": region, "region": region})
            assert note.status_code == 201, await note.get_json()
        expected = {
            "admin": {"north_open", "south_open", "north_closed"},
            "clerk": {"north_open", "north_closed"},
            "anonymous": {"north_open"},
        }
        for who, visible in expected.items():
            status, body, _ = await _get(getattr(callers, who), "/summary")
            assert status == 200, (who, body)
            assert {item["item"] for item in body["_items"]} == visible, who
            assert body["_meta"]["total"] == len(visible), who
            text = json.dumps(body)
            if who != "admin":
                assert not any(str(cost) in text for cost in COSTS.values()), who
            if who == "anonymous":
                assert INTERNAL not in text


@pytest.mark.engine_gap(ferretdb="lookup")
@pytest.mark.real_mongodb(reason="the stand-in's $lookup takes no pipeline beside localField")
async def test_a_join_into_a_ruled_collection_keeps_to_the_role(
    settings_factory: SettingsFactory, database: str
) -> None:
    resources = {"orders": ORDERS, "notes": NOTES, "joined": JOINED}
    async with _app(settings_factory, database, **resources) as app:
        callers = await Callers(app).start()
        await _seed(callers.admin)
        for region in ("north", "south"):
            note = await callers.admin.post("/notes", json={"text": region, "region": region})
            assert note.status_code == 201, await note.get_json()
        status, body, _ = await _get(callers.clerk, "/joined")
        assert status == 200, body
        joined = {
            item["text"]: sorted(o["item"] for o in item["orders"]) for item in body["_items"]
        }
        assert joined == {"north": ["north_closed", "north_open"], "south": []}
        assert not any(str(cost) in json.dumps(body) for cost in COSTS.values())
        status, body, _ = await _get(callers.admin, "/joined")
        counts = {item["text"]: len(item["orders"]) for item in body["_items"]}
        assert counts == {"north": 2, "south": 1}


@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_a_document_leaving_the_read_filter_is_a_delete_event(
    settings_factory: SettingsFactory, database: str
) -> None:
    orders = {**ORDERS, "streams": True}
    async with _app(settings_factory, database, orders=orders) as app:
        callers = await Callers(app).start()
        admin = callers.admin
        async with (
            listening(callers.clerk, "/orders/_stream") as clerk,
            listening(callers.south, "/orders/_stream") as south,
        ):
            made = await admin.post("/orders", json={"item": "a", "region": "north"})
            first = await made.get_json()
            path = f"/orders/{first['_id']}"
            moved = await admin.patch(
                path, json={"region": "south"}, headers=if_match(first["_etag"])
            )
            back = await admin.patch(
                path, json={"region": "north"}, headers=if_match((await moved.get_json())["_etag"])
            )
            gone = await admin.delete(path, headers=if_match((await back.get_json())["_etag"]))
            assert gone.status_code == 204
            clerk_events = await clerk.wait_for(4)
            south_events = await south.wait_for(2)
        assert [e.name for e in clerk_events] == ["insert", "delete", "update", "delete"]
        assert "document" not in clerk_events[1].data
        assert clerk_events[1].data["_id"] == first["_id"]
        # South saw it only while it was south's: an update, then its departure.
        assert [e.name for e in south_events] == ["update", "delete"]
        assert south_events[0].data["document"]["region"] == "south"
