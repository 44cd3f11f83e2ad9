"""Where DocumentDB (PostgreSQL with the DocumentDB extensions and gateway,
``scripts/documentdb``) differs from MongoDB.

One test per gap in ``DOCUMENTDB_GAPS`` (``tests/utils/gaps.py``), each asserting
MongoDB's documented behaviour. On DocumentDB each is a strict xfail
(``engine_gap``), so a release that closes a gap turns its test into an
unexpected pass and fails the run: then drop the gap from the table, this test's
mark and every other mark naming it. A gap FerretDB has too is pinned once, in
``test_ferretdb_gaps.py``, with both engines in its mark; a gap the stand-in
has too also carries ``real_mongodb``.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from pymongo.errors import OperationFailure

from tests.storage import test_ferretdb_gaps
from tests.storage.conftest import Database
from tests.utils.gaps import DOCUMENTDB_GAPS


def test_each_gap_is_pinned_once() -> None:
    pins = [
        marker.kwargs["documentdb"]
        for module in (globals(), vars(test_ferretdb_gaps))
        for name, function in module.items()
        if name.startswith("test_") and inspect.isfunction(function)
        for marker in getattr(function, "pytestmark", [])
        if marker.name == "engine_gap" and "documentdb" in marker.kwargs
    ]
    assert sorted(pins) == sorted(DOCUMENTDB_GAPS)


# -- what scripts/documentdb configures -----------------------------------------


async def test_the_metadata_count_follows_every_write(db: Database) -> None:
    """MongoDB's count of a whole collection (``estimatedDocumentCount``, from
    the collection's metadata; an unfiltered list's total) is exact on an
    unsharded collection after a clean shutdown, whenever it is asked. By
    default DocumentDB answers it from PostgreSQL's statistics of live rows,
    which trail the writes once any are reported (about a second after the
    first write, hence the writes paced over three seconds); scripts/documentdb
    turns that off (``documentdb.usePgStatsLiveTuplesForCount``), so a
    collection under 10,000 documents is counted exactly."""
    for written in range(1, 31):
        await db.things.insert_one({"n": written})
        assert await db.things.estimated_document_count() == written
        await asyncio.sleep(0.1)


# -- transactions (MongoDB: replica sets only) ----------------------------------


@pytest.mark.real_mongodb(reason="transactions are only pretended: a write conflict goes unseen")
@pytest.mark.engine_gap(ferretdb="transactions", documentdb="transaction_conflicts")
async def test_a_write_conflict_aborts_the_losing_transaction(db: Database) -> None:
    """Two transactions write one document: MongoDB fails the second writer with
    WriteConflict (112) labelled TransientTransactionError (``with_transaction``
    runs such a transaction again) and aborts its transaction, so its earlier
    writes are gone and committing it fails."""
    await db.things.insert_one({"_id": 1, "v": 0})
    await db.others.insert_one({"_id": "seed"})
    client = db.client
    async with client.start_session() as first, client.start_session() as second:
        await first.start_transaction()
        await second.start_transaction()
        await db.things.update_one({"_id": 1}, {"$inc": {"v": 1}}, session=first)
        await db.others.insert_one({"_id": "loser"}, session=second)
        with pytest.raises(OperationFailure) as raised:
            await db.things.update_one({"_id": 1}, {"$inc": {"v": 10}}, session=second)
        assert raised.value.code == 112
        assert raised.value.has_error_label("TransientTransactionError")
        with pytest.raises(OperationFailure):  # NoSuchTransaction: it was aborted
            await second.commit_transaction()
        await first.commit_transaction()
    assert await db.things.find_one({"_id": 1}) == {"_id": 1, "v": 1}
    assert await db.others.find_one({"_id": "loser"}) is None
