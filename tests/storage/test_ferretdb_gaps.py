"""Where FerretDB (v1.24.2, SQLite backend) differs from MongoDB.

One test per gap in ``tests/utils/gaps.py``, each asserting MongoDB's documented
behaviour. On FerretDB each is a strict xfail (``engine_gap``), so a FerretDB
release that closes a gap turns its test into an unexpected pass and fails the
run: then drop the gap from the table, this test's mark and every other mark
naming it. They run as ordinary tests on a real MongoDB, and on the stand-in
except where it lacks the same thing: such a test also carries ``real_mongodb``
and pins the stand-in's gap too (``test_standin_gaps.py`` has the stand-in's
other gaps).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError, OperationFailure

from tests.storage.conftest import Database
from tests.utils.gaps import FERRETDB_GAPS


def test_each_gap_is_pinned_here_once() -> None:
    pins = [
        marker.kwargs["ferretdb"]
        for name, function in globals().items()
        if name.startswith("test_") and inspect.isfunction(function)
        for marker in getattr(function, "pytestmark", [])
        if marker.name == "engine_gap" and "ferretdb" in marker.kwargs
    ]
    assert sorted(pins) == sorted(FERRETDB_GAPS)


# -- indexes ------------------------------------------------------------------


@pytest.mark.engine_gap(ferretdb="partial_indexes")
async def test_a_partial_unique_index_constrains_only_matching_documents(db: Database) -> None:
    await db.books.create_indexes(
        [
            IndexModel(
                [("isbn", 1)],
                unique=True,
                name="unique_isbn",
                partialFilterExpression={"isbn": {"$exists": True}},
            ),
            IndexModel([("author", 1)], name="by_author"),
        ]
    )
    await db.books.insert_many([{"title": "a"}, {"title": "b"}, {"isbn": "x"}])
    with pytest.raises(DuplicateKeyError):
        await db.books.insert_one({"isbn": "x"})
    assert len(await db.books.index_information()) == 3  # with _id's


@pytest.mark.real_mongodb(reason="a unique index lets many documents lack the field")
@pytest.mark.engine_gap(ferretdb="unique_missing_field")
async def test_a_unique_index_counts_a_missing_field_as_null(db: Database) -> None:
    await db.things.create_indexes([IndexModel([("code", 1)], unique=True)])
    await db.things.insert_one({"n": 1})
    with pytest.raises(DuplicateKeyError):
        await db.things.insert_one({"n": 2})


@pytest.mark.real_mongodb(reason="duplicate-key errors carry no keyValue")
@pytest.mark.engine_gap(ferretdb="duplicate_key_details", documentdb="duplicate_key_details")
async def test_a_duplicate_key_error_carries_the_key(db: Database) -> None:
    await db.things.create_indexes([IndexModel([("code", 1)], unique=True)])
    await db.things.insert_one({"code": "a"})
    with pytest.raises(DuplicateKeyError) as raised:
        await db.things.insert_one({"code": "a"})
    assert raised.value.details is not None
    assert raised.value.details["keyValue"] == {"code": "a"}
    assert raised.value.details["keyPattern"] == {"code": 1}


@pytest.mark.real_mongodb(reason="a unique index over stored duplicates fails with no error code")
@pytest.mark.engine_gap(ferretdb="unique_index_over_duplicates")
async def test_a_unique_index_over_stored_duplicates_is_refused_as_duplicate_keys(
    db: Database,
) -> None:
    await db.things.insert_many([{"year": 1}, {"year": 1}])
    with pytest.raises(OperationFailure) as raised:
        await db.things.create_indexes([IndexModel([("year", 1)], unique=True)])
    assert raised.value.code == 11000


@pytest.mark.engine_gap(ferretdb="recreate_indexes")
async def test_asking_again_for_existing_indexes_changes_nothing(db: Database) -> None:
    """What every restart of Shoal does: create the same indexes again."""
    models = [IndexModel([("a", 1)], name="by_a"), IndexModel([("b", 1)], name="by_b")]
    await db.things.create_indexes(models)
    await db.things.create_indexes(models)
    assert len(await db.things.index_information()) == 3  # with _id's


# -- writes -------------------------------------------------------------------

ROUNDS = 20


@pytest.mark.engine_gap(ferretdb="write_atomicity")
async def test_a_conditional_write_matches_one_version_once(db: Database) -> None:
    """Two writers holding one version (Shoal's ``{_id, _etag}`` condition):
    MongoDB checks the filter inside the write, so exactly one matches; and
    concurrent increments of one document all count."""
    await db.things.insert_one({"_id": 1, "hits": 0})
    doubles: list[str] = []
    for round_ in range(ROUNDS):
        version = f"v{round_}"
        await db.things.replace_one({"_id": 1}, {"version": version})
        condition = {"_id": 1, "version": version}
        replaced = await asyncio.gather(
            db.things.replace_one(condition, {"version": "a"}),
            db.things.replace_one(condition, {"version": "b"}),
        )
        if sum(result.matched_count for result in replaced) != 1:
            doubles.append(f"replace_one in round {round_}")
        await db.things.replace_one({"_id": 1}, {"version": version})
        found = await asyncio.gather(
            db.things.find_one_and_update(condition, {"$set": {"version": "a"}}),
            db.things.find_one_and_update(condition, {"$set": {"version": "b"}}),
        )
        if sum(document is not None for document in found) != 1:
            doubles.append(f"find_one_and_update in round {round_}")
    assert doubles == []
    await db.things.replace_one({"_id": 1}, {"hits": 0})
    await asyncio.gather(
        *(db.things.update_one({"_id": 1}, {"$inc": {"hits": 1}}) for _ in range(ROUNDS))
    )
    assert await db.things.find_one({"_id": 1}) == {"_id": 1, "hits": ROUNDS}


# -- types --------------------------------------------------------------------


@pytest.mark.real_mongodb(reason="Decimal128 values are refused")
@pytest.mark.engine_gap(ferretdb="decimal128")
async def test_a_decimal128_round_trips(db: Database) -> None:
    result = await db.things.insert_one({"price": Decimal128("1.10")})
    stored = await db.things.find_one({"_id": result.inserted_id})
    assert stored is not None
    assert stored["price"] == Decimal128("1.10")


# -- aggregation --------------------------------------------------------------


@pytest.mark.real_mongodb(reason="$lookup followed by a dotted projection returns nothing")
@pytest.mark.engine_gap(ferretdb="lookup")
async def test_lookup_joins_another_collection(db: Database) -> None:
    author = await db.authors.insert_one({"name": "Herbert"})
    await db.books.insert_one({"title": "Dune", "author_id": author.inserted_id})
    pipeline: list[dict[str, Any]] = [
        {"$lookup": {"from": "authors", "localField": "author_id",
                     "foreignField": "_id", "as": "author"}},
        {"$project": {"_id": 0, "title": 1, "author.name": 1}},
    ]  # fmt: skip
    rows = await (await db.books.aggregate(pipeline)).to_list(None)
    assert rows == [{"title": "Dune", "author": [{"name": "Herbert"}]}]


@pytest.mark.real_mongodb(reason="$facet output carries a stray _id")
@pytest.mark.engine_gap(ferretdb="facet")
async def test_facet_runs_its_pipelines_on_the_same_input(db: Database) -> None:
    await db.things.insert_many([{"n": 1}, {"n": 2}])
    pipeline: list[dict[str, Any]] = [
        {"$facet": {"total": [{"$count": "n"}], "top": [{"$sort": {"n": -1}}, {"$limit": 1},
                                                        {"$project": {"_id": 0}}]}}
    ]  # fmt: skip
    rows = await (await db.things.aggregate(pipeline)).to_list(None)
    assert rows == [{"total": [{"n": 2}], "top": [{"n": 2}]}]


@pytest.mark.engine_gap(ferretdb="union_with")
async def test_union_with_appends_another_collection(db: Database) -> None:
    await db.things.insert_one({"_id": 1, "k": 1})
    await db.others.insert_one({"_id": 2, "title": "Dune"})
    pipeline: list[dict[str, Any]] = [{"$unionWith": {"coll": "others"}}]
    rows = await (await db.things.aggregate(pipeline)).to_list(None)
    assert rows == [{"_id": 1, "k": 1}, {"_id": 2, "title": "Dune"}]


@pytest.mark.engine_gap(ferretdb="literal")
async def test_literal_keeps_a_dollar_string_as_it_is(db: Database) -> None:
    await db.things.insert_one({"_id": 1, "salary": 5})
    pipeline: list[dict[str, Any]] = [{"$project": {"_id": 0, "label": {"$literal": "$salary"}}}]
    rows = await (await db.things.aggregate(pipeline)).to_list(None)
    assert rows == [{"label": "$salary"}]


@pytest.mark.engine_gap(ferretdb="expression_comparisons")
async def test_expr_compares_fields(db: Database) -> None:
    await db.things.insert_many([{"_id": 1, "a": 1, "b": 1}, {"_id": 2, "a": 1, "b": 2}])
    pipeline: list[dict[str, Any]] = [{"$match": {"$expr": {"$eq": ["$a", "$b"]}}}]
    rows = await (await db.things.aggregate(pipeline)).to_list(None)
    assert rows == [{"_id": 1, "a": 1, "b": 1}]


@pytest.mark.engine_gap(ferretdb="group_accumulators")
async def test_group_collects_values_with_push(db: Database) -> None:
    await db.tasks.insert_many([{"status": "done", "text": "a"}, {"status": "done", "text": "b"}])
    pipeline: list[dict[str, Any]] = [
        {"$sort": {"text": 1}},
        {"$group": {"_id": "$status", "texts": {"$push": "$text"}, "last": {"$max": "$text"}}},
    ]
    rows = await (await db.tasks.aggregate(pipeline)).to_list(None)
    assert rows == [{"_id": "done", "texts": ["a", "b"], "last": "b"}]


@pytest.mark.engine_gap(ferretdb="group_several_accumulators")
async def test_group_computes_every_accumulator(db: Database) -> None:
    await db.things.insert_many([{"g": 1, "v": 1}, {"g": 1, "v": 2}])
    pipeline: list[dict[str, Any]] = [
        {"$group": {"_id": "$g", "count": {"$sum": 1}, "total": {"$sum": "$v"}}}
    ]
    rows = await (await db.things.aggregate(pipeline)).to_list(None)
    assert rows == [{"_id": 1, "count": 2, "total": 3}]


# -- change streams and transactions (MongoDB: replica sets only) ---------------


@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_a_change_stream_reports_an_insert(db: Database) -> None:
    oid = ObjectId()
    stream = await db.things.watch(max_await_time_ms=100)
    try:
        await db.things.insert_one({"_id": oid, "n": 1})
        event = None
        for _ in range(200):  # bounded: at most 200 polls
            event = await stream.try_next()
            if event is not None:
                break
    finally:
        await stream.close()
    assert event is not None
    assert event["operationType"] == "insert"
    assert event["documentKey"] == {"_id": oid}


@pytest.mark.engine_gap(ferretdb="transactions")
async def test_a_transaction_commits_or_aborts_as_one(db: Database) -> None:
    await db.things.insert_one({"_id": 1, "v": 1})
    await db.versions.insert_one({"_id": "seed"})
    client = db.client
    async with client.start_session() as session, await session.start_transaction():
        await db.things.update_one({"_id": 1}, {"$inc": {"v": 1}}, session=session)
        await db.versions.insert_one({"_id": "1@2"}, session=session)
    async with client.start_session() as session:
        await session.start_transaction()
        await db.things.update_one({"_id": 1}, {"$inc": {"v": 1}}, session=session)
        await db.versions.insert_one({"_id": "1@3"}, session=session)
        await session.abort_transaction()
    after = await db.things.find_one({"_id": 1}, projection={"_id": 0})
    assert after == {"v": 2}
    versions = await db.versions.find({}, sort=[("_id", 1)]).to_list(None)
    assert [version["_id"] for version in versions] == ["1@2", "seed"]


@pytest.mark.engine_gap(ferretdb="expressions_in_add_fields", documentdb="root_variable")
@pytest.mark.real_mongodb(reason="$$ROOT is the document as stored, not as earlier stages left it")
async def test_root_is_the_document_the_stage_receives(db: Database) -> None:
    """Shoal's Data API drops fields a caller may not read in a first stage;
    later stages must not bring them back through $$ROOT."""
    await db.things.insert_one({"_id": 1, "name": "a", "salary": 5})
    pipeline: list[dict[str, Any]] = [
        {"$project": {"salary": 0}},
        {"$addFields": {"copy": "$$ROOT"}},
    ]
    rows = await (await db.things.aggregate(pipeline)).to_list(None)
    assert rows == [{"_id": 1, "name": "a", "copy": {"_id": 1, "name": "a"}}]
