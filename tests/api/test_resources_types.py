"""Native BSON types: ``format: date-time`` and ``format: objectid`` are stored
as dates and ObjectIds, filtered as such, rendered as Eve renders them, and
data written natively by others keeps its types through every write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.config import Settings
from tests.conftest import SettingsFactory
from tests.utils.http import create, fetch, if_match

EVENTS: dict[str, Any] = {
    "schema": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string"},
            "when": {"type": "string", "format": "date-time"},
            "venue": {"type": "string", "format": "objectid"},
            "label": {"type": "string"},
            "sessions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"starts": {"type": "string", "format": "date-time"}},
                },
            },
            "speakers": {"type": "array", "items": {"type": "string", "format": "objectid"}},
        },
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH", "PUT"],
    "public_methods": ["GET", "POST"],
    "public_item_methods": ["GET", "PATCH", "PUT"],
}


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory(resources={"events": EVENTS})


@pytest.fixture
async def raw(settings: Settings, mongodb_uri: str) -> AsyncIterator[Any]:
    """The events collection, read and written with PyMongo directly."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    yield client[settings.mongodb.database]["events"]
    await client.close()


@pytest.fixture
def anonymous(app: Quart) -> Client:
    return app.test_client()


async def test_dates_and_object_ids_are_stored_natively(anonymous: Client, raw: Any) -> None:
    venue, speaker = ObjectId(), ObjectId()
    ack = await create(
        anonymous,
        "events",
        {
            "title": "Launch",
            "when": "2026-11-24T10:30:00.250Z",
            "venue": str(venue),
            "sessions": [{"starts": "Tue, 24 Nov 2026 11:00:00 GMT"}],
            "speakers": [str(speaker)],
        },
    )
    stored = await raw.find_one({"_id": ObjectId(ack["_id"])})
    assert stored["when"] == datetime(2026, 11, 24, 10, 30, 0, 250_000, tzinfo=UTC)
    assert stored["venue"] == venue
    assert stored["sessions"][0]["starts"] == datetime(2026, 11, 24, 11, tzinfo=UTC)
    assert stored["speakers"] == [speaker]

    item = await fetch(anonymous, "events", ack["_id"])
    # Rendered as Eve renders them: RFC 1123 dates, 24-hex ObjectIds.
    assert item["when"] == "Tue, 24 Nov 2026 10:30:00 GMT"
    assert item["venue"] == str(venue)
    assert item["sessions"] == [{"starts": "Tue, 24 Nov 2026 11:00:00 GMT"}]
    assert item["speakers"] == [str(speaker)]


async def test_a_bad_date_or_object_id_is_a_422_naming_the_field(anonymous: Client) -> None:
    response = await anonymous.post(
        "/events",
        json={"title": "x", "when": "next tuesday", "venue": "zzz", "speakers": ["a", 1]},
    )
    assert response.status_code == 422
    issues = (await response.get_json())["_issues"]
    assert issues["when"].startswith("must be a date: RFC 3339")
    assert issues["venue"] == "must be a 24-hex-character ObjectId"
    assert issues["speakers.0"] == "must be a 24-hex-character ObjectId"
    assert "speakers.1" in issues


async def test_where_compares_dates_with_dates(anonymous: Client) -> None:
    for day in (1, 10, 20):
        await create(
            anonymous, "events", {"title": f"d{day}", "when": f"2026-03-{day:02}T00:00:00Z"}
        )
    rfc3339 = json.dumps({"when": {"$gte": "2026-03-05T00:00:00Z", "$lt": "2026-03-15T00:00:00Z"}})
    response = await anonymous.get(f"/events?where={quote(rfc3339)}")
    assert [item["title"] for item in (await response.get_json())["_items"]] == ["d10"]
    rfc1123 = json.dumps({"when": {"$gte": "Fri, 06 Mar 2026 00:00:00 GMT"}})
    response = await anonymous.get(f"/events?where={quote(rfc1123)}&sort=when")
    assert [item["title"] for item in (await response.get_json())["_items"]] == ["d10", "d20"]


async def test_where_on_a_date_field_refuses_what_is_no_date(anonymous: Client) -> None:
    where = quote(json.dumps({"when": {"$gte": "soon"}}))
    response = await anonymous.get(f"/events?where={where}")
    assert response.status_code == 400
    assert "when must be a date" in (await response.get_json())["_error"]["message"]


