"""Keyset pagination, over HTTP: ``cursor`` pages follow ``_links.next`` to the
end, in order, once each; cursors are signed and bound to their query."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client
from tests.utils.settings import example_resources


@pytest.fixture
async def app(settings_factory: SettingsFactory) -> Any:
    application = create_app(settings_factory(resources=example_resources()))
    async with application.test_app():
        yield application


async def _seed(app: Quart, years: Sequence[int | None]) -> list[dict[str, Any]]:
    editor = await editor_client(app)
    books = []
    for number, year in enumerate(years):
        book: dict[str, Any] = {"title": f"book {number:03d}"}
        if year is not None:
            book["year"] = year
        books.append(book)
    response = await editor.post("/books", json=books)
    assert response.status_code == 201
    return books


async def _walk(client: Client, first: str, limit: int = 100) -> list[dict[str, Any]]:
    """Every item, following _links.next from ``first`` (at most ``limit`` pages)."""
    items: list[dict[str, Any]] = []
    href: str | None = first
    for _ in range(limit):
        if href is None:
            return items
        response = await client.get(href if href.startswith("/") else "/" + href)
        assert response.status_code == 200, await response.get_data()
        body = await response.get_json()
        assert "page" not in body["_meta"]
        items += body["_items"]
        href = body["_links"].get("next", {}).get("href")
    raise AssertionError("the cursor pages never ended")


async def test_cursor_pages_cover_every_document_once_in_order(app: Quart) -> None:
    years = [2000 + (n * 7) % 5 for n in range(23)]  # many ties on year
    await _seed(app, years)
    items = await _walk(app.test_client(), "/books?cursor=&sort=year,-title&max_results=4")
    assert len(items) == 23
    assert len({item["_id"] for item in items}) == 23
    keys = [(item["year"], item["title"]) for item in items]
    expected = sorted(keys, key=lambda key: (key[0], [-ord(c) for c in key[1]]))
    assert keys == expected


async def test_descending_order_with_missing_values_reaches_them_last(app: Quart) -> None:
    await _seed(app, [2001, None, 2003, None, 2002])
    items = await _walk(app.test_client(), "/books?cursor=&sort=-year&max_results=2")
    assert [item.get("year") for item in items] == [2003, 2002, 2001, None, None]


async def test_ascending_order_starts_with_missing_values(app: Quart) -> None:
    await _seed(app, [2001, None, 2003, None, 2002])
    items = await _walk(app.test_client(), "/books?cursor=&sort=year&max_results=2")
    assert [item.get("year") for item in items] == [None, None, 2001, 2002, 2003]


async def test_without_a_sort_cursors_follow_the_id(app: Quart) -> None:
    await _seed(app, [None] * 7)
    items = await _walk(app.test_client(), "/books?cursor=&max_results=3")
    ids = [item["_id"] for item in items]
    assert ids == sorted(ids)
    assert len(ids) == 7


async def test_a_filter_and_a_count_carry_through_the_pages(app: Quart) -> None:
    await _seed(app, list(range(1990, 2010)))
    where = json.dumps({"year": {"$gte": 2000}})
    first = await app.test_client().get(
        "/books", query_string={"cursor": "", "where": where, "sort": "year", "max_results": "4"}
    )
    body = await first.get_json()
    assert body["_meta"] == {"max_results": 4, "total": 10}
    next_href = body["_links"]["next"]["href"]
    assert parse_qs(urlsplit(next_href).query)["where"] == [where]
    items = await _walk(app.test_client(), next_href)
    assert [item["year"] for item in body["_items"] + items] == list(range(2000, 2010))


async def test_a_forged_or_moved_cursor_is_refused(app: Quart) -> None:
    await _seed(app, list(range(2000, 2010)))
    client = app.test_client()
    first = await (await client.get("/books?cursor=&sort=year&max_results=3")).get_json()
    cursor = parse_qs(urlsplit(first["_links"]["next"]["href"]).query)["cursor"][0]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[10] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for query in (
        {"cursor": forged, "sort": "year", "max_results": "3"},  # tampered
        {"cursor": cursor, "sort": "-year", "max_results": "3"},  # another sort
        {"cursor": cursor, "sort": "year", "where": '{"year": 1}'},  # another filter
        {"cursor": "not a cursor!", "sort": "year"},
    ):
        response = await client.get("/books", query_string=query)
        assert response.status_code == 400, query
        message = (await response.get_json())["_error"]["message"]
        assert "cursor" in message


async def test_page_and_cursor_do_not_mix(app: Quart) -> None:
    response = await app.test_client().get("/books?cursor=&page=2")
    assert response.status_code == 400


async def test_page_numbers_keep_working_for_eve_clients(app: Quart) -> None:
    await _seed(app, list(range(2000, 2012)))
    body = await (await app.test_client().get("/books?max_results=5&page=2")).get_json()
    assert body["_meta"] == {"page": 2, "max_results": 5, "total": 12}
    assert body["_links"]["next"]["href"] == "books?max_results=5&page=3"
