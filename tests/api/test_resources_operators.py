"""Update operators in PATCH, over HTTP: one atomic write without If-Match,
the schema still enforced, ETag, ``_updated`` and the cache kept right."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client
from tests.utils.instances import two_served
from tests.utils.settings import example_resources

OPERATORS = {"Content-Type": "application/vnd.shoal.update+json"}


def counted_resources(**extra: Any) -> dict[str, Any]:
    resources = example_resources()
    resources["counters"] = {
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "hits": {"type": "integer", "minimum": 0, "maximum": 1000},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "seen": {"type": "string"},
                "note": {"type": "string"},
                "code": {"type": "string", "readOnly": True},
            },
            "additionalProperties": False,
        },
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET", "PATCH"],
        "public_methods": ["GET"],
        "public_item_methods": ["GET"],
        "allowed_roles": ["editor"],
        "atomic_updates": True,
        "cache_ttl": 60,
        **extra,
    }
    return resources


@pytest.fixture
def counter_settings(settings_factory: SettingsFactory) -> Any:
    return settings_factory(resources=counted_resources())


@pytest.fixture
async def app(counter_settings: Any) -> AsyncIterator[Quart]:
    application = create_app(counter_settings)
    async with application.test_app():
        yield application


async def _counter(client: Client, **fields: Any) -> dict[str, Any]:
    response = await client.post("/counters", json={"name": "c", "hits": 0, **fields})
    assert response.status_code == 201
    created: dict[str, Any] = await response.get_json()
    return created


async def _operate(client: Client, item: str, body: Any, **headers: str) -> Any:
    path = f"/counters/{item}"
    return await client.patch(path, data=json.dumps(body), headers={**OPERATORS, **headers})


async def test_operators_apply_without_if_match_and_renew_the_etag(app: Quart) -> None:
    editor = await editor_client(app)
    created = await _counter(editor, tags=["a"])
    response = await _operate(
        editor,
        created["_id"],
        {"$inc": {"hits": 5}, "$push": {"tags": "b"}, "$set": {"note": "x"}},
    )
    assert response.status_code == 200, await response.get_data()
    ack = await response.get_json()
    assert ack["_status"] == "OK"
    assert ack["_etag"] != created["_etag"]
    assert response.headers["ETag"] == f'"{ack["_etag"]}"'
    stored = await (await editor.get(f"/counters/{created['_id']}")).get_json()
    assert (stored["hits"], stored["tags"], stored["note"]) == (5, ["a", "b"], "x")
    assert stored["_etag"] == ack["_etag"]
    stale = await editor.patch(
        f"/counters/{created['_id']}", json={"hits": 1}, headers={"If-Match": created["_etag"]}
    )
    assert stale.status_code == 412


async def test_every_operator_does_what_mongodb_documents(app: Quart) -> None:
    editor = await editor_client(app)
    created = await _counter(editor, hits=10, tags=["a", "b"], note="gone")
    steps: list[dict[str, Any]] = [
        {"$min": {"hits": 3}},
        {"$max": {"hits": 7}},
        {"$addToSet": {"tags": {"$each": ["b", "c"]}}},
        {"$pull": {"tags": "a"}},
        {"$unset": {"note": ""}},
    ]
    for step in steps:
        response = await _operate(editor, created["_id"], step)
        assert response.status_code == 200, (step, await response.get_data())
    stored = await (await editor.get(f"/counters/{created['_id']}")).get_json()
    assert stored["hits"] == 7
    assert stored["tags"] == ["b", "c"]
    assert "note" not in stored


async def test_updated_is_a_date_after_an_update(app: Quart) -> None:
    editor = await editor_client(app)
    created = await _counter(editor)
    response = await _operate(editor, created["_id"], {"$inc": {"hits": 1}})
    assert response.status_code == 200
    assert "Last-Modified" in response.headers
    stored = await editor.get(f"/counters/{created['_id']}")
    assert stored.headers["Last-Modified"] == response.headers["Last-Modified"]


async def test_an_update_that_breaks_the_schema_is_undone(app: Quart) -> None:
    editor = await editor_client(app)
    created = await _counter(editor, hits=999, tags=["a", "b", "c"])
    too_many = await _operate(editor, created["_id"], {"$inc": {"hits": 2}})
    assert too_many.status_code == 422
    assert "hits" in (await too_many.get_json())["_issues"]
    overfull = await _operate(editor, created["_id"], {"$push": {"tags": "d"}})
    assert overfull.status_code == 422
    stored = await (await editor.get(f"/counters/{created['_id']}")).get_json()
    assert stored["hits"] == 999
    assert stored["tags"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        ({"$rename": {"hits": "x"}}, 400, "unsupported update operator"),
        ({"hits": 1}, 400, "unsupported update operator"),
        ([], 400, "non-empty JSON object"),
        ({"$inc": []}, 400, "non-empty object"),
        ({"$inc": {"hits": "1"}}, 422, "hits"),
        ({"$inc": {"hits": True}}, 422, "hits"),
        ({"$set": {"_etag": "x"}}, 422, "_etag"),
        ({"$set": {"code": "x"}}, 422, "code"),
        ({"$set": {"$bad": 1}}, 422, "$bad"),
        ({"$set": {"note": "a"}, "$unset": {"note": ""}}, 422, "note"),
        ({"$currentDate": {"seen": {"$type": "timestamp"}}}, 422, "seen"),
        ({"$push": {"tags": {"$each": "x"}}}, 422, "tags"),
        ({"$pull": {"tags": {"$where": "1"}}}, 422, "tags"),
        ({"$set": {"note": {"a.b": 1}}}, 422, "note.a.b"),
    ],
)
async def test_bad_operator_bodies_are_refused_before_writing(
    app: Quart, body: Any, status: int, where: str
) -> None:
    editor = await editor_client(app)
    created = await _counter(editor)
    response = await _operate(editor, created["_id"], body)
    assert response.status_code == status, await response.get_data()
    answer = await response.get_json()
    text = str(answer.get("_issues", "")) + answer["_error"]["message"]
    assert where in text
    stored = await (await editor.get(f"/counters/{created['_id']}")).get_json()
    assert stored["_etag"] == created["_etag"]


async def test_if_match_still_makes_an_update_conditional(app: Quart) -> None:
    editor = await editor_client(app)
    created = await _counter(editor)
    condition = {"If-Match": created["_etag"]}
    ok = await _operate(editor, created["_id"], {"$inc": {"hits": 1}}, **condition)
    assert ok.status_code == 200
    stale = await _operate(editor, created["_id"], {"$inc": {"hits": 1}}, **condition)
    assert stale.status_code == 412
    missing = await _operate(editor, "0123456789abcdef01234567", {"$inc": {"hits": 1}})
    assert missing.status_code == 404


async def test_resources_without_atomic_updates_refuse_operators(
    settings_factory: SettingsFactory,
) -> None:
    app = create_app(settings_factory(resources=counted_resources(atomic_updates=False)))
    async with app.test_app():
        editor = await editor_client(app)
        created = await _counter(editor)
        response = await _operate(editor, created["_id"], {"$inc": {"hits": 1}})
        assert response.status_code == 415
        assert "atomic_updates" in (await response.get_json())["_error"]["message"]


async def test_an_update_makes_every_instance_drop_its_cached_answer(
    counter_settings: Any,
) -> None:
    async with two_served(counter_settings) as (first, second):
        editor = await editor_client(first)
        created = await _counter(editor)
        reader = second.test_client()
        path = f"/counters/{created['_id']}"
        assert (await reader.get(path)).status_code == 200
        assert (await reader.get(path)).headers["X-Cache"] == "HIT"
        assert (await _operate(editor, created["_id"], {"$inc": {"hits": 3}})).status_code == 200
        fresh = await reader.get(path)
        assert fresh.headers["X-Cache"] == "MISS"
        assert (await fresh.get_json())["hits"] == 3


@pytest.mark.engine_gap(ferretdb="write_atomicity")
async def test_200_concurrent_increments_through_two_instances_add_exactly_200(
    counter_settings: Any,
) -> None:
    async with two_served(counter_settings) as (first, second):
        editors = [await editor_client(first), await editor_client(second)]
        created = await _counter(editors[0])
        responses = await asyncio.gather(
            *(_operate(editors[n % 2], created["_id"], {"$inc": {"hits": 1}}) for n in range(200))
        )
        assert sorted({response.status_code for response in responses}) == [200]
        stored = await (await editors[1].get(f"/counters/{created['_id']}")).get_json()
        assert stored["hits"] == 200
        etags = {(await response.get_json())["_etag"] for response in responses}
        assert len(etags) == 200  # each write made a version of its own
