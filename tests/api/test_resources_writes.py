"""POST/PATCH/PUT/DELETE: validation, ETags, concurrency control, bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import Settings
from shoal.storage import get_storage
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client
from tests.utils.http import JSON, create, fetch, if_match
from tests.utils.settings import content_etag, example_resources

# -- POST ------------------------------------------------------------------


async def test_post_creates_with_201_location_and_ack(client: Client) -> None:
    response = await client.post("/books", json={"title": "Dune", "year": 1965})
    assert response.status_code == 201
    ack = await response.get_json()
    assert set(ack) == {"_id", "_created", "_updated", "_etag", "_links", "_status"}
    assert ack["_status"] == "OK"
    assert response.headers["Location"].endswith(f"/books/{ack['_id']}")
    assert response.headers["ETag"] == f'"{ack["_etag"]}"'
    stored = await fetch(client, "books", ack["_id"])
    assert stored["title"] == "Dune"
    assert stored["_etag"] == ack["_etag"]


async def test_etag_is_deterministic_from_content(app: Quart, client: Client) -> None:
    first = await create(client, "books", {"title": "Same", "year": 1})
    second = await create(client, "books", {"year": 1, "title": "Same"})
    third = await create(client, "books", {"title": "Other", "year": 1})
    assert first["_etag"] == second["_etag"] != third["_etag"]
    stored = await fetch(client, "books", first["_id"])
    assert first["_etag"] == content_etag(app, stored)


async def test_post_applies_schema_defaults(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    assert (await fetch(client, "books", ack["_id"]))["in_stock"] is True
    ack = await create(client, "books", {"title": "Gone", "in_stock": False})
    assert (await fetch(client, "books", ack["_id"]))["in_stock"] is False


async def test_invalid_document_is_422_with_issues(client: Client) -> None:
    response = await client.post("/books", json={"year": "1965", "colour": "red"})
    assert response.status_code == 422
    body = await response.get_json()
    assert body["_status"] == "ERR"
    assert body["_error"]["code"] == 422
    assert body["_issues"] == {
        "title": "required field",
        "year": '"1965" is not of type "integer"',
        "colour": "unknown field",
    }
    assert (await (await client.get("/books")).get_json())["_meta"]["total"] == 0


async def test_nested_issues_use_dotted_names(client: Client) -> None:
    response = await client.post("/books", json={"title": "x", "tags": ["ok", 3]})
    assert response.status_code == 422
    assert (await response.get_json())["_issues"] == {"tags.1": '3 is not of type "string"'}


async def test_allow_unknown_accepts_extra_fields(settings_factory: SettingsFactory) -> None:
    resources = example_resources()
    resources["books"]["allow_unknown"] = True
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        client = await editor_client(app)
        ack = await create(client, "books", {"title": "x", "colour": "red"})
        assert (await fetch(client, "books", ack["_id"]))["colour"] == "red"


async def test_bulk_insert_creates_all(client: Client) -> None:
    response = await client.post("/books", json=[{"title": "A"}, {"title": "B"}])
    assert response.status_code == 201
    body = await response.get_json()
    assert response.headers["Location"].endswith(f"/books/{body['_items'][0]['_id']}")
    assert body["_status"] == "OK"
    assert [item["_status"] for item in body["_items"]] == ["OK", "OK"]
    assert len({item["_id"] for item in body["_items"]}) == 2


async def test_a_bulk_insert_the_database_refuses_is_a_500_that_quotes_no_document(
    app: Quart, client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymongo.errors import BulkWriteError

    storage = get_storage(app)
    books = storage.collection("books")

    class Refusing:
        async def insert_many(self, documents: list[Any], **kwargs: Any) -> Any:
            op = {"title": "secret title"}
            failure = {"index": 0, "code": 121, "errmsg": f"failed validation {op}", "op": op}
            raise BulkWriteError({"writeErrors": [failure], "nInserted": 0})

        def __getattr__(self, name: str) -> Any:
            return getattr(books, name)

    monkeypatch.setattr(storage, "collection", lambda *args, **kwargs: Refusing())
    response = await client.post("/books", json=[{"title": "secret title"}, {"title": "B"}])
    assert response.status_code == 500
    body = await response.get_json()
    assert "code 121" in body["_error"]["message"]
    assert "secret title" not in str(body)
    assert "secret title" not in caplog.text


async def test_bulk_insert_is_all_or_nothing_on_validation(client: Client) -> None:
    response = await client.post(
        "/books", json=[{"title": "A"}, {"year": -1}, {"title": "C"}, "not an object"]
    )
    assert response.status_code == 422
    body = await response.get_json()
    assert body["_error"] == {
        "code": 422,
        "message": "Insertion failure: 2 document(s) contain(s) error(s)",
    }
    statuses = [item["_status"] for item in body["_items"]]
    assert statuses == ["OK", "ERR", "OK", "ERR"]
    assert body["_items"][1]["_issues"] == {
        "title": "required field",
        "year": "-1 is less than the minimum of 0",
    }
    assert body["_items"][3]["_issues"] == {"(document)": "must be a JSON object"}
    assert (await (await client.get("/books")).get_json())["_meta"]["total"] == 0


async def test_a_number_mongodb_cannot_store_is_422(client: Client) -> None:
    response = await client.post(
        "/books", data=b'{"title": "x", "price": 18446744073709551615}', headers=JSON
    )
    assert response.status_code == 422
    assert "cannot be stored in MongoDB" in (await response.get_json())["_issues"]["(document)"]


async def test_empty_bulk_is_400(client: Client) -> None:
    response = await client.post("/books", json=[])
    assert response.status_code == 400


@pytest.mark.parametrize("field", ["_etag", "_created", "_updated", "_links"])
async def test_meta_fields_are_read_only(client: Client, field: str) -> None:
    response = await client.post("/books", json={"title": "x", field: "forged"})
    assert response.status_code == 422
    assert (await response.get_json())["_issues"] == {field: "field is read-only"}


async def test_readonly_fields_are_refused(settings_factory: SettingsFactory) -> None:
    resources = example_resources()
    resources["books"]["readonly"] = ["price"]
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        client = await editor_client(app)
        response = await client.post("/books", json={"title": "x", "price": 3})
        assert response.status_code == 422
        assert (await response.get_json())["_issues"] == {"price": "field is read-only"}
        ack = await create(client, "books", {"title": "x"})
        response = await client.patch(
            f"/books/{ack['_id']}", json={"price": 1}, headers=if_match(ack["_etag"])
        )
        assert response.status_code == 422


async def test_dollar_and_dotted_field_names_are_refused(client: Client) -> None:
    response = await client.post("/books", json={"title": "x", "$set": {"a": 1}})
    assert response.status_code == 422
    assert (await response.get_json())["_issues"]["$set"] == "invalid field name"
    response = await client.post("/books", json={"title": "x", "a.b": 1})
    assert response.status_code == 422


async def test_client_supplied_id(client: Client) -> None:
    ack = await create(client, "books", {"_id": "65a000000000000000000001", "title": "x"})
    assert ack["_id"] == "65a000000000000000000001"
    response = await client.post("/books", json={"_id": "65a000000000000000000001", "title": "y"})
    assert response.status_code == 409
    response = await client.post("/books", json={"_id": "short", "title": "y"})
    assert response.status_code == 422
    response = await client.post("/books", json={"_id": None, "title": "y"})
    assert response.status_code == 422
    assert "_id" in (await response.get_json())["_issues"]


async def test_unique_field_duplicate_is_409(client: Client) -> None:
    await create(client, "books", {"title": "A", "isbn": "978-0441013593"})
    response = await client.post("/books", json={"title": "B", "isbn": "978-0441013593"})
    assert response.status_code == 409
    body = await response.get_json()
    assert body["_status"] == "ERR"
    assert body["_error"]["code"] == 409


async def test_documents_without_a_unique_field_do_not_collide(client: Client) -> None:
    await create(client, "books", {"title": "No ISBN"})
    await create(client, "books", {"title": "No ISBN either"})


async def test_bulk_with_a_duplicate_inserts_nothing(client: Client) -> None:
    await create(client, "books", {"title": "A", "isbn": "978-0441013593"})
    response = await client.post(
        "/books",
        json=[{"title": "B", "isbn": "0-00-000000-1"}, {"title": "C", "isbn": "978-0441013593"}],
    )
    assert response.status_code == 409
    assert "nothing was inserted" in (await response.get_json())["_error"]["message"]
    assert (await (await client.get("/books")).get_json())["_meta"]["total"] == 1


async def _index_information(settings: Settings) -> dict[str, Any]:
    assert settings.mongodb.uri is not None
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb.uri)
    try:
        return dict(await mongo[settings.mongodb.database]["books"].index_information())
    finally:
        await mongo.close()


async def test_indexes_are_created_at_start_up(app: Quart, settings: Settings) -> None:
    indexes = (await _index_information(settings)).values()
    unique = [index for index in indexes if index.get("unique")]
    assert [[field for field, _ in index["key"]] for index in unique] == [["isbn"]]
    assert ["author", "year"] in [[field for field, _ in index["key"]] for index in indexes]


async def test_a_database_without_partial_indexes_gets_sparse_unique_ones(
    app: Quart, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As FerretDB v1 answers: NotImplemented for partialFilterExpression.
    from pymongo.errors import OperationFailure

    storage = get_storage(app)
    books = storage.collection("books")
    asked: list[list[dict[str, Any]]] = []

    class NoPartialIndexes:
        async def create_indexes(self, models: list[Any]) -> list[str]:
            asked.append([dict(model.document) for model in models])
            if any("partialFilterExpression" in model.document for model in models):
                raise OperationFailure("partialFilterExpression is not implemented", code=238)
            return [model.document["name"] for model in models]

        def __getattr__(self, name: str) -> Any:
            return getattr(books, name)

    monkeypatch.setattr(storage, "collection", lambda *args, **kwargs: NoPartialIndexes())
    service = app.extensions["shoal.resources"].services["books"]
    await service.ensure_indexes()
    first, second = asked
    assert [index["name"] for index in first] == [index["name"] for index in second]
    unique = next(index for index in second if index["name"] == "unique_isbn")
    assert unique["sparse"] is True
    assert unique["unique"] is True
    assert "partialFilterExpression" not in unique
    assert "unique indexes of books are sparse" in caplog.text


@pytest.mark.real_mongodb(reason="the stand-in ignores index names and key directions")
async def test_indexes_keep_their_names_and_directions(app: Quart, settings: Settings) -> None:
    info = await _index_information(settings)
    assert info["unique_isbn"]["unique"] is True
    assert info["unique_isbn"]["key"] == [("isbn", 1)]
    assert info["by_author_year"]["key"] == [("author", 1), ("year", -1)]


@pytest.mark.parametrize(
    ("content_type", "data", "status", "fragment"),
    [
        ("text/plain", b'{"title": "x"}', 415, "Content-Type: application/json"),
        ("application/x-www-form-urlencoded", b"title=x", 415, "application/json"),
        ("application/json", b'{"title": ', 400, "not valid JSON"),
        ("application/json", b"", 400, "body is empty"),
        ("application/json", b'"just a string"', 422, "must be a JSON object"),
    ],
)
async def test_bad_bodies(
    client: Client, content_type: str, data: bytes, status: int, fragment: str
) -> None:
    response = await client.post("/books", data=data, headers={"Content-Type": content_type})
    assert response.status_code == status
    body = await response.get_json()
    assert body["_status"] == "ERR"
    assert fragment in str(body)


async def test_vendor_json_content_type_is_accepted(client: Client) -> None:
    response = await client.post(
        "/books", data=b'{"title": "x"}', headers={"Content-Type": "application/vnd.x+json"}
    )
    assert response.status_code == 201


async def test_body_over_the_limit_is_413(settings_factory: SettingsFactory) -> None:
    app = create_app(settings_factory(max_body_bytes=1000))
    async with app.test_app():
        client = await editor_client(app)
        response = await client.post(
            "/books", data=b'{"title": "' + b"x" * 2000 + b'"}', headers=JSON
        )
        assert response.status_code == 413
        assert (await response.get_json())["_error"]["code"] == 413
        assert (await (await client.get("/books")).get_json())["_meta"]["total"] == 0


# -- PATCH -----------------------------------------------------------------


async def test_patch_merges_and_changes_the_etag(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune", "year": 1965, "author": "Herbert"})
    response = await client.patch(
        f"/books/{ack['_id']}", json={"year": 1966}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 200
    patched = await response.get_json()
    assert patched["_status"] == "OK"
    assert patched["_etag"] != ack["_etag"]
    assert patched["_created"] == ack["_created"]
    assert response.headers["ETag"] == f'"{patched["_etag"]}"'
    stored = await fetch(client, "books", ack["_id"])
    assert (stored["title"], stored["year"], stored["author"]) == ("Dune", 1966, "Herbert")
    assert stored["_etag"] == patched["_etag"]


async def test_patch_reaches_into_nested_objects(settings_factory: SettingsFactory) -> None:
    resources = example_resources()
    resources["books"]["schema"]["properties"]["publisher"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
        "additionalProperties": False,
    }
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        client = await editor_client(app)
        ack = await create(client, "books", {"title": "x", "publisher": {"name": "A", "city": "B"}})
        response = await client.patch(
            f"/books/{ack['_id']}", json={"publisher.city": "C"}, headers=if_match(ack["_etag"])
        )
        assert response.status_code == 200, await response.get_json()
        etag = (await response.get_json())["_etag"]
        assert (await fetch(client, "books", ack["_id"]))["publisher"] == {"name": "A", "city": "C"}
        response = await client.patch(
            f"/books/{ack['_id']}", json={"publisher": {"name": "D"}}, headers=if_match(etag)
        )
        assert response.status_code == 200
        assert (await fetch(client, "books", ack["_id"]))["publisher"] == {"name": "D", "city": "C"}
        etag = (await response.get_json())["_etag"]
        response = await client.patch(
            f"/books/{ack['_id']}", json={"publisher.zip": "1"}, headers=if_match(etag)
        )
        assert response.status_code == 422
        assert (await response.get_json())["_issues"] == {"publisher.zip": "unknown field"}


async def test_patch_validates_the_merged_document(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.patch(
        f"/books/{ack['_id']}", json={"year": -5}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 422
    assert (await response.get_json())["_issues"] == {"year": "-5 is less than the minimum of 0"}
    assert (await fetch(client, "books", ack["_id"]))["_etag"] == ack["_etag"]


async def test_patch_without_if_match_is_428(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.patch(f"/books/{ack['_id']}", json={"year": 1})
    assert response.status_code == 428
    body = await response.get_json()
    assert body["_error"]["code"] == 428
    assert "If-Match" in body["_error"]["message"]


async def test_patch_with_a_stale_etag_is_412_and_changes_nothing(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.patch(
        f"/books/{ack['_id']}", json={"year": 1}, headers=if_match("0" * 40)
    )
    assert response.status_code == 412
    assert (await response.get_json())["_error"]["code"] == 412
    assert "year" not in await fetch(client, "books", ack["_id"])


async def test_if_match_accepts_an_unquoted_etag_as_eve_clients_send(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.patch(
        f"/books/{ack['_id']}", json={"year": 1}, headers={"If-Match": ack["_etag"]}
    )
    assert response.status_code == 200


async def test_patch_refuses_meta_fields(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    for field in ("_id", "_etag", "_created"):
        response = await client.patch(
            f"/books/{ack['_id']}", json={field: "x"}, headers=if_match(ack["_etag"])
        )
        assert response.status_code == 422
        assert (await response.get_json())["_issues"] == {field: "field is read-only"}


async def test_patch_with_an_empty_or_non_object_body_is_400(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    bodies: list[Any] = [{}, [1]]
    for body in bodies:
        response = await client.patch(
            f"/books/{ack['_id']}", json=body, headers=if_match(ack["_etag"])
        )
        assert response.status_code == 400


async def test_patch_on_a_missing_item_is_404(client: Client) -> None:
    response = await client.patch(
        "/books/000000000000000000000000", json={"year": 1}, headers=if_match("x")
    )
    assert response.status_code == 404


# -- PUT -------------------------------------------------------------------


async def test_put_replaces_the_document(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune", "year": 1965, "author": "Herbert"})
    response = await client.put(
        f"/books/{ack['_id']}", json={"title": "Emma"}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 200
    replaced = await response.get_json()
    stored = await fetch(client, "books", ack["_id"])
    assert "author" not in stored
    assert "year" not in stored
    assert stored["title"] == "Emma"
    assert stored["in_stock"] is True  # defaults apply to replacements
    assert stored["_created"] == ack["_created"]
    assert stored["_etag"] == replaced["_etag"]


async def test_put_validates_and_needs_if_match(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.put(f"/books/{ack['_id']}", json={"year": 1})
    assert response.status_code == 428
    response = await client.put(
        f"/books/{ack['_id']}", json={"year": 1}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 422
    assert (await response.get_json())["_issues"] == {"title": "required field"}
    response = await client.put(
        f"/books/{ack['_id']}", json={"title": "y"}, headers=if_match("stale")
    )
    assert response.status_code == 412
    response = await client.put(
        f"/books/{ack['_id']}",
        json={"_id": "000000000000000000000000", "title": "y"},
        headers=if_match(ack["_etag"]),
    )
    assert response.status_code == 422


# -- DELETE ----------------------------------------------------------------


async def test_delete_item(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune"})
    response = await client.delete(f"/books/{ack['_id']}")
    assert response.status_code == 428
    response = await client.delete(f"/books/{ack['_id']}", headers=if_match("stale"))
    assert response.status_code == 412
    response = await client.delete(f"/books/{ack['_id']}", headers=if_match(ack["_etag"]))
    assert response.status_code == 204
    assert await response.get_data() == b""
    response = await client.get(f"/books/{ack['_id']}")
    assert response.status_code == 404
    response = await client.delete(f"/books/{ack['_id']}", headers=if_match(ack["_etag"]))
    assert response.status_code == 404


async def test_delete_whole_resource_where_listed(client: Client) -> None:
    await create(client, "books", {"title": "A"})
    await create(client, "books", {"title": "B"})
    response = await client.delete("/books")
    assert response.status_code == 204
    assert (await (await client.get("/books")).get_json())["_meta"]["total"] == 0


# -- concurrency -----------------------------------------------------------

#: Rounds of two writers racing: a write whose condition is not checked inside
#: the write itself loses only when the two overlap, so one round proves little.
CONCURRENT_ROUNDS = 50


@pytest.mark.engine_gap(ferretdb="write_atomicity")
async def test_concurrent_patches_with_one_etag_have_one_winner(
    two_instances: tuple[Quart, Quart],
) -> None:
    first, second = [await editor_client(app) for app in two_instances]
    ack = await create(first, "books", {"title": "Dune", "year": 1})
    for round_ in range(CONCURRENT_ROUNDS):
        current = await fetch(first, "books", ack["_id"])
        condition = if_match(current["_etag"])
        responses = await asyncio.gather(
            first.patch(f"/books/{ack['_id']}", json={"year": 100 + round_}, headers=condition),
            second.patch(f"/books/{ack['_id']}", json={"year": 200 + round_}, headers=condition),
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 412], statuses
        winner = next(r for r in responses if r.status_code == 200)
        won = await winner.get_json()
        stored = await fetch(second, "books", ack["_id"])
        assert stored["_etag"] == won["_etag"]
        expected_year = 100 + round_ if winner is responses[0] else 200 + round_
        assert stored["year"] == expected_year


async def test_concurrent_deletes_with_one_etag_have_one_winner(
    two_instances: tuple[Quart, Quart],
) -> None:
    first, second = [await editor_client(app) for app in two_instances]
    ack = await create(first, "books", {"title": "Dune"})
    responses = await asyncio.gather(
        first.delete(f"/books/{ack['_id']}", headers=if_match(ack["_etag"])),
        second.delete(f"/books/{ack['_id']}", headers=if_match(ack["_etag"])),
    )
    assert sorted(response.status_code for response in responses) == [204, 404]


@pytest.mark.engine_gap(ferretdb="write_atomicity")
async def test_the_etag_check_is_in_the_write_itself(
    two_instances: tuple[Quart, Quart], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both writers read the same version before either writes: only the
    condition inside MongoDB's write can stop the second one. Round after
    round, as a write that checks its condition apart from writing loses only
    when the two writes overlap."""
    first, second = [await editor_client(app) for app in two_instances]
    ack = await create(first, "books", {"title": "Dune", "year": 1})
    barrier = asyncio.Barrier(2)
    armed: set[int] = set()
    for index, app in enumerate(two_instances):
        storage = get_storage(app)

        async def read_then_wait(
            collection: str,
            *args: Any,
            _read: Any = storage.find_one,
            _index: int = index,
            **kwargs: Any,
        ) -> Any:
            document = await _read(collection, *args, **kwargs)
            if collection == "books" and _index in armed:
                armed.discard(_index)  # this round's document read meets the other's
                await barrier.wait()
            return document

        monkeypatch.setattr(storage, "find_one", read_then_wait)
    etag = ack["_etag"]
    for round_ in range(CONCURRENT_ROUNDS):
        armed.update((0, 1))
        responses = await asyncio.wait_for(
            asyncio.gather(
                first.patch(f"/books/{ack['_id']}", json={"year": 2 + round_},
                            headers=if_match(etag)),
                second.patch(f"/books/{ack['_id']}", json={"year": 200 + round_},
                             headers=if_match(etag)),
            ),
            timeout=10,
        )  # fmt: skip
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 412], f"round {round_}: {statuses}"
        winner = next(response for response in responses if response.status_code == 200)
        etag = (await winner.get_json())["_etag"]


