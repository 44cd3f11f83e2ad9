"""``Prefer`` (RFC 7240), over HTTP: what writes answer, how lists count, and
``Preference-Applied`` naming what was honoured."""

from __future__ import annotations

import json

from quart import Quart

from tests.utils.auth import editor_client


async def test_return_representation_answers_with_the_stored_document(app: Quart) -> None:
    editor = await editor_client(app)
    prefer = {"Prefer": "return=representation"}
    created = await editor.post("/books", json={"title": "Dune", "year": 1965}, headers=prefer)
    assert created.status_code == 201
    assert created.headers["Preference-Applied"] == "return=representation"
    body = await created.get_json()
    stored = await (await editor.get(f"/books/{body['_id']}")).get_json()
    assert body == {**stored, "_status": "OK"}
    assert created.headers["ETag"] == f'"{stored["_etag"]}"'
    patched = await editor.patch(
        f"/books/{body['_id']}",
        json={"year": 1966},
        headers={**prefer, "If-Match": body["_etag"]},
    )
    assert (await patched.get_json())["year"] == 1966
    assert patched.headers["Preference-Applied"] == "return=representation"


async def test_return_minimal_answers_204_with_the_headers(app: Quart) -> None:
    editor = await editor_client(app)
    minimal = {"Prefer": "return=minimal"}
    created = await editor.post("/books", json={"title": "Dune"}, headers=minimal)
    assert created.status_code == 204
    assert await created.get_data() == b""
    assert created.headers["Preference-Applied"] == "return=minimal"
    location = created.headers["Location"]
    etag = created.headers["ETag"]
    stored = await editor.get("/" + location.split("/", 3)[3])
    assert stored.headers["ETag"] == etag
    replaced = await editor.put(
        "/" + location.split("/", 3)[3],
        json={"title": "Dune Messiah"},
        headers={**minimal, "If-Match": etag.strip('"')},
    )
    assert replaced.status_code == 204
    assert replaced.headers["ETag"] != etag


async def test_bulk_inserts_represent_every_document(app: Quart) -> None:
    editor = await editor_client(app)
    response = await editor.post(
        "/books",
        json=[{"title": "a"}, {"title": "b"}],
        headers={"Prefer": "return=representation"},
    )
    items = (await response.get_json())["_items"]
    assert [item["title"] for item in items] == ["a", "b"]
    assert all(item["_links"]["self"]["href"].startswith("books/") for item in items)


async def test_count_preferences_choose_how_a_list_counts(app: Quart) -> None:
    editor = await editor_client(app)
    assert (await editor.post("/books", json=[{"title": "a"}, {"title": "b"}])).status_code == 201
    client = app.test_client()
    none = await client.get("/books", headers={"Prefer": "count=none"})
    assert "total" not in (await none.get_json())["_meta"]
    assert "X-Total-Count" not in none.headers
    assert none.headers["Preference-Applied"] == "count=none"
    exact = await client.get("/books", headers={"Prefer": "count=exact"})
    assert (await exact.get_json())["_meta"]["total"] == 2
    assert exact.headers["Preference-Applied"] == "count=exact"
    estimated = await client.get("/books", headers={"Prefer": "count=estimated"})
    assert (await estimated.get_json())["_meta"]["total"] == 2
    assert estimated.headers["Preference-Applied"] == "count=estimated"
    # A filtered list cannot be estimated: it is counted exactly, and says nothing.
    filtered = await client.get(
        "/books",
        query_string={"where": json.dumps({"title": "a"})},
        headers={"Prefer": "count=estimated"},
    )
    assert (await filtered.get_json())["_meta"]["total"] == 1
    assert "Preference-Applied" not in filtered.headers
    assert "Prefer" in none.headers["Vary"]


async def test_unknown_preferences_are_ignored(app: Quart) -> None:
    editor = await editor_client(app)
    response = await editor.post(
        "/books", json={"title": "x"}, headers={"Prefer": "respond-async, wait=5, return=odd"}
    )
    assert response.status_code == 201
    assert "Preference-Applied" not in response.headers
    assert "_status" in await response.get_json()
