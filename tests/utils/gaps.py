"""What FerretDB and DocumentDB lack of MongoDB's documented behaviour, by name.

Each gap is pinned by one test that asserts MongoDB's behaviour: FerretDB's in
``tests/storage/test_ferretdb_gaps.py``, DocumentDB's in
``tests/storage/test_documentdb_gaps.py`` (or, when FerretDB has it too, in the
FerretDB file, one mark naming both). A test anywhere that fails on an engine
because of a gap says so with ``@pytest.mark.engine_gap(<engine>="<name>")``: it
is then a strict expected failure on that engine only, with the reason below,
so a release that closes a gap turns those tests into unexpected passes (and
fails the run) until the marks come off. The stand-in's gaps are marked with
``real_mongodb`` and pinned in ``tests/storage/test_standin_gaps.py``.

FerretDB's were observed on FerretDB v1.24.2 with its SQLite backend
(``scripts/ferretdb``).
"""

from __future__ import annotations

#: Gap name → what FerretDB does instead of what MongoDB documents, and the evidence.
FERRETDB_GAPS: dict[str, str] = {
    "partial_indexes": (
        "partialFilterExpression is refused (NotImplemented), and with it the whole "
        "createIndexes call: https://github.com/FerretDB/FerretDB/issues/2448"
    ),
    "unique_missing_field": (
        "a unique index lets many documents lack the field, where MongoDB indexes a "
        "missing field as null: https://github.com/FerretDB/FerretDB/issues/2830"
    ),
    "duplicate_key_details": (
        "duplicate-key errors carry no keyValue or keyPattern and name no index "
        "(E11000 duplicate key error collection: db.coll): "
        "https://github.com/FerretDB/FerretDB/pull/2814"
    ),
    "unique_index_over_duplicates": (
        "a unique index over stored duplicates fails with InternalError (1) and "
        "SQLite's message, not DuplicateKey (11000); FerretDB's compatibility page "
        "promises MongoDB's error codes"
    ),
    "recreate_indexes": (
        "asking createIndexes again for two or more existing indexes crashes the "
        "connection (a no-op on MongoDB): https://github.com/FerretDB/FerretDB/issues/3858"
    ),
    "write_atomicity": (
        "an update or replace reads the document, changes it in FerretDB and writes it "
        "back by _id without checking it is unchanged, so two writers conditional on "
        "one version can both win and concurrent $inc lose increments: "
        "https://github.com/FerretDB/FerretDB/issues/3040"
    ),
    "decimal128": (
        "Decimal128 is not implemented (FerretDB docs, element query operators); a "
        "document holding one drops the connection"
    ),
    "lookup": (
        "the $lookup stage is not implemented: https://github.com/FerretDB/FerretDB/issues/1427"
    ),
    "facet": (
        "the $facet stage is not implemented: https://github.com/FerretDB/FerretDB/issues/1420"
    ),
    "union_with": (
        "the $unionWith stage is not implemented: https://github.com/FerretDB/FerretDB/issues/1441"
    ),
    "group_accumulators": (
        "$group implements only the $sum and $count accumulators ($push, $addToSet, "
        "$first, $max, $avg... are refused): https://github.com/FerretDB/FerretDB/issues/1467"
    ),
    "group_several_accumulators": (
        "a $group with several accumulators computes only the first; the others come "
        "back 0, silently: https://github.com/FerretDB/FerretDB/issues/4616"
    ),
    "literal": (
        "the $literal expression is not implemented (The operator $literal is not "
        "implemented yet): https://github.com/FerretDB/FerretDB/issues/1470"
    ),
    "expression_comparisons": (
        "the comparison expressions ($eq, $lt...) are not implemented, so no $expr "
        "compares (The operator $eq is not implemented yet): "
        "https://github.com/FerretDB/FerretDB/issues/1456"
    ),
    "expressions_in_add_fields": (
        "$addFields takes no expressions: a field path or a variable ($$ROOT) is "
        "stored as the string it is (seen with v1.24.2)"
    ),
    "change_streams": (
        "change streams ($changeStream) are not implemented: "
        "https://github.com/FerretDB/FerretDB/issues/175"
    ),
    "transactions": (
        "transactions are not implemented (a transaction's first command is refused "
        'with FailedToParse, 9: unknown field "startTransaction"; no commitTransaction '
        "or abortTransaction): https://github.com/FerretDB/FerretDB/issues/1548"
    ),
}

#: Gap name → what DocumentDB does instead of what MongoDB documents, and the
#: evidence. Observed on DocumentDB b2e220c4 (0.108-0) with PostgreSQL 15 and its
#: gateway (``scripts/documentdb``).
DOCUMENTDB_GAPS: dict[str, str] = {
    "change_streams": (
        "change streams are not implemented: $changeStream is refused with "
        "CommandNotSupported (115)"
    ),
    "duplicate_key_details": (
        "duplicate-key errors carry no keyValue or keyPattern (the message names the index)"
    ),
    "root_variable": (
        "$$ROOT is the document as stored, not as the pipeline's earlier stages left "
        "it (seen with the pinned build: a field a $project dropped comes back)"
    ),
    "transaction_conflicts": (
        "the loser of a write conflict between transactions gets WriteConflict (112) "
        "without the TransientTransactionError label (the gateway's 20 ms lock "
        "timeout), and its transaction stays open: a commit then commits its other writes"
    ),
}

#: Engine → its gap table, for ``@pytest.mark.engine_gap(<engine>=<name>)``.
ENGINE_GAPS: dict[str, dict[str, str]] = {
    "ferretdb": FERRETDB_GAPS,
    "documentdb": DOCUMENTDB_GAPS,
}