async def test_location_uses_https_behind_a_trusted_tls_proxy(
    settings_factory: SettingsFactory,
) -> None:
    app = create_app(settings_factory(trusted_proxies=["127.0.0.0/8"]))
    async with app.test_app():
        client = await editor_client(app)
        response = await client.post(
            "/books",
            json={"title": "x"},
            headers={"X-Forwarded-Proto": "https"},
            scope_base={"client": ("127.0.0.1", 5000)},
        )
        assert response.headers["Location"].startswith("https://")
        untrusted = await client.post(
            "/books",
            json={"title": "y"},
            headers={"X-Forwarded-Proto": "https"},
            scope_base={"client": ("192.0.2.7", 5000)},
        )
        assert untrusted.headers["Location"].startswith("http://")


async def test_an_index_mongodb_refuses_fails_readiness(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory()
    # Duplicates already stored under a field the config then declares unique.
    assert settings.mongodb.uri is not None
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb.uri)
    try:
        await mongo[settings.mongodb.database]["books"].insert_many(
            [{"title": "a", "year": 1}, {"title": "b", "year": 1}]
        )
    finally:
        await mongo.close()
    resources = example_resources()
    resources["books"]["unique"] = ["year"]
    app = create_app(
        settings.model_copy(update={"resources": settings_factory(resources=resources).resources})
    )
    async with app.test_app():
        # Start-up waits 2 s for the indexes, then goes on creating them in the
        # background: a database that takes longer to build (and refuse) one
        # (DocumentDB takes about that) is ready until it answers.
        client = app.test_client()
        for _ in range(300):  # at most about 30 s
            response = await client.get("/readyz")
            if response.status_code != 200:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 503
        body = await response.get_json()
        assert body["_error"]["message"] == "not ready: indexes refused by MongoDB"
        assert body["_error"]["checks"]["indexes"].startswith("books: ")


