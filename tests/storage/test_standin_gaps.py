"""Where the MongoDB stand-in (nx-27017) differs from MongoDB.

Each test asserts MongoDB's documented behaviour. On the stand-in each is a
strict xfail (the ``real_mongodb`` marker), so an upgrade that fixes a gap
turns its test into an unexpected pass and fails the run: then drop the marker
here and wherever else the gap was marked. On a real MongoDB they run as
ordinary tests; on FerretDB too, except where FerretDB lacks the same thing
(``engine_gap``). A gap both engines have is pinned once, in
``test_ferretdb_gaps.py``, with both marks.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from pymongo import IndexModel, ReturnDocument

from tests.storage.conftest import Database


async def test_plain_round_trip_works(db: Database) -> None:
    """The baseline the gaps are measured against: this must pass everywhere."""
    moment = datetime(2026, 11, 24, 10, 0, 0, 123000, tzinfo=UTC)
    result = await db.things.insert_one({"when": moment, "n": 1})
    stored = await db.things.find_one({"_id": result.inserted_id})
    assert stored is not None
    assert stored["when"] == moment


@pytest.mark.real_mongodb(reason="a datetime inside $set is stored as a string")
async def test_datetime_in_set_stays_a_date(db: Database) -> None:
    result = await db.things.insert_one({"n": 1})
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    await db.things.update_one({"_id": result.inserted_id}, {"$set": {"when": moment}})
    stored = await db.things.find_one({"_id": result.inserted_id})
    assert stored is not None
    assert stored["when"] == moment


@pytest.mark.real_mongodb(reason="find_one_and_replace returns _id as a string")
async def test_find_one_and_replace_returns_an_object_id(db: Database) -> None:
    result = await db.things.insert_one({"n": 1})
    after = await db.things.find_one_and_replace(
        {"_id": result.inserted_id}, {"n": 2}, return_document=ReturnDocument.AFTER
    )
    assert after is not None
    assert after["_id"] == result.inserted_id
    assert isinstance(after["_id"], ObjectId)


@pytest.mark.real_mongodb(reason="an upsert by _id inserts a new ObjectId, not the filter's _id")
async def test_an_upsert_takes_the_id_from_its_filter(db: Database) -> None:
    result = await db.things.replace_one({"_id": "dune"}, {"n": 1}, upsert=True)
    assert result.upserted_id == "dune"
    assert await db.things.find_one({"_id": "dune"}) == {"_id": "dune", "n": 1}


@pytest.mark.real_mongodb(reason="$regex does not match inside arrays")
async def test_regex_matches_array_elements(db: Database) -> None:
    await db.things.insert_one({"tags": ["alpha", "beta"]})
    assert await db.things.count_documents({"tags": {"$regex": "^al"}}) == 1


@pytest.mark.real_mongodb(
    reason="equality on an ObjectId in a field other than _id matches nothing"
)
async def test_an_object_id_reference_matches_by_equality(db: Database) -> None:
    author = ObjectId()
    await db.books.insert_many([{"author": author}, {"author": ObjectId()}])
    assert len(await db.books.find({"author": author}).to_list(None)) == 1


@pytest.mark.real_mongodb(reason="count_documents with an ObjectId in its filter counts nothing")
async def test_count_documents_matches_object_ids(db: Database) -> None:
    result = await db.books.insert_one({"title": "Dune"})
    assert await db.books.count_documents({"_id": result.inserted_id}) == 1


@pytest.mark.real_mongodb(reason="a boolean inside $set is stored as 1")
async def test_a_boolean_in_set_stays_a_boolean(db: Database) -> None:
    result = await db.things.insert_one({"n": 1})
    await db.things.update_one({"_id": result.inserted_id}, {"$set": {"done": True}})
    stored = await db.things.find_one({"_id": result.inserted_id})
    assert stored is not None
    assert stored["done"] is True


@pytest.mark.real_mongodb(reason="distinct on _id fails")
async def test_distinct_lists_ids(db: Database) -> None:
    await db.things.insert_many([{"_id": "a"}, {"_id": "b"}])
    assert sorted(await db.things.distinct("_id")) == ["a", "b"]


@pytest.mark.real_mongodb(reason="index names are replaced by idx_<collection>_<fields>")
async def test_index_names_are_kept(db: Database) -> None:
    await db.things.create_indexes([IndexModel([("a", 1)], name="by_a")])
    assert "by_a" in await db.things.index_information()


@pytest.mark.real_mongodb(reason="index key directions are all stored as ascending")
async def test_index_directions_are_kept(db: Database) -> None:
    await db.things.create_indexes([IndexModel([("a", 1), ("b", -1)])])
    keys = [index["key"] for index in (await db.things.index_information()).values()]
    assert [("a", 1), ("b", -1)] in keys


# -- change streams -------------------------------------------------------------


async def _events(db: Database, count: int, *writes: Any) -> list[dict[str, Any]]:
    """The first ``count`` change events of ``db.things`` after ``writes`` run."""
    stream = await db.things.watch(full_document="updateLookup", max_await_time_ms=100)
    try:
        for write in writes:
            await write()
        events: list[dict[str, Any]] = []
        for _ in range(200):  # bounded: at most 200 polls
            event = await stream.try_next()
            if event is not None:
                events.append(event)
                if len(events) == count:
                    return events
        raise AssertionError(f"only {len(events)} of {count} change events")
    finally:
        await stream.close()


@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_change_streams_report_inserts_with_the_document(db: Database) -> None:
    """The baseline: a change stream works on the stand-in."""
    [event] = await _events(db, 1, lambda: db.things.insert_one({"n": 1}))
    assert event["operationType"] == "insert"
    assert event["fullDocument"]["n"] == 1
    assert isinstance(event["_id"], dict)


@pytest.mark.real_mongodb(reason="a change event's fullDocument carries _id in storage form")
@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_full_document_keeps_its_object_id(db: Database) -> None:
    oid = ObjectId()
    [event] = await _events(db, 1, lambda: db.things.insert_one({"_id": oid}))
    assert event["fullDocument"]["_id"] == oid


@pytest.mark.real_mongodb(reason="a change event's fullDocument carries dates in storage form")
@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_full_document_keeps_its_dates(db: Database) -> None:
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    [event] = await _events(db, 1, lambda: db.things.insert_one({"when": moment}))
    assert event["fullDocument"]["when"] == moment


@pytest.mark.real_mongodb(reason="replace_one is reported as an update")
@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_a_replace_is_reported_as_a_replace(db: Database) -> None:
    oid = ObjectId()
    events = await _events(
        db,
        2,
        lambda: db.things.insert_one({"_id": oid, "n": 1}),
        lambda: db.things.replace_one({"_id": oid}, {"n": 2}),
    )
    assert [event["operationType"] for event in events] == ["insert", "replace"]


@pytest.mark.real_mongodb(reason="delete events carry a fullDocument")
@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_a_delete_event_has_no_document(db: Database) -> None:
    oid = ObjectId()
    events = await _events(
        db,
        2,
        lambda: db.things.insert_one({"_id": oid}),
        lambda: db.things.delete_one({"_id": oid}),
    )
    assert events[1]["operationType"] == "delete"
    assert "fullDocument" not in events[1]
    assert events[1]["documentKey"] == {"_id": oid}


@pytest.mark.real_mongodb(reason="collection names with a hyphen are refused")
async def test_a_collection_name_may_have_a_hyphen(db: Database) -> None:
    # The Data API docs' examples write to "data-types".
    await db["data-types"].insert_one({"n": 1})
    assert await db["data-types"].count_documents({}) == 1


# -- transactions and writes -------------------------------------------------------


@pytest.mark.real_mongodb(reason="a filter with $ne on a missing field matches nothing in writes")
async def test_ne_matches_a_missing_field_in_writes(db: Database) -> None:
    result = await db.things.insert_one({"n": 1})
    replaced = await db.things.replace_one(
        {"_id": result.inserted_id, "hidden": {"$ne": True}}, {"n": 2}
    )
    assert replaced.matched_count == 1


@pytest.mark.engine_gap(ferretdb="transactions")
@pytest.mark.real_mongodb(reason="two transactions open at once break each other")
async def test_two_transactions_at_once_both_commit(db: Database) -> None:
    await db.things.insert_many([{"_id": 1}, {"_id": 2}])

    async def write(key: int) -> None:
        async with db.client.start_session() as session:

            async def work(session: Any) -> None:
                await db.things.replace_one({"_id": key}, {"v": key}, session=session)
                await asyncio.sleep(0.05)  # the other transaction opens meanwhile
                await db.other.insert_one({"k": key}, session=session)

            await session.with_transaction(work)

    await asyncio.gather(write(1), write(2))
    assert await db.other.count_documents({}) == 2


@pytest.mark.engine_gap(ferretdb="facet")
@pytest.mark.real_mongodb(reason="$facet after $unwind fails (a unique constraint of its own)")
async def test_facet_after_unwind(db: Database) -> None:
    await db.things.insert_many([{"tags": ["x", "y"]}, {"tags": ["x"]}])
    pipeline: list[dict[str, Any]] = [
        {"$unwind": "$tags"},
        {"$group": {"_id": "$tags", "n": {"$sum": 1}}},
        {"$sort": {"_id": 1}},
        {"$facet": {"items": [{"$skip": 0}, {"$limit": 10}], "total": [{"$count": "n"}]}},
    ]
    (result,) = await (await db.things.aggregate(pipeline)).to_list(None)
    assert result["items"] == [{"_id": "x", "n": 2}, {"_id": "y", "n": 1}]
    assert result["total"] == [{"n": 2}]


# -- GridFS (media fields; see docs/decisions/0028-media-multipart.md) ----------


async def _stored_file(db: Database, size: int) -> ObjectId:
    from gridfs import AsyncGridFSBucket

    bucket = AsyncGridFSBucket(db)
    upload = bucket.open_upload_stream("f")
    for start in range(0, size, 1 << 20):
        await upload.write(b"x" * min(1 << 20, size - start))
    await upload.close()
    file_id: ObjectId = upload._id
    return file_id


@pytest.mark.real_mongodb(reason="GridFS's collections (fs.files, fs.chunks) cannot be counted")
async def test_gridfs_collections_can_be_counted(db: Database) -> None:
    await _stored_file(db, 300_000)
    assert await db["fs.files"].count_documents({}) == 1
    assert await db["fs.chunks"].count_documents({}) == 2


@pytest.mark.real_mongodb(reason="fs.chunks lists a chunk only by its file's id")
async def test_gridfs_chunks_are_listed_by_any_filter(db: Database) -> None:
    await _stored_file(db, 300_000)
    assert len(await db["fs.chunks"].find({}, {"n": 1}).to_list()) == 2


@pytest.mark.real_mongodb(
    reason="a GridFS file's chunks come in one reply, which PyMongo refuses past 48 MB"
)
async def test_a_gridfs_file_over_48_mb_reads_back(db: Database) -> None:
    file_id = await _stored_file(db, 50_000_000)
    chunks = db["fs.chunks"].find({"files_id": file_id}, {"n": 1}, batch_size=4)
    assert len(await chunks.to_list()) == 50_000_000 // (255 * 1024) + 1