async def test_where_leaves_strings_of_string_fields_alone(anonymous: Client) -> None:
    # Eve casts every date-like or 24-hex string; Shoal only those of typed fields.
    hexa = "0123456789abcdef01234567"
    await create(anonymous, "events", {"title": "a", "label": hexa})
    await create(anonymous, "events", {"title": "b", "label": "Tue, 24 Nov 2026 10:00:00 GMT"})
    for label in (hexa, "Tue, 24 Nov 2026 10:00:00 GMT"):
        where = quote(json.dumps({"label": label}))
        response = await anonymous.get(f"/events?where={where}")
        assert (await response.get_json())["_meta"]["total"] == 1, label


async def test_operands_that_are_no_values_are_left_as_they_are(anonymous: Client) -> None:
    await create(anonymous, "events", {"title": "a", "when": "2026-03-01T00:00:00Z"})
    # "string" is the name of a type, not a date: no 400.
    where = quote(json.dumps({"when": {"$type": "string"}}))
    response = await anonymous.get(f"/events?where={where}")
    assert response.status_code == 200
    assert (await response.get_json())["_items"] == []


@pytest.mark.real_mongodb(reason="the stand-in's $type knows no date")
async def test_a_stored_date_is_of_bson_type_date(anonymous: Client) -> None:
    await create(anonymous, "events", {"title": "a", "when": "2026-03-01T00:00:00Z"})
    await create(anonymous, "events", {"title": "b"})
    where = quote(json.dumps({"when": {"$type": "date"}}))
    response = await anonymous.get(f"/events?where={where}")
    assert [item["title"] for item in (await response.get_json())["_items"]] == ["a"]


@pytest.mark.real_mongodb(reason="the stand-in matches no ObjectId held outside _id by equality")
async def test_where_matches_object_ids_by_equality(anonymous: Client) -> None:
    venue = ObjectId()
    await create(anonymous, "events", {"title": "here", "venue": str(venue)})
    await create(anonymous, "events", {"title": "there", "venue": str(ObjectId())})
    where = quote(json.dumps({"venue": str(venue)}))
    response = await anonymous.get(f"/events?where={where}")
    assert [item["title"] for item in (await response.get_json())["_items"]] == ["here"]


async def test_where_matches_object_ids_with_in(anonymous: Client) -> None:
    venue = ObjectId()
    await create(anonymous, "events", {"title": "here", "venue": str(venue)})
    await create(anonymous, "events", {"title": "there", "venue": str(ObjectId())})
    where = quote(json.dumps({"venue": {"$in": [str(venue)]}}))
    response = await anonymous.get(f"/events?where={where}")
    assert [item["title"] for item in (await response.get_json())["_items"]] == ["here"]


async def test_data_written_natively_keeps_its_types_through_patch_and_put(
    anonymous: Client, raw: Any
) -> None:
    """A document as Eve writes it (native date and ObjectId, Eve's meta fields)."""
    venue = ObjectId()
    stored_id = ObjectId()
    moment = datetime(2013, 4, 2, 10, 29, 13, tzinfo=UTC)
    await raw.insert_one(
        {
            "_id": stored_id,
            "title": "From Eve",
            "when": moment,
            "venue": venue,
            "_created": moment,
            "_updated": moment,
            "_etag": "e1",
        }
    )
    item = await fetch(anonymous, "events", str(stored_id))
    assert item["when"] == "Tue, 02 Apr 2013 10:29:13 GMT"
    assert item["_etag"] == "e1"

    response = await anonymous.patch(
        f"/events/{stored_id}", json={"title": "Patched"}, headers=if_match("e1")
    )
    assert response.status_code == 200, await response.get_json()
    stored = await raw.find_one({"_id": stored_id})
    assert (stored["title"], stored["when"], stored["venue"]) == ("Patched", moment, venue)

    etag = (await response.get_json())["_etag"]
    put = {"title": "Put", "when": item["when"], "venue": item["venue"]}
    response = await anonymous.put(f"/events/{stored_id}", json=put, headers=if_match(etag))
    assert response.status_code == 200, await response.get_json()
    stored = await raw.find_one({"_id": stored_id})
    assert (stored["when"], stored["venue"], stored["_created"]) == (moment, venue, moment)


async def test_patching_a_typed_field_stores_it_natively(anonymous: Client, raw: Any) -> None:
    ack = await create(anonymous, "events", {"title": "x"})
    response = await anonymous.patch(
        f"/events/{ack['_id']}",
        json={"when": "2026-01-02T03:04:05Z", "sessions": [{"starts": "2026-01-02T04:00:00Z"}]},
        headers=if_match(ack["_etag"]),
    )
    assert response.status_code == 200
    stored = await raw.find_one({"_id": ObjectId(ack["_id"])})
    assert stored["when"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert stored["sessions"][0]["starts"] == datetime(2026, 1, 2, 4, tzinfo=UTC)