async def test_documents_another_program_wrote_without_meta_fields_are_read_and_written(
    app: Quart, client: Client
) -> None:
    # As in a collection that existed before Shoal: no _etag, _created or _updated.
    storage = get_storage(app)
    await storage.insert_many("books", [{"title": "Legacy", "year": 1990}, {"title": "Old"}])
    stored = {d["title"]: d["_id"] for d in await storage.find_many("books", {}, limit=10)}
    legacy, old = stored["Legacy"], stored["Old"]

    response = await client.get(f"/books/{legacy}")
    assert response.status_code == 200
    body = await response.get_json()
    etag = body["_etag"]
    assert etag == content_etag(app, {"title": "Legacy", "year": 1990})  # from its content
    assert response.headers["ETag"] == f'"{etag}"'
    page = await (await client.get("/books")).get_json()
    listed = {item["_id"]: item["_etag"] for item in page["_items"]}
    assert listed[str(legacy)] == etag

    stale = await client.patch(f"/books/{legacy}", json={"year": 1}, headers=if_match("0" * 40))
    assert stale.status_code == 412
    patched = await client.patch(f"/books/{legacy}", json={"year": 1991}, headers=if_match(etag))
    assert patched.status_code == 200, await patched.get_json()
    assert (await fetch(client, "books", str(legacy)))["year"] == 1991
    # The write stored the meta fields; the old ETag no longer matches.
    again = await client.patch(f"/books/{legacy}", json={"year": 2}, headers=if_match(etag))
    assert again.status_code == 412

    old_etag = (await fetch(client, "books", str(old)))["_etag"]
    assert (await client.delete(f"/books/{old}", headers=if_match("0" * 40))).status_code == 412
    assert (await client.delete(f"/books/{old}", headers=if_match(old_etag))).status_code == 204
    assert (await client.get(f"/books/{old}")).status_code == 404
