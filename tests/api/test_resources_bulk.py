"""Writes by filter, over HTTP: ``PATCH`` and ``DELETE /<resource>?where=...``,
bounded by ``max_affected``, owner rules, schema, counts and the cache."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import ConfigError
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, editor_client, token_for
from tests.utils.settings import example_resources


def bulk_resources(**books: Any) -> dict[str, Any]:
    resources = example_resources()
    resources["books"].update(
        {
            "resource_methods": ["GET", "POST", "PATCH", "DELETE"],
            "bulk_writes": True,
            "max_affected": 5,
            "cache_ttl": 60,
            **books,
        }
    )
    resources["notes"] = {
        "schema": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "done": {"type": "boolean"}},
        },
        "resource_methods": ["GET", "POST", "PATCH", "DELETE"],
        "allowed_roles": ["editor"],
        "auth_field": "owner",
        "bulk_writes": True,
    }
    return resources


@pytest.fixture
async def app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    application = create_app(settings_factory(resources=bulk_resources()))
    async with application.test_app():
        yield application


def where(filter: dict[str, Any]) -> str:
    return "where=" + json.dumps(filter)


async def _books(client: Client, years: list[int]) -> None:
    books = [{"title": f"book {year}", "year": year} for year in years]
    assert (await client.post("/books", json=books)).status_code == 201


async def _years(client: Client) -> list[int]:
    body = await (await client.get("/books?sort=year&max_results=50")).get_json()
    return [item["year"] for item in body["_items"]]


async def test_patch_by_filter_changes_every_match_and_counts(app: Quart) -> None:
    editor = await editor_client(app)
    await _books(editor, [2001, 2002, 2003, 2004])
    before = await (await editor.get("/books?sort=year")).get_json()
    response = await editor.patch(
        "/books?" + where({"year": {"$gte": 2003}}), json={"title": "recent"}
    )
    assert response.status_code == 200, await response.get_data()
    assert await response.get_json() == {"_status": "OK", "_matched": 2, "_modified": 2}
    body = await (await editor.get("/books?sort=year")).get_json()
    titles = [item["title"] for item in body["_items"]]
    assert titles == ["book 2001", "book 2002", "recent", "recent"]
    changed = [
        old["_etag"] != new["_etag"]
        for old, new in zip(before["_items"], body["_items"], strict=True)
    ]
    assert changed == [False, False, True, True]


async def test_a_patch_that_would_break_one_document_changes_none(app: Quart) -> None:
    editor = await editor_client(app)
    await _books(editor, [2001, 2002])
    response = await editor.patch("/books?" + where({}), json={"year": "not a year"})
    assert response.status_code == 422
    issues = (await response.get_json())["_issues"]
    assert len(issues) == 2
    assert all("year" in problems for problems in issues.values())
    assert await _years(editor) == [2001, 2002]


async def test_more_matches_than_max_affected_write_nothing(app: Quart) -> None:
    editor = await editor_client(app)
    await _books(editor, list(range(2000, 2006)))  # six; max_affected is five
    patched = await editor.patch("/books?" + where({}), json={"title": "all"})
    assert patched.status_code == 409
    assert "max_affected" in (await patched.get_json())["_error"]["message"]
    deleted = await editor.delete("/books?" + where({"year": {"$gte": 2000}}))
    assert deleted.status_code == 409
    assert await _years(editor) == list(range(2000, 2006))


async def test_delete_by_filter_deletes_only_the_matches(app: Quart) -> None:
    editor = await editor_client(app)
    await _books(editor, [2001, 2002, 2003])
    response = await editor.delete("/books?" + where({"year": {"$lt": 2003}}))
    assert response.status_code == 200
    assert await response.get_json() == {"_status": "OK", "_matched": 2, "_deleted": 2}
    assert await _years(editor) == [2003]
    nothing = await editor.delete("/books?" + where({"year": 1900}))
    assert await nothing.get_json() == {"_status": "OK", "_matched": 0, "_deleted": 0}


async def test_owners_change_and_delete_only_their_own(app: Quart) -> None:
    alice = client_with(app, bearer(await token_for(app, "editor", name="alice")))
    bob = client_with(app, bearer(await token_for(app, "editor", name="bob")))
    for client in (alice, bob):
        assert (await client.post("/notes", json=[{"text": "a"}, {"text": "b"}])).status_code == 201
    patched = await alice.patch("/notes?" + where({}), json={"done": True})
    assert (await patched.get_json())["_matched"] == 2
    deleted = await bob.delete("/notes?" + where({"text": "a"}))
    assert (await deleted.get_json())["_deleted"] == 1
    alices = await (await alice.get("/notes")).get_json()
    bobs = await (await bob.get("/notes")).get_json()
    assert [note.get("done") for note in alices["_items"]] == [True, True]
    assert [note["text"] for note in bobs["_items"]] == ["b"]
    assert all("done" not in note for note in bobs["_items"])


async def test_writes_by_filter_invalidate_the_cache(app: Quart) -> None:
    editor = await editor_client(app)
    await _books(editor, [2001])
    reader = app.test_client()
    await reader.get("/books")
    assert (await reader.get("/books")).headers["X-Cache"] == "HIT"
    await editor.patch("/books?" + where({}), json={"title": "changed"})
    fresh = await reader.get("/books")
    assert fresh.headers["X-Cache"] == "MISS"
    assert (await fresh.get_json())["_items"][0]["title"] == "changed"


async def test_a_patch_without_a_filter_is_refused(app: Quart) -> None:
    editor = await editor_client(app)
    response = await editor.patch("/books", json={"title": "x"})
    assert response.status_code == 400
    assert "where" in (await response.get_json())["_error"]["message"]


async def test_bad_filters_and_bodies_are_400_or_422(app: Quart) -> None:
    editor = await editor_client(app)
    assert (await editor.patch("/books?where={nope", json={"title": "x"})).status_code == 400
    assert (await editor.delete('/books?where={"$where": "1"}')).status_code == 400
    response = await editor.patch("/books?" + where({}), json={"_id": "x"})
    assert response.status_code == 422


async def test_without_bulk_writes_a_filtered_delete_is_refused_not_widened(
    settings_factory: SettingsFactory,
) -> None:
    resources = example_resources()
    resources["books"]["resource_methods"] = ["GET", "POST", "DELETE"]
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        editor = await editor_client(app)
        await _books(editor, [2001, 2002])
        response = await editor.delete("/books?" + where({"year": 2001}))
        assert response.status_code == 400
        assert "bulk_writes" in (await response.get_json())["_error"]["message"]
        assert await _years(editor) == [2001, 2002]
        assert (await editor.patch("/books?" + where({}), json={})).status_code == 405


def test_patch_on_a_collection_needs_bulk_writes(settings_factory: SettingsFactory) -> None:
    resources = example_resources()
    resources["books"]["resource_methods"] = ["GET", "PATCH"]
    with pytest.raises(ConfigError, match="bulk_writes"):
        settings_factory(resources=resources)
