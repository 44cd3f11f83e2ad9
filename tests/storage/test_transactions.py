"""``Storage.atomic``: one transaction where MongoDB runs them, run again when it
meets a write conflict, with nothing of the attempt that lost left behind."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shoal.config import MongoDBSettings
from shoal.storage import Session, Storage


@pytest.fixture
async def storage(mongodb_uri: str) -> AsyncIterator[Storage]:
    opened = Storage(MongoDBSettings(uri=mongodb_uri, database=f"tx_{uuid.uuid4().hex[:10]}"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.client.drop_database(opened.settings.database)
        await opened.close()


@pytest.mark.real_mongodb(reason="transactions are only pretended: a write conflict goes unseen")
@pytest.mark.engine_gap(ferretdb="transactions")
async def test_a_transaction_that_meets_a_write_conflict_runs_again_alone(
    storage: Storage,
) -> None:
    """The second of two transactions writing one document meets a write
    conflict while the first is open: it runs again once the first has
    committed, and only its last run's writes remain."""
    things, marks = storage.collection("things"), storage.collection("marks")
    await things.insert_one({"_id": 1, "v": 0})
    await marks.insert_one({"_id": "seed"})
    first_wrote, second_ran_again = asyncio.Event(), asyncio.Event()
    runs_of_second = 0

    async def first(session: Session) -> None:
        await things.update_one({"_id": 1}, {"$inc": {"v": 1}}, session=session)
        await marks.insert_one({"by": "first"}, session=session)
        first_wrote.set()
        # Open until the second has lost once and runs again.
        await asyncio.wait_for(second_ran_again.wait(), 5)

    async def second(session: Session) -> None:
        nonlocal runs_of_second
        runs_of_second += 1
        if runs_of_second > 1:
            second_ran_again.set()
        await marks.insert_one({"by": "second", "run": runs_of_second}, session=session)
        await things.update_one({"_id": 1}, {"$inc": {"v": 10}}, session=session)

    async def after_first_wrote() -> None:
        await asyncio.wait_for(first_wrote.wait(), 5)
        await storage.atomic(second)

    await asyncio.gather(storage.atomic(first), after_first_wrote())
    assert runs_of_second > 1
    assert await things.find_one({"_id": 1}) == {"_id": 1, "v": 11}
    kept: list[dict[str, Any]] = await marks.find({}, {"_id": 0}).to_list(None)
    assert sorted(kept, key=str) == sorted(
        [{}, {"by": "first"}, {"by": "second", "run": runs_of_second}], key=str
    )
