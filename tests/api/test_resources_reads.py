"""GET/HEAD on resources and items: envelopes, queries, pagination, 304s."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import pytest
from quart.typing import TestClientProtocol as Client

from tests.utils.auth import editor_client
from tests.utils.http import create


async def _seed(client: Client, count: int = 5) -> list[dict[str, Any]]:
    books = [
        {"title": f"Book {index}", "year": 1990 + index, "author": "A" if index % 2 else "B"}
        for index in range(count)
    ]
    response = await client.post("/books", json=books)
    assert response.status_code == 201
    acks: list[dict[str, Any]] = (await response.get_json())["_items"]
    return acks


async def _list(client: Client, query: str = "") -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/books{query}")
    return response.status_code, await response.get_json()


async def test_home_lists_resources_with_links(client: Client) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["_links"]["child"] == [
        {"title": "authors", "href": "authors"},
        {"title": "books", "href": "books"},
    ]


async def test_empty_list_envelope(client: Client) -> None:
    status, body = await _list(client)
    assert status == 200
    assert body["_items"] == []
    assert body["_meta"] == {"page": 1, "max_results": 25, "total": 0}
    assert body["_links"]["parent"] == {"title": "home", "href": "/"}
    assert body["_links"]["self"] == {"title": "books", "href": "books"}
    assert "next" not in body["_links"]


async def test_items_carry_meta_fields_and_links(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune", "year": 1965})
    status, body = await _list(client)
    assert status == 200
    (item,) = body["_items"]
    assert item["_id"] == ack["_id"]
    assert item["_etag"] == ack["_etag"]
    assert item["title"] == "Dune"
    assert item["in_stock"] is True  # the schema's default
    assert item["_links"] == {"self": {"title": "Book", "href": f"books/{ack['_id']}"}}
    for field in ("_created", "_updated"):
        assert parsedate_to_datetime(item[field]).tzinfo is not None
        assert item[field].endswith(" GMT")


async def test_total_count_header_and_meta(client: Client) -> None:
    await _seed(client, 3)
    response = await client.get("/books")
    assert response.headers["X-Total-Count"] == "3"
    assert (await response.get_json())["_meta"]["total"] == 3


async def test_where_filters_with_mongo_json(client: Client) -> None:
    await _seed(client, 5)
    where = quote(json.dumps({"year": {"$gte": 1993}}))
    status, body = await _list(client, f"?where={where}")
    assert status == 200
    assert sorted(item["year"] for item in body["_items"]) == [1993, 1994]


async def test_where_matches_ids_given_as_strings(client: Client) -> None:
    acks = await _seed(client, 3)
    where = quote(json.dumps({"_id": {"$in": [acks[0]["_id"], acks[2]["_id"]]}}))
    status, body = await _list(client, f"?where={where}")
    assert status == 200
    assert {item["_id"] for item in body["_items"]} == {acks[0]["_id"], acks[2]["_id"]}


@pytest.mark.parametrize("sort", ["-year", '[("year", -1)]', "[('year',-1)]"])
async def test_sort_in_both_syntaxes(client: Client, sort: str) -> None:
    await _seed(client, 4)
    status, body = await _list(client, f"?sort={quote(sort)}")
    assert status == 200
    assert [item["year"] for item in body["_items"]] == [1993, 1992, 1991, 1990]


async def test_sort_on_two_keys(client: Client) -> None:
    await _seed(client, 4)
    status, body = await _list(client, "?sort=author,-year")
    assert status == 200
    assert [(item["author"], item["year"]) for item in body["_items"]] == [
        ("A", 1993),
        ("A", 1991),
        ("B", 1992),
        ("B", 1990),
    ]


async def test_pagination_links_and_meta(client: Client) -> None:
    await _seed(client, 5)
    status, body = await _list(client, "?max_results=2&page=2&sort=year")
    assert status == 200
    assert [item["year"] for item in body["_items"]] == [1992, 1993]
    assert body["_meta"] == {"page": 2, "max_results": 2, "total": 5}
    links = body["_links"]
    assert links["next"]["href"] == "books?max_results=2&sort=year&page=3"
    assert links["prev"]["href"] == "books?max_results=2&sort=year"
    assert links["last"]["href"] == "books?max_results=2&sort=year&page=3"

    status, last = await _list(client, "?max_results=2&page=3&sort=year")
    assert [item["year"] for item in last["_items"]] == [1994]
    assert "next" not in last["_links"]


async def test_max_results_is_clamped_to_the_pagination_limit(client: Client) -> None:
    status, body = await _list(client, "?max_results=100000")
    assert status == 200
    assert body["_meta"]["max_results"] == 50  # books' pagination_limit


async def test_count_can_be_skipped_per_request(client: Client) -> None:
    await _seed(client, 3)
    response = await client.get("/books?count=false&max_results=2")
    body = await response.get_json()
    assert response.status_code == 200
    assert "total" not in body["_meta"]
    assert "X-Total-Count" not in response.headers
    assert len(body["_items"]) == 2
    assert "next" in body["_links"]  # still known, from one extra document
    body = await (await client.get("/books?count=false&max_results=3")).get_json()
    assert "next" not in body["_links"]


async def test_resource_option_turns_counting_off(settings_factory: Any) -> None:
    from shoal.app import create_app
    from tests.utils.settings import example_resources

    resources = example_resources()
    resources["books"]["count"] = False
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        client = await editor_client(app)
        await create(client, "books", {"title": "x"})
        body = await (await client.get("/books")).get_json()
        assert "total" not in body["_meta"]
        body = await (await client.get("/books?count=true")).get_json()
        assert body["_meta"]["total"] == 1


async def test_projection_includes_only_asked_fields_and_meta(client: Client) -> None:
    await create(client, "books", {"title": "Dune", "year": 1965, "author": "Herbert"})
    status, body = await _list(client, f"?projection={quote(json.dumps({'title': 1}))}")
    assert status == 200
    (item,) = body["_items"]
    assert set(item) == {"_id", "title", "_created", "_updated", "_etag", "_links"}


async def test_projection_excludes_fields(client: Client) -> None:
    await create(client, "books", {"title": "Dune", "year": 1965, "author": "Herbert"})
    status, body = await _list(client, f"?projection={quote(json.dumps({'author': 0}))}")
    assert status == 200
    (item,) = body["_items"]
    assert "author" not in item
    assert item["year"] == 1965


async def test_item_get_has_validators(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.get(f"/books/{ack['_id']}")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["title"] == "Dune"
    assert response.headers["ETag"] == f'"{ack["_etag"]}"'
    assert response.headers["Last-Modified"] == body["_updated"]
    assert body["_links"] == {
        "self": {"title": "Book", "href": f"books/{ack['_id']}"},
        "parent": {"title": "home", "href": "/"},
        "collection": {"title": "books", "href": "books"},
    }


async def test_list_last_modified_is_the_newest_update(client: Client) -> None:
    assert "Last-Modified" not in (await client.get("/books")).headers
    await create(client, "books", {"title": "A"})
    newest = await create(client, "books", {"title": "B"})
    response = await client.get("/books")
    assert response.headers["Last-Modified"] == newest["_updated"]


async def test_head_has_the_headers_of_get(client: Client) -> None:
    # The body of a HEAD answer is dropped by the HTTP server (hypercorn), not
    # by the app; the end-to-end server tests see that on the wire.
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.head(f"/books/{ack['_id']}")
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{ack["_etag"]}"'
    response = await client.head("/books")
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "1"


@pytest.mark.parametrize("header", ['"{etag}"', "{etag}", 'W/"{etag}"', '"other", "{etag}"', "*"])
async def test_if_none_match_on_an_item_gives_304(client: Client, header: str) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.get(
        f"/books/{ack['_id']}", headers={"If-None-Match": header.format(etag=ack["_etag"])}
    )
    assert response.status_code == 304
    assert await response.get_data() == b""
    assert response.headers["ETag"] == f'"{ack["_etag"]}"'


async def test_stale_if_none_match_gives_the_document(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.get(f"/books/{ack['_id']}", headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200


async def test_if_modified_since(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.get(
        f"/books/{ack['_id']}", headers={"If-Modified-Since": ack["_updated"]}
    )
    assert response.status_code == 304
    response = await client.get(
        f"/books/{ack['_id']}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert response.status_code == 200


async def test_if_none_match_on_a_list_gives_304_until_it_changes(client: Client) -> None:
    await create(client, "books", {"title": "Dune"})
    first = await client.get("/books")
    etag = first.headers["ETag"]
    again = await client.get("/books", headers={"If-None-Match": etag})
    assert again.status_code == 304
    await create(client, "books", {"title": "Emma"})
    changed = await client.get("/books", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("?where={bad", "where is not valid JSON"),
        ("?where=[1]", "where must be a JSON object"),
        ("?page=0", "page must be 1 or more"),
        ("?page=abc", "page must be a whole number"),
        ("?page=-3", "page must be 1 or more"),
        ("?page=400000000000000000", "too deep"),
        ("?max_results=0", "max_results must be 1 or more"),
        ("?max_results=x", "max_results must be a whole number"),
        ("?sort=[(", "sort does not parse"),
        ('?sort=[("year", 2)]', "sort direction must be 1 or -1"),
        ("?sort=$year", "invalid field name"),
        ("?projection={bad", "projection is not valid JSON"),
        ('?projection={"a":1,"b":0}', "cannot mix inclusion"),
        ('?projection={"a":"yes"}', "projection values are 1 or 0"),
        ("?count=maybe", "count must be true or false"),
    ],
)
async def test_bad_query_parameters_are_400(client: Client, query: str, fragment: str) -> None:
    response = await client.get(f"/books{query.replace('{', '%7B').replace('}', '%7D')}")
    assert response.status_code == 400
    body = await response.get_json()
    assert body["_status"] == "ERR"
    assert body["_error"]["code"] == 400
    assert fragment in body["_error"]["message"]


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ({"$where": "sleep(1000)"}, "$where is not allowed"),
        ({"title": {"$function": {"body": "x"}}}, "$function is not allowed"),
        ({"$expr": {"$gt": ["$year", 1]}}, "$expr is not allowed"),
        ({"year": {"$accumulator": {}}}, "$accumulator is not allowed"),
        ({"year": {"$bogus": 1}}, "unknown or unsupported query operator $bogus"),
        ({"title": {"$regex": "^D"}}, "$regex is not allowed on this resource"),
        ({"$or": [{"title": {"$options": "i"}}]}, "$options is not allowed"),
    ],
)
async def test_unsafe_operators_are_refused(
    client: Client, where: dict[str, Any], fragment: str
) -> None:
    response = await client.get(f"/books?where={quote(json.dumps(where))}")
    assert response.status_code == 400
    assert fragment in (await response.get_json())["_error"]["message"]


async def test_nesting_depth_is_bounded(client: Client) -> None:
    where: dict[str, Any] = {"year": 1}
    for _ in range(10):
        where = {"$and": [where]}
    response = await client.get(f"/books?where={quote(json.dumps(where))}")
    assert response.status_code == 400
    assert "nested too deeply" in (await response.get_json())["_error"]["message"]


async def test_regex_where_the_resource_allows_it(settings_factory: Any) -> None:
    from shoal.app import create_app
    from tests.utils.settings import example_resources

    resources = example_resources()
    resources["books"]["allow_regex"] = True
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        client = await editor_client(app)
        await create(client, "books", {"title": "Dune"})
        await create(client, "books", {"title": "Emma"})
        where = quote(json.dumps({"title": {"$regex": "^D"}}))
        response = await client.get(f"/books?where={where}")
        assert response.status_code == 200
        assert [item["title"] for item in (await response.get_json())["_items"]] == ["Dune"]


@pytest.mark.parametrize("item_id", ["nope", "123", "zzzzzzzzzzzzzzzzzzzzzzzz"])
async def test_an_id_that_is_not_an_id_is_404(client: Client, item_id: str) -> None:
    response = await client.get(f"/books/{item_id}")
    assert response.status_code == 404
    assert (await response.get_json())["_error"]["code"] == 404


async def test_a_missing_item_is_404(client: Client) -> None:
    response = await client.get("/books/000000000000000000000000")
    assert response.status_code == 404
    body = await response.get_json()
    assert body == {
        "_status": "ERR",
        "_error": {"code": 404, "message": "no book with id 000000000000000000000000"},
    }


async def test_unlisted_methods_are_405_with_allow(client: Client) -> None:
    response = await client.put("/books", json={})
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "HEAD", "POST", "DELETE"} <= allowed
    assert "PUT" not in allowed
    response = await client.delete("/authors")  # authors do not list DELETE
    assert response.status_code == 405
    assert (await response.get_json())["_error"]["code"] == 405


async def test_documents_written_by_other_tools_do_not_break_reads(
    client: Client, settings: Any
) -> None:
    """A document whose _updated is not a date (another tool wrote it) is still
    served; it just has no Last-Modified."""
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb.uri)
    try:
        result = await mongo[settings.mongodb.database]["books"].insert_one(
            {"title": "odd", "_updated": "yesterday", "_etag": "e1"}
        )
    finally:
        await mongo.close()
    response = await client.get(f"/books/{result.inserted_id}")
    assert response.status_code == 200
    assert "Last-Modified" not in response.headers
    listed = await client.get(
        "/books", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert listed.status_code == 200


async def test_an_unexpected_database_error_is_a_500_that_quotes_no_document(
    app: Any, client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymongo.errors import OperationFailure

    from shoal.storage import get_storage

    ack = await create(client, "books", {"title": "Dune"})
    storage = get_storage(app)

    class Refusing:
        async def find_one(self, *args: Any, **kwargs: Any) -> Any:
            raise OperationFailure("document {title: 'secret title'} too odd", code=12345)

    monkeypatch.setattr(storage, "collection", lambda name: Refusing())
    response = await client.get(f"/books/{ack['_id']}")
    assert response.status_code == 500
    body = await response.get_json()
    assert body["_error"]["request_id"] == response.headers["X-Request-ID"]
    assert "secret title" not in str(body)
    assert "secret title" not in caplog.text
    assert "OperationFailure" in caplog.text


async def _read_both_ways(anonymous: Client, stored: Any, expected: dict[str, Any]) -> None:
    # The direct read (no query) and the full path (with one) answer alike.
    projection = quote(json.dumps(dict.fromkeys(expected, 1)))
    for path in (f"/books/{stored}", f"/books/{stored}?projection={projection}"):
        response = await anonymous.get(path)
        assert response.status_code == 200, await response.get_data(as_text=True)
        body = await response.get_json()
        assert {name: body[name] for name in expected} == expected


async def _stored(app: Any, fields: dict[str, Any]) -> Any:
    """A book written by another program, with types the schema never produces."""
    from shoal.storage import get_storage
    from tests.utils.settings import content_etag

    document = {"title": "Odd", **fields}
    document["_etag"] = content_etag(app, document)
    await get_storage(app).insert_many("books", [document])
    return document["_id"]


async def test_binary_data_and_64_bit_integers_are_read_as_extended_json(
    app: Any, anonymous: Client
) -> None:
    from bson import Int64

    stored = await _stored(app, {"blob": b"\xff\x00", "count": Int64(5)})
    expected = {"blob": {"$binary": {"base64": "/wA=", "subType": "00"}}, "count": 5}
    await _read_both_ways(anonymous, stored, expected)


@pytest.mark.real_mongodb(reason="regular expressions and timestamps cannot be stored")
async def test_regular_expressions_and_timestamps_are_read_as_extended_json(
    app: Any, anonymous: Client
) -> None:
    from bson import Regex, Timestamp

    fields = {"pattern": Regex("^a", "i"), "stamp": Timestamp(1_700_000_000, 1)}
    expected = {
        "pattern": {"$regularExpression": {"pattern": "^a", "options": "i"}},
        "stamp": {"$timestamp": {"t": 1_700_000_000, "i": 1}},
    }
    await _read_both_ways(anonymous, await _stored(app, fields), expected)
