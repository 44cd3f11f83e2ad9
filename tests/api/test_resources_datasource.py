"""Datasource options and lookups: ``datasource.filter``, ``projection`` and
``default_sort``, ``additional_lookup``, ``id_field``, string and integer ids,
sub-resources, ``allowed_filters``, the ``pagination`` and ``sorting``
switches, and projection on items."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from bson import ObjectId
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.config import Settings
from tests.conftest import SettingsFactory
from tests.utils.http import create, fetch, if_match

ALL = ["GET", "POST", "DELETE"]
ITEM = ["GET", "PATCH", "PUT", "DELETE"]


def public(resource: dict[str, Any], **extra: Any) -> dict[str, Any]:
    methods = extra.pop("resource_methods", ALL)
    items = extra.pop("item_methods", ITEM)
    return {
        **resource,
        "resource_methods": methods,
        "item_methods": items,
        "public_methods": methods,
        "public_item_methods": items,
        **extra,
    }


BOOK_SCHEMA = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "title": {"type": "string"},
        "isbn": {"type": "string", "pattern": "^[0-9X-]{10,17}$"},
        "year": {"type": "integer"},
        "status": {"type": "string", "enum": ["draft", "published"]},
        "secret": {"type": "string"},
        "author": {"type": "string", "format": "objectid"},
        "writer": {"type": "string"},
    },
}
RESOURCES: dict[str, Any] = {
    "books": public(
        {"schema": BOOK_SCHEMA},
        additional_lookup={"field": "isbn", "url": 'regex("[0-9X-]+")'},
        unique=["isbn"],
        allowed_filters=["title", "year", "author", "status"],
    ),
    "published": public(
        {
            "schema": BOOK_SCHEMA,
            "datasource": {
                "source": "books",
                "filter": {"status": "published"},
                "projection": {"secret": 0},
                "default_sort": [["year", -1]],
            },
        }
    ),
    "titles": public(
        {"schema": BOOK_SCHEMA, "datasource": {"source": "books", "projection": {"title": 1}}},
        resource_methods=["GET"],
        item_methods=["GET"],
    ),
    "writer_books": public(
        {"schema": BOOK_SCHEMA, "datasource": "books", "url": "writers/<writer>/books"}
    ),
    "author_books": public(
        {"schema": BOOK_SCHEMA, "datasource": "books", "url": "authors/<author>/books"}
    ),
    "year_books": public(
        {"schema": BOOK_SCHEMA, "datasource": "books", "url": "years/<year>/books"},
        resource_methods=["GET"],
        item_methods=["GET"],
    ),
    "all_books": public(
        {"schema": BOOK_SCHEMA, "datasource": "books"},
        pagination=False,
        sorting=False,
        allowed_filters=[],
        resource_methods=["GET"],
        item_methods=["GET"],
    ),
    "products": public(
        {
            "schema": {
                "type": "object",
                "required": ["sku"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"},
                    "price": {"type": "number"},
                },
            }
        },
        id_field="sku",
    ),
    "tags": public(
        {
            "schema": {
                "type": "object",
                "properties": {
                    "_id": {"type": "string", "pattern": "^[a-z-]+$"},
                    "colour": {"type": "string"},
                },
            }
        }
    ),
    "counters": public(
        {
            "schema": {
                "type": "object",
                "properties": {"_id": {"type": "integer"}, "n": {"type": "integer"}},
            }
        }
    ),
}


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory(resources=RESOURCES)


@pytest.fixture
def anonymous(app: Quart) -> Client:
    return app.test_client()


async def _titles(client: Client, path: str) -> list[str]:
    response = await client.get(path)
    body = await response.get_json()
    assert response.status_code == 200, body
    return [item["title"] for item in body["_items"]]


async def _shelf(client: Client) -> list[dict[str, Any]]:
    books = [
        {"title": "A", "year": 2001, "status": "published", "secret": "s1", "isbn": "111-111-1111"},
        {"title": "B", "year": 2003, "status": "draft", "secret": "s2", "isbn": "222-222-2222"},
        {"title": "C", "year": 2002, "status": "published", "secret": "s3", "isbn": "333-333-3333"},
    ]
    response = await client.post("/books", json=books)
    assert response.status_code == 201
    acks: list[dict[str, Any]] = (await response.get_json())["_items"]
    return acks


# -- datasource ------------------------------------------------------------------------


async def test_datasource_filter_projection_and_default_sort(anonymous: Client) -> None:
    acks = await _shelf(anonymous)
    response = await anonymous.get("/published")
    body = await response.get_json()
    assert [item["title"] for item in body["_items"]] == ["C", "A"]  # default_sort year -1
    assert body["_meta"]["total"] == 2
    assert all("secret" not in item for item in body["_items"])
    # A client sort replaces the default one.
    assert await _titles(anonymous, "/published?sort=year") == ["A", "C"]
    # The filter holds for items too: a draft is not there.
    assert (await anonymous.get(f"/published/{acks[1]['_id']}")).status_code == 404
    assert (await anonymous.get(f"/published/{acks[0]['_id']}")).status_code == 200


async def test_an_exclusive_datasource_projection_is_a_boundary(anonymous: Client) -> None:
    await _shelf(anonymous)
    # Eve lets a client ask for what the projection hides; Shoal does not.
    response = await anonymous.get('/published?projection={"secret": 1}')
    assert all("secret" not in item for item in (await response.get_json())["_items"])


async def test_an_inclusive_datasource_projection_cannot_be_widened(anonymous: Client) -> None:
    acks = await _shelf(anonymous)
    response = await anonymous.get('/titles?projection={"year": 1}')
    (item, *_) = (await response.get_json())["_items"]
    assert "year" not in item
    assert "title" not in item  # the client asked for year only
    assert {"_id", "_etag", "_created", "_updated"} <= item.keys()
    item = await fetch(anonymous, "titles", acks[0]["_id"])
    assert set(item) - {"_id", "_etag", "_created", "_updated", "_links"} == {"title"}


async def test_the_datasource_filter_holds_for_writes(anonymous: Client) -> None:
    acks = await _shelf(anonymous)
    draft = acks[1]
    response = await anonymous.patch(
        f"/published/{draft['_id']}", json={"year": 1}, headers=if_match(draft["_etag"])
    )
    assert response.status_code == 404
    # New documents get the filter's values, and may not contradict them.
    ack = await create(anonymous, "published", {"title": "D"})
    assert (await fetch(anonymous, "books", ack["_id"]))["status"] == "published"
    response = await anonymous.post("/published", json={"title": "E", "status": "draft"})
    assert response.status_code == 422
    assert "status" in (await response.get_json())["_issues"]


# -- projection on items -----------------------------------------------------------------


async def test_projection_on_items(anonymous: Client) -> None:
    acks = await _shelf(anonymous)
    response = await anonymous.get(f'/books/{acks[0]["_id"]}?projection={{"title": 1}}')
    item = await response.get_json()
    assert item["title"] == "A"
    assert "year" not in item
    assert item["_etag"] == acks[0]["_etag"]
    full = await anonymous.get(f"/books/{acks[0]['_id']}")
    # Not the same representation, so not the same ETag.
    assert full.headers["ETag"] != response.headers["ETag"]


# -- additional_lookup -------------------------------------------------------------------


async def test_an_item_by_its_additional_lookup_field(anonymous: Client) -> None:
    acks = await _shelf(anonymous)
    response = await anonymous.get("/books/by-isbn/222-222-2222")
    item = await response.get_json()
    assert response.status_code == 200
    assert item["title"] == "B"
    assert item["_links"]["self"]["href"] == f"books/{acks[1]['_id']}"
    assert response.headers["ETag"] == f'"{acks[1]["_etag"]}"'
    assert (await anonymous.get("/books/by-isbn/999-999-9999")).status_code == 404
    # A value the lookup's pattern refuses names nothing.
    assert (await anonymous.get("/books/by-isbn/abc")).status_code == 404
    # Read only, as in Eve.
    response = await anonymous.patch("/books/by-isbn/222-222-2222", json={"year": 1})
    assert response.status_code == 405


# -- id_field and ids that are not ObjectIds -------------------------------------------


async def test_items_named_by_another_field(anonymous: Client) -> None:
    response = await anonymous.post("/products", json={"sku": "AB-1", "price": 3})
    assert response.status_code == 201
    ack = await response.get_json()
    assert ack["sku"] == "AB-1"
    assert ack["_links"]["self"]["href"] == "products/AB-1"
    assert response.headers["Location"].endswith("/products/AB-1")
    item = await fetch(anonymous, "products", "AB-1")
    assert item["price"] == 3
    response = await anonymous.patch(
        "/products/AB-1", json={"price": 4}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 200
    etag = (await response.get_json())["_etag"]
    response = await anonymous.patch("/products/AB-1", json={"sku": "X"}, headers=if_match(etag))
    assert response.status_code == 422
    # The id field is unique.
    assert (await anonymous.post("/products", json={"sku": "AB-1"})).status_code == 409
    response = await anonymous.put("/products/AB-1", json={"price": 9}, headers=if_match(etag))
    assert response.status_code == 200
    assert (await fetch(anonymous, "products", "AB-1"))["sku"] == "AB-1"
    etag = (await response.get_json())["_etag"]
    response = await anonymous.delete("/products/AB-1", headers=if_match(etag))
    assert response.status_code == 204
    assert (await anonymous.get("/products/AB-1")).status_code == 404


async def test_string_ids_chosen_by_the_client(anonymous: Client) -> None:
    response = await anonymous.post("/tags", json={"_id": "red", "colour": "#f00"})
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/tags/red")
    assert (await fetch(anonymous, "tags", "red"))["colour"] == "#f00"
    # A string that looks like an ObjectId is still a string here.
    hexa = "0123456789abcdef01234567"
    response = await anonymous.post("/tags", json={"_id": "not-an-objectid", "colour": "x"})
    assert response.status_code == 201
    assert (await anonymous.get(f"/tags/{hexa}")).status_code == 404
    response = await anonymous.post("/tags", json={"colour": "#0f0"})
    assert response.status_code == 422
    assert "_id" in (await response.get_json())["_issues"]
    response = await anonymous.post("/tags", json={"_id": "Red!", "colour": "x"})
    assert response.status_code == 422
    assert "_id" in (await response.get_json())["_issues"]
    assert (await anonymous.post("/tags", json={"_id": "red"})).status_code == 409
    where = quote(json.dumps({"_id": "red"}))
    response = await anonymous.get(f"/tags?where={where}")
    assert [item["_id"] for item in (await response.get_json())["_items"]] == ["red"]


async def test_integer_ids(anonymous: Client) -> None:
    ack = await create(anonymous, "counters", {"_id": 7, "n": 1})
    assert ack["_id"] == 7
    assert (await fetch(anonymous, "counters", "7"))["n"] == 1
    assert (await anonymous.get("/counters/seven")).status_code == 404
    response = await anonymous.put("/counters/7", json={"n": 2}, headers=if_match(ack["_etag"]))
    assert response.status_code == 200
    assert (await fetch(anonymous, "counters", "7"))["n"] == 2


# -- sub-resources -----------------------------------------------------------------------


async def test_a_sub_resource_lists_and_creates_under_its_parent(anonymous: Client) -> None:
    await create(anonymous, "books", {"title": "Other", "writer": "bob"})
    response = await anonymous.post("/writers/ann/books", json={"title": "Mine"})
    assert response.status_code == 201
    ack = await response.get_json()
    assert ack["_links"]["self"]["href"] == f"writers/ann/books/{ack['_id']}"
    assert response.headers["Location"].endswith(f"/writers/ann/books/{ack['_id']}")
    assert (await fetch(anonymous, "books", ack["_id"]))["writer"] == "ann"

    response = await anonymous.get("/writers/ann/books")
    body = await response.get_json()
    assert [item["title"] for item in body["_items"]] == ["Mine"]
    assert body["_meta"]["total"] == 1
    assert body["_links"]["self"]["href"] == "writers/ann/books"
    assert body["_items"][0]["_links"]["self"]["href"] == f"writers/ann/books/{ack['_id']}"
    # The item is there under its parent only.
    assert (await anonymous.get(f"/writers/ann/books/{ack['_id']}")).status_code == 200
    assert (await anonymous.get(f"/writers/bob/books/{ack['_id']}")).status_code == 404
    # A body naming another parent is refused.
    response = await anonymous.post("/writers/ann/books", json={"title": "X", "writer": "bob"})
    assert response.status_code == 422
    # DELETE of the list deletes the parent's documents only.
    assert (await anonymous.delete("/writers/ann/books")).status_code == 204
    assert await _titles(anonymous, "/books") == ["Other"]


async def test_a_sub_resource_under_an_integer_parent_takes_only_stored_integers(
    anonymous: Client,
) -> None:
    await create(anonymous, "books", {"title": "Dune", "year": 1965})
    assert await _titles(anonymous, "/years/1965/books") == ["Dune"]
    for year in ("abc", "99999999999999999999999", "-9223372036854775809"):
        response = await anonymous.get(f"/years/{year}/books")
        assert response.status_code == 404, year
        assert year in (await response.get_json())["_error"]["message"]


async def test_a_sub_resource_under_an_object_id_parent(anonymous: Client) -> None:
    author = ObjectId()
    await create(anonymous, "books", {"title": "Other", "author": str(ObjectId())})
    response = await anonymous.post(f"/authors/{author}/books", json={"title": "Theirs"})
    assert response.status_code == 201
    ack = await response.get_json()
    assert (await fetch(anonymous, "books", ack["_id"]))["author"] == str(author)
    assert await _titles(anonymous, f"/authors/{author}/books?count=false") == ["Theirs"]
    assert (await anonymous.get("/authors/not-an-id/books")).status_code == 404


@pytest.mark.real_mongodb(reason="the stand-in counts no ObjectId held outside _id")
async def test_a_sub_resource_under_an_object_id_parent_counts_its_own(anonymous: Client) -> None:
    author = ObjectId()
    await create(anonymous, "books", {"title": "Other", "author": str(ObjectId())})
    response = await anonymous.post(f"/authors/{author}/books", json={"title": "Theirs"})
    assert response.status_code == 201
    response = await anonymous.get(f"/authors/{author}/books")
    assert (await response.get_json())["_meta"]["total"] == 1


# -- filters, pagination and sorting switches ---------------------------------------------


async def test_allowed_filters(anonymous: Client) -> None:
    await _shelf(anonymous)
    where = quote(json.dumps({"$or": [{"title": "A"}, {"year": 2003}]}))
    assert sorted(await _titles(anonymous, f"/books?where={where}")) == ["A", "B"]
    for refused in ({"secret": "s1"}, {"$or": [{"title": "A"}, {"secret.x": 1}]}):
        response = await anonymous.get(f"/books?where={quote(json.dumps(refused))}")
        assert response.status_code == 400
        assert "not allowed" in (await response.get_json())["_error"]["message"]
    # Eve silently ignores where on a resource with no allowed filters; Shoal says so.
    response = await anonymous.get(f"/all_books?where={quote(json.dumps({'title': 'A'}))}")
    assert response.status_code == 400
    assert "filtering is off" in (await response.get_json())["_error"]["message"]


async def test_pagination_and_sorting_off(anonymous: Client) -> None:
    await _shelf(anonymous)
    response = await anonymous.get("/all_books")
    body = await response.get_json()
    assert len(body["_items"]) == 3
    assert "_meta" not in body
    assert set(body["_links"]) == {"parent", "self"}
    assert response.headers["X-Total-Count"] == "3"
    for query in ("?page=2", "?max_results=1", "?sort=year"):
        response = await anonymous.get(f"/all_books{query}")
        assert response.status_code == 400, query
