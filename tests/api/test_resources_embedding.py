"""References between resources (``data_relation``): embedding with
``?embedded=``, one query per page and field, the target's access rules,
``_links.related``, and reference integrity on write."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from bson import ObjectId
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.config import Settings
from shoal.storage import Storage
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.http import create, fetch, if_match

READ_WRITE = {
    "resource_methods": ["GET", "POST", "DELETE"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "public_methods": ["GET", "POST", "DELETE"],
    "public_item_methods": ["GET", "PATCH", "PUT", "DELETE"],
}


def reference(resource: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "string",
        "format": "objectid",
        "data_relation": {"resource": resource, "embeddable": True, **extra},
    }


PERSON = {
    "type": "object",
    "required": ["lastname"],
    "properties": {"lastname": {"type": "string"}, "role": {"type": "string"}},
}
RESOURCES: dict[str, Any] = {
    "people": {
        "schema": PERSON,
        "soft_delete": True,
        **READ_WRITE,
    },
    "staff": {
        "schema": PERSON,
        "datasource": {"source": "people", "filter": {"role": "staff"}},
        **READ_WRITE,
    },
    "notes": {
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "auth_field": "owner",
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET"],
    },
    "invoices": {
        "schema": {
            "type": "object",
            "properties": {
                "number": {"type": "integer"},
                "person": reference("people"),
                "cc": {"type": "array", "items": reference("people")},
                "meta": {"type": "object", "properties": {"reviewer": reference("people")}},
                "by_name": {
                    "type": "string",
                    "data_relation": {"resource": "people", "field": "lastname"},
                },
                "note": reference("notes"),
                "clerk": reference("staff"),
            },
        },
        **READ_WRITE,
    },
    "letters": {
        "schema": {
            "type": "object",
            "properties": {"to": reference("people"), "note": reference("notes")},
        },
        "embedded_fields": ["to", "note"],
        **READ_WRITE,
    },
}


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory(resources=RESOURCES)


@pytest.fixture
def anonymous(app: Quart) -> Client:
    return app.test_client()


async def _people(client: Client, *names: str) -> list[str]:
    response = await client.post("/people", json=[{"lastname": name} for name in names])
    assert response.status_code == 201
    return [ack["_id"] for ack in (await response.get_json())["_items"]]


def _embedded(name: str) -> str:
    return quote(json.dumps({name: 1}))


async def test_embedding_on_items_and_lists(anonymous: Client) -> None:
    ann, bob, cid = await _people(anonymous, "ann", "bob", "cid")
    invoice = {"number": 1, "person": ann, "cc": [bob, cid, bob], "meta": {"reviewer": cid}}
    ack = await create(anonymous, "invoices", invoice)

    response = await anonymous.get(f"/invoices/{ack['_id']}?embedded={_embedded('person')}")
    item = await response.get_json()
    assert item["person"]["lastname"] == "ann"
    assert item["person"]["_id"] == ann
    assert {"_etag", "_created", "_updated"} <= item["person"].keys()
    assert item["cc"] == [bob, cid, bob]  # not asked for: plain references

    embedded = quote(json.dumps({"cc": 1, "meta.reviewer": 1}))
    response = await anonymous.get(f"/invoices?embedded={embedded}")
    (listed,) = (await response.get_json())["_items"]
    assert [person["lastname"] for person in listed["cc"]] == ["bob", "cid", "bob"]
    assert listed["meta"]["reviewer"]["lastname"] == "cid"
    assert listed["person"] == ann


async def test_one_query_per_page_and_field(
    anonymous: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = await _people(anonymous, *(f"p{index}" for index in range(6)))
    invoices = [
        {"number": index, "person": people[index], "cc": people[:index]} for index in range(6)
    ]
    assert (await anonymous.post("/invoices", json=invoices)).status_code == 201
    queries: Counter[str] = Counter()
    find_all = Storage.find_all

    async def counted(self: Storage, collection: str, *args: Any, **kwargs: Any) -> Any:
        queries[collection] += 1
        return await find_all(self, collection, *args, **kwargs)

    monkeypatch.setattr(Storage, "find_all", counted)
    embedded = quote(json.dumps({"person": 1, "cc": 1}))
    response = await anonymous.get(f"/invoices?embedded={embedded}&sort=number")
    items = (await response.get_json())["_items"]
    assert [item["person"]["lastname"] for item in items] == [f"p{i}" for i in range(6)]
    assert [len(item["cc"]) for item in items] == list(range(6))
    # Eve: 2 queries per document and field (a find and a count), 24 here.
    assert queries == {"people": 2}


async def test_a_missing_or_deleted_reference_embeds_as_null_in_place(anonymous: Client) -> None:
    ann, bob = await _people(anonymous, "ann", "bob")
    ack = await create(anonymous, "invoices", {"person": ann, "cc": [ann, bob]})
    person = await fetch(anonymous, "people", bob)
    response = await anonymous.delete(f"/people/{bob}", headers=if_match(person["_etag"]))
    assert response.status_code == 204  # soft delete: the document stays, marked
    embedded = quote(json.dumps({"cc": 1}))
    item = await (await anonymous.get(f"/invoices/{ack['_id']}?embedded={embedded}")).get_json()
    assert item["cc"][0]["lastname"] == "ann"
    assert item["cc"][1] is None  # Eve drops it and the list shrinks


async def test_the_targets_datasource_filter_applies(anonymous: Client) -> None:
    clerk = await create(anonymous, "staff", {"lastname": "c"})
    ack = await create(anonymous, "invoices", {"clerk": clerk["_id"]})
    response = await anonymous.get(f"/invoices/{ack['_id']}?embedded={_embedded('clerk')}")
    assert (await response.get_json())["clerk"]["role"] == "staff"
    # No longer staff (changed through people): staff's filter no longer finds it.
    response = await anonymous.patch(
        f"/people/{clerk['_id']}", json={"role": "guest"}, headers=if_match(clerk["_etag"])
    )
    assert response.status_code == 200
    response = await anonymous.get(f"/invoices/{ack['_id']}?embedded={_embedded('clerk')}")
    assert (await response.get_json())["clerk"] is None
    response = await anonymous.post("/invoices", json={"clerk": clerk["_id"]})
    assert response.status_code == 422


async def test_unknown_and_not_embeddable_fields_are_a_400(anonymous: Client) -> None:
    for embedded in ({"bogus": 1}, {"by_name": 1}, ["person"], {"person": 2}):
        response = await anonymous.get(f"/invoices?embedded={quote(json.dumps(embedded))}")
        assert response.status_code == 400, embedded
    response = await anonymous.get("/invoices?embedded=notjson")
    assert response.status_code == 400


async def test_embedding_needs_read_access_to_the_target(app: Quart, anonymous: Client) -> None:
    owner = str(ObjectId())
    writer = client_with(app, bearer(await token_for(app, user_id=owner)))
    note = await create(writer, "notes", {"text": "private"})
    invoice = await create(anonymous, "invoices", {"note": note["_id"]})
    letter = await create(anonymous, "letters", {"note": note["_id"]})

    # Asked for explicitly by someone who may not read notes: refused.
    response = await anonymous.get(f"/invoices/{invoice['_id']}?embedded={_embedded('note')}")
    assert response.status_code == 401
    assert "embedding note reads notes" in (await response.get_json())["_error"]["message"]
    # Embedded by default (embedded_fields): the plain reference stays.
    assert (await fetch(anonymous, "letters", letter["_id"]))["note"] == note["_id"]
    # The owner sees it embedded; someone else's owner filter finds nothing.
    item = await fetch(writer, "letters", letter["_id"])
    assert item["note"]["text"] == "private"
    other = client_with(app, bearer(await token_for(app)))
    assert (await fetch(other, "letters", letter["_id"]))["note"] is None


async def test_embedded_fields_embed_by_default_and_can_be_opted_out(anonymous: Client) -> None:
    (ann,) = await _people(anonymous, "ann")
    ack = await create(anonymous, "letters", {"to": ann})
    assert (await fetch(anonymous, "letters", ack["_id"]))["to"]["lastname"] == "ann"
    opt_out = quote(json.dumps({"to": 0}))
    item = await (await anonymous.get(f"/letters/{ack['_id']}?embedded={opt_out}")).get_json()
    assert item["to"] == ann


async def test_related_links(anonymous: Client) -> None:
    ann, bob = await _people(anonymous, "ann", "bob")
    ack = await create(anonymous, "invoices", {"person": ann, "cc": [bob], "by_name": "ann"})
    item = await fetch(anonymous, "invoices", ack["_id"])
    related = item["_links"]["related"]
    assert related["person"] == {"title": "People", "href": f"people/{ann}"}
    assert related["cc"] == [{"title": "People", "href": f"people/{bob}"}]
    # people has no lookup by lastname: no link rather than a broken one.
    assert "by_name" not in related


async def test_an_embedded_change_changes_the_etag(anonymous: Client) -> None:
    (ann,) = await _people(anonymous, "ann")
    ack = await create(anonymous, "invoices", {"person": ann})
    path = f"/invoices/{ack['_id']}?embedded={_embedded('person')}"
    first = await anonymous.get(path)
    person = await fetch(anonymous, "people", ann)
    response = await anonymous.patch(
        f"/people/{ann}", json={"lastname": "anne"}, headers=if_match(person["_etag"])
    )
    assert response.status_code == 200
    again = await anonymous.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200
    assert (await again.get_json())["person"]["lastname"] == "anne"


# -- reference integrity ---------------------------------------------------------------


async def test_a_reference_to_a_missing_document_is_a_422(anonymous: Client) -> None:
    (ann,) = await _people(anonymous, "ann")
    missing = str(ObjectId())
    response = await anonymous.post(
        "/invoices", json={"person": missing, "cc": [ann, missing], "by_name": "nobody"}
    )
    assert response.status_code == 422
    issues = (await response.get_json())["_issues"]
    assert issues == {
        "person": f"value '{missing}' must exist in resource 'people', field '_id'.",
        "cc.1": f"value '{missing}' must exist in resource 'people', field '_id'.",
        "by_name": "value 'nobody' must exist in resource 'people', field 'lastname'.",
    }
    # A bulk insert is refused whole, each item with its own issues.
    response = await anonymous.post("/invoices", json=[{"person": ann}, {"person": missing}])
    assert response.status_code == 422
    items = (await response.get_json())["_items"]
    assert items[0] == {"_status": "OK"}
    assert set(items[1]["_issues"]) == {"person"}


async def test_a_reference_to_a_deleted_document_is_a_422(anonymous: Client) -> None:
    (ann,) = await _people(anonymous, "ann")
    person = await fetch(anonymous, "people", ann)
    response = await anonymous.delete(f"/people/{ann}", headers=if_match(person["_etag"]))
    assert response.status_code == 204
    response = await anonymous.post("/invoices", json={"person": ann})
    assert response.status_code == 422


async def test_patch_and_put_check_the_references_they_change(anonymous: Client) -> None:
    ann, bob = await _people(anonymous, "ann", "bob")
    ack = await create(anonymous, "invoices", {"person": ann, "number": 1})
    missing = str(ObjectId())
    response = await anonymous.patch(
        f"/invoices/{ack['_id']}", json={"person": missing}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 422
    response = await anonymous.put(
        f"/invoices/{ack['_id']}", json={"cc": [missing]}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 422
    # A reference the document already holds is not checked again: ann's
    # deletion does not stop other changes to the invoice.
    person = await fetch(anonymous, "people", ann)
    response = await anonymous.delete(f"/people/{ann}", headers=if_match(person["_etag"]))
    assert response.status_code == 204
    response = await anonymous.patch(
        f"/invoices/{ack['_id']}", json={"number": 2, "cc": [bob]}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 200, await response.get_json()
