"""An insert that meets itself: the link fails after the server wrote the
documents, the driver sends the insert again, and an engine without retryable
writes answers a duplicate key. When the caller made every id at random just
before (``new_ids``), Shoal answers it as done if every document is stored
exactly as it was sent, and as a conflict otherwise; a client's own ids are
always a conflict."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import ObjectId

from shoal.config import MongoDBSettings
from shoal.errors import Conflict
from shoal.storage import Storage


@pytest.fixture
async def storage(mongodb_uri: str) -> AsyncIterator[Storage]:
    settings = MongoDBSettings(uri=mongodb_uri, database=f"inserts_{ObjectId()}")
    storage = Storage(settings)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.client.drop_database(settings.database)
        await storage.close()


def _book(title: str) -> dict[str, Any]:
    # Microseconds and an aware date, as Shoal's own documents carry: the
    # comparison is with what the database keeps of them (milliseconds).
    moment = dt.datetime(2026, 12, 7, 10, 30, 15, 123456, tzinfo=dt.UTC)
    return {"_id": ObjectId(), "title": title, "_created": moment, "tags": ["a", "b"]}


@pytest.mark.parametrize("count", [1, 3])
async def test_an_insert_sent_again_after_it_was_written_is_done(
    storage: Storage, count: int
) -> None:
    books = [_book(f"Dune {n}") for n in range(count)]
    await storage.insert_many("books", [dict(book) for book in books], new_ids=True)
    # The retry: the same documents, the same ids.
    await storage.insert_many("books", [dict(book) for book in books], new_ids=True)
    assert await storage.count("books", {}, exact=True) == count


@pytest.mark.parametrize("count", [1, 3])
async def test_the_same_document_under_a_clients_id_is_a_conflict(
    storage: Storage, count: int
) -> None:
    books = [_book(f"Dune {n}") for n in range(count)]
    await storage.insert_many("books", [dict(book) for book in books])
    with pytest.raises(Conflict):
        await storage.insert_many("books", [dict(book) for book in books])
    assert await storage.count("books", {}, exact=True) == count


@pytest.mark.parametrize("count", [1, 3])
async def test_another_document_with_a_taken_id_is_a_conflict(storage: Storage, count: int) -> None:
    books = [_book(f"Dune {n}") for n in range(count)]
    await storage.insert_many("books", [dict(book) for book in books])
    changed = [dict(book) for book in books]
    changed[-1]["title"] = "Not Dune"
    with pytest.raises(Conflict):
        await storage.insert_many("books", changed, new_ids=True)
    stored = await storage.find_one("books", {"_id": books[-1]["_id"]})
    assert stored is not None
    assert stored["title"] == books[-1]["title"]
    assert await storage.count("books", {}, exact=True) == count
