"""Soft delete (``soft_delete: true``): Eve's semantics, a proper 404 body,
no 304 for a deleted document, ``show_deleted`` as a boolean, restores by PUT
or PATCH, and unique fields that still hold."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.config import Settings
from tests.conftest import SettingsFactory
from tests.utils.http import create, fetch, if_match

PEOPLE: dict[str, Any] = {
    "schema": {
        "type": "object",
        "required": ["email"],
        "properties": {"email": {"type": "string"}, "name": {"type": "string"}},
    },
    "soft_delete": True,
    "unique": ["email"],
    "resource_methods": ["GET", "POST", "DELETE"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "public_methods": ["GET", "POST", "DELETE"],
    "public_item_methods": ["GET", "PATCH", "PUT", "DELETE"],
}


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory(resources={"people": PEOPLE})


@pytest.fixture
def anonymous(app: Quart) -> Client:
    return app.test_client()


async def _deleted(client: Client, email: str = "a@x") -> dict[str, Any]:
    ack = await create(client, "people", {"email": email, "name": "ann"})
    assert ack["_deleted"] is False
    response = await client.delete(f"/people/{ack['_id']}", headers=if_match(ack["_etag"]))
    assert response.status_code == 204
    return ack


async def test_a_deleted_item_is_a_404_that_shows_it(anonymous: Client) -> None:
    ack = await _deleted(anonymous)
    response = await anonymous.get(f"/people/{ack['_id']}")
    assert response.status_code == 404
    body = await response.get_json()
    assert body["_deleted"] is True
    assert body["email"] == "a@x"
    assert body["_status"] == "ERR"  # Eve sends ["ERR"]
    assert body["_error"]["code"] == 404
    assert body["_etag"] != ack["_etag"]
    assert response.headers["ETag"] == f'"{body["_etag"]}"'
    # Never a 304: the client's copy is of a deleted document.
    again = await anonymous.get(
        f"/people/{ack['_id']}", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 404


async def test_lists_leave_deleted_documents_out_unless_asked(anonymous: Client) -> None:
    await _deleted(anonymous)
    await create(anonymous, "people", {"email": "b@x"})
    response = await anonymous.get("/people")
    body = await response.get_json()
    assert [item["email"] for item in body["_items"]] == ["b@x"]
    assert body["_items"][0]["_deleted"] is False
    assert body["_meta"]["total"] == 1
    for query in ("?show_deleted", "?show_deleted=true", "?show_deleted=1"):
        body = await (await anonymous.get(f"/people{query}&sort=email")).get_json()
        assert [item["_deleted"] for item in body["_items"]] == [True, False], query
    # Eve shows deleted documents for show_deleted=false too.
    body = await (await anonymous.get("/people?show_deleted=false")).get_json()
    assert len(body["_items"]) == 1
    assert (await anonymous.get("/people?show_deleted=maybe")).status_code == 400
    where = quote(json.dumps({"_deleted": True}))
    body = await (await anonymous.get(f"/people?where={where}")).get_json()
    assert [item["email"] for item in body["_items"]] == ["a@x"]


async def test_deleting_again_changes_nothing_and_still_checks_the_etag(
    anonymous: Client,
) -> None:
    ack = await _deleted(anonymous)
    deleted = await (await anonymous.get(f"/people/{ack['_id']}")).get_json()
    response = await anonymous.delete(f"/people/{ack['_id']}", headers=if_match(ack["_etag"]))
    assert response.status_code == 412
    response = await anonymous.delete(f"/people/{ack['_id']}", headers=if_match(deleted["_etag"]))
    assert response.status_code == 204


async def test_a_stale_writer_cannot_bring_a_deleted_document_back(anonymous: Client) -> None:
    ack = await _deleted(anonymous)
    response = await anonymous.patch(
        f"/people/{ack['_id']}", json={"name": "x"}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 412


async def test_patch_and_put_restore(anonymous: Client) -> None:
    ack = await _deleted(anonymous)
    deleted = await (await anonymous.get(f"/people/{ack['_id']}")).get_json()
    response = await anonymous.patch(
        f"/people/{ack['_id']}", json={}, headers=if_match(deleted["_etag"])
    )
    assert response.status_code == 200
    restored = await response.get_json()
    assert restored["_deleted"] is False
    item = await fetch(anonymous, "people", ack["_id"])
    assert item["name"] == "ann"

    response = await anonymous.delete(f"/people/{ack['_id']}", headers=if_match(item["_etag"]))
    deleted = await (await anonymous.get(f"/people/{ack['_id']}")).get_json()
    response = await anonymous.put(
        f"/people/{ack['_id']}",
        json={"email": "a@x", "name": "new"},
        headers=if_match(deleted["_etag"]),
    )
    assert response.status_code == 200
    assert (await fetch(anonymous, "people", ack["_id"]))["name"] == "new"
    # An empty PATCH of a live document is still a 400.
    item = await fetch(anonymous, "people", ack["_id"])
    response = await anonymous.patch(
        f"/people/{ack['_id']}", json={}, headers=if_match(item["_etag"])
    )
    assert response.status_code == 400


async def test_clients_cannot_write_deleted(anonymous: Client) -> None:
    response = await anonymous.post("/people", json={"email": "c@x", "_deleted": True})
    assert response.status_code == 422
    assert (await response.get_json())["_issues"] == {"_deleted": "field is read-only"}


@pytest.mark.real_mongodb(reason="the stand-in ignores the partial filter of unique indexes")
@pytest.mark.engine_gap(ferretdb="partial_indexes")  # the fallback index is sparse
async def test_unique_values_hold_for_live_documents(anonymous: Client) -> None:
    ack = await _deleted(anonymous, "a@x")
    deleted = await (await anonymous.get(f"/people/{ack['_id']}")).get_json()
    # The unique index leaves deleted documents out: the value is free again...
    assert (await anonymous.post("/people", json={"email": "a@x"})).status_code == 201
    # ...and restoring the deleted one would make two live a@x (Eve allows it).
    response = await anonymous.patch(
        f"/people/{ack['_id']}", json={}, headers=if_match(deleted["_etag"])
    )
    assert response.status_code == 409
    body = await (await anonymous.get('/people?where={"email": "a@x"}')).get_json()
    assert len(body["_items"]) == 1


async def test_deleting_the_resource_marks_every_document(anonymous: Client) -> None:
    await create(anonymous, "people", {"email": "a@x"})
    await create(anonymous, "people", {"email": "b@x"})
    assert (await anonymous.delete("/people")).status_code == 204
    assert (await (await anonymous.get("/people")).get_json())["_items"] == []
    body = await (await anonymous.get("/people?show_deleted")).get_json()
    assert [item["_deleted"] for item in body["_items"]] == [True, True]
