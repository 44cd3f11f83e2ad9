"""Multi-document transactions, where MongoDB has them.

Whether a server has them is found out by trying (``probe_transactions``): a
replica set or a sharded cluster runs them, a standalone server or a
compatible server without them does not, and a server's own description can be
wrong either way. ``in_transaction`` runs a unit of work in one, retrying it
as MongoDB's drivers do when the transaction fails for a transient reason.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

Document = dict[str, Any]
T = TypeVar("T")

#: What a server without multi-document transactions answers the probe's first
#: write: a standalone MongoDB, IllegalOperation (20); a server that does not
#: know the transaction fields of a command (``startTransaction``, ``autocommit``),
#: FailedToParse (9) or UnknownBsonField (40415); one without the commands that
#: end a transaction, CommandNotFound (59), CommandNotSupported (115) or
#: NotImplemented (238). The probe's write is well formed, so none of these can
#: be about the write itself.
_NO_TRANSACTIONS = frozenset({20, 9, 40415, 59, 115, 238})
#: WriteConflict: inside a transaction MongoDB labels it TransientTransactionError,
#: and ``with_transaction`` aborts the transaction and runs it again. DocumentDB
#: answers a write conflict between transactions (its gateway waits 20 ms for a
#: lock) with this code and no label, and keeps the loser's transaction open;
#: ``in_transaction`` adds the label, so the same happens there.
WRITE_CONFLICT = 112
TRANSIENT = "TransientTransactionError"


async def probe_transactions(
    client: AsyncMongoClient[Document], database: AsyncDatabase[Document]
) -> bool:
    """Whether a transaction's first write goes through on this server."""
    try:
        async with client.start_session() as session, await session.start_transaction():
            # A write that changes nothing (and so needs no read).
            await database["shoal_transactions"].delete_one({"_id": ObjectId()}, session=session)
    except OperationFailure as error:
        if error.code in _NO_TRANSACTIONS:
            return False
        raise
    return True


async def in_transaction(
    client: AsyncMongoClient[Document],
    work: Callable[[AsyncClientSession], Coroutine[Any, Any, T]],
) -> T:
    """Run ``work`` in one transaction. A transient failure aborts it (nothing
    of it remains) and runs it again (``with_transaction``); a write conflict
    counts as transient even unlabelled."""

    async def labelled(session: AsyncClientSession) -> T:
        try:
            return await work(session)
        except OperationFailure as error:
            if error.code != WRITE_CONFLICT or error.has_error_label(TRANSIENT):
                raise
            details = dict(error.details or {})
            details["errorLabels"] = [*details.get("errorLabels", []), TRANSIENT]
            message = str(details.get("errmsg", "write conflict"))
            raise OperationFailure(message, error.code, details) from error

    async with client.start_session() as session:
        return await session.with_transaction(labelled)
