"""MongoDB access: with ``errors``, ``transactions``, ``indexes`` and ``files``
(GridFS), the only code that talks to PyMongo.

One ``AsyncMongoClient`` per worker process, opened in ``before_serving`` and
closed in ``after_serving``. Driver errors leave this module as ``ApiError``
values (503 when MongoDB cannot be reached, 409 on a duplicate key), so no
caller handles PyMongo's exceptions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pymongo
from bson import decode, encode
from pymongo import AsyncMongoClient, IndexModel, ReplaceOne, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ExecutionTimeout, OperationFailure

from ..config import MongoDBSettings
from ..errors import BadRequest, Conflict, ServiceUnavailable
from .changes import UNSUPPORTED_CODES, ChangeStream, ChangeStreamsUnsupported
from .errors import SERVER_FAULT_CODES, duplicate_message, refused_write, translate_errors, within
from .indexes import create_indexes
from .monitoring import CommandTimer
from .transactions import in_transaction, probe_transactions

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart

logger = logging.getLogger("shoal.storage")

Document = dict[str, Any]
Collection = AsyncCollection[Document]
T = TypeVar("T")
#: A transaction's session, or None where MongoDB has no transactions.
Session = AsyncClientSession | None

EXTENSION_KEY = "shoal.storage"
#: Seconds closing the client may wait for MongoDB to end its server sessions.
CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True)
class UpdateOutcome:
    """What an update or replace did, in MongoDB's terms."""

    matched: int
    modified: int
    upserted_id: Any = None


class Storage:
    """The MongoDB connection of one worker and the operations Shoal needs."""

    def __init__(self, settings: MongoDBSettings) -> None:
        self.settings = settings
        self._client: AsyncMongoClient[Document] | None = None
        #: Whether MongoDB runs transactions (None: not found out yet).
        self._transactions: bool | None = None

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self
        app.before_serving(self.open)
        app.after_serving(self.close)

    async def open(self) -> None:
        if self._client is not None:
            return
        if self.settings.uri is None:
            raise RuntimeError("no MongoDB URI; `shoal serve` starts the embedded store")
        self._client = AsyncMongoClient(
            self.settings.uri,
            tz_aware=True,
            serverSelectionTimeoutMS=self.settings.server_selection_timeout_ms,
            maxPoolSize=self.settings.max_pool_size,
            appname="shoal",
            event_listeners=[CommandTimer()],
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # Ending the server sessions is a courtesy (MongoDB expires them by
            # itself): a MongoDB that does not answer must not hold a stopping
            # worker for the whole server selection timeout.
            with pymongo.timeout(CLOSE_TIMEOUT):
                await client.close()

    @property
    def client(self) -> AsyncMongoClient[Document]:
        if self._client is None:
            raise RuntimeError("storage is not open; it opens in before_serving")
        return self._client

    @property
    def database(self) -> AsyncDatabase[Document]:
        return self.client[self.settings.database]

    def collection(self, name: str, database: str | None = None) -> AsyncCollection[Document]:
        """A collection of the configured database, or of ``database``."""
        target = self.database if database is None else self.client[database]
        return target[name]

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise ServiceUnavailable unless MongoDB answers within ``timeout`` seconds."""
        await self.run(lambda: self.client.admin.command("ping"), timeout=timeout)

    def deadline(self, max_time_ms: int | None = None) -> float:
        """Seconds one operation may take: ``operation_timeout_ms``, plus the
        operation's own ``maxTimeMS`` when it has one (MongoDB ends it then)."""
        return (self.settings.operation_timeout_ms + (max_time_ms or 0)) / 1000

    async def run(
        self,
        operation: Callable[[], Coroutine[Any, Any, T]],
        *,
        timeout: float | None = None,
        client_query: bool = False,
    ) -> T:
        """Await one driver operation, translating driver errors into API errors.

        It ends within ``timeout`` seconds (``deadline()`` when None): an
        operation still waiting then (a MongoDB that takes requests and never
        answers holds it until the driver's own checks give up, tens of seconds
        later) is cancelled and answered 503. With ``client_query``, MongoDB
        refusing the query (a bad ``$regex``, a ``$near`` without a geo
        index...) is the client's mistake: a 400.
        """
        with translate_errors(client_query=client_query):
            return await within(timeout or self.deadline(), operation())

    async def supports_transactions(self) -> bool:
        """Whether this MongoDB runs multi-document transactions (a replica set
        or a sharded cluster does; a standalone server, or a compatible server
        without them, does not). Found out by trying once, as a server's own
        description can be wrong either way."""
        if self._transactions is None:
            self._transactions = await self.run(
                lambda: probe_transactions(self.client, self.database)
            )
            logger.info("MongoDB %s transactions", "runs" if self._transactions else "has no")
        return self._transactions

    async def atomic(self, work: Callable[[Session], Coroutine[Any, Any, T]]) -> T:
        """Run ``work`` in one transaction where MongoDB has them, else as it is
        (``work`` gets None for a session and must order its writes safely).

        Inside a transaction, operations given the session raise PyMongo's own
        errors, so that transient ones are retried (see ``in_transaction``);
        whatever escapes is translated as usual.
        """
        if not await self.supports_transactions():
            return await work(None)
        return await self.run(lambda: in_transaction(self.client, work))

    async def undo(self, session: Session) -> None:
        """Abort ``session``'s transaction (none: do nothing), so that nothing
        written in it remains; ``atomic`` then returns what ``work`` returns."""
        if session is not None:
            await session.abort_transaction()

    # -- the operations resources use ------------------------------------

    async def find_page(
        self,
        collection: str,
        filter: Document,
        *,
        sort: list[tuple[str, int]] | None,
        projection: dict[str, int] | None,
        skip: int,
        limit: int,
    ) -> list[Document]:
        async def operation() -> list[Document]:
            cursor = self.collection(collection).find(
                filter, projection=projection, skip=skip, limit=limit, sort=sort
            )
            return await cursor.to_list(None)

        return await self.run(operation, client_query=True)

    async def count(self, collection: str, filter: Document, *, exact: bool = False) -> int:
        """How many documents match. With no filter and not ``exact``, the
        collection's own count (metadata, as Eve does; exact for an unsharded
        collection after a clean shutdown) instead of a scan of every document."""
        target = self.collection(collection)
        if not filter and not exact:
            return await self.run(target.estimated_document_count)
        return await self.run(lambda: target.count_documents(filter), client_query=True)

    async def find_one(
        self,
        collection: str,
        filter: Document,
        projection: dict[str, int] | None = None,
        *,
        session: Session = None,
    ) -> Document | None:
        operation = self.collection(collection).find_one
        return await self._run(
            lambda: operation(filter, projection=projection, session=session), session
        )

    async def find_all(
        self,
        collection: str,
        filter: Document,
        *,
        projection: dict[str, int] | None = None,
        sort: list[tuple[str, int]] | None = None,
        limit: int = 0,
        session: Session = None,
    ) -> list[Document]:
        """Every document matching ``filter`` (up to ``limit``, 0: all)."""

        async def operation() -> list[Document]:
            cursor = self.collection(collection).find(
                filter, projection=projection, sort=sort, limit=limit, session=session
            )
            return await cursor.to_list(None)

        return await self._run(operation, session)

    async def run_aggregation(
        self, collection: str, pipeline: list[Document], options: Document
    ) -> list[Document]:
        """Every document a configured pipeline yields (an aggregation endpoint's,
        given the aggregate command's ``options``); one that runs out of its
        ``maxTimeMS`` is a 503 (MongoDB is busy or the pipeline too costly)."""

        async def operation() -> list[Document]:
            try:
                cursor = await self.collection(collection).aggregate(pipeline, **options)
                return await cursor.to_list(None)
            except ExecutionTimeout as error:
                raise ServiceUnavailable(
                    "the aggregation ran longer than its time limit "
                    f"(maxTimeMS {options.get('maxTimeMS')}); retry later or narrow it"
                ) from error

        max_time_ms = options.get("maxTimeMS")
        return await self.run(
            operation,
            client_query=True,
            timeout=self.deadline(max_time_ms if isinstance(max_time_ms, int) else None),
        )

    async def _run(self, operation: Callable[[], Coroutine[Any, Any, T]], session: Session) -> T:
        # Inside a transaction PyMongo's errors go to with_transaction as they are.
        return await (operation() if session is not None else self.run(operation))

    async def insert_many(
        self,
        collection: str,
        documents: list[Document],
        *,
        database: str | None = None,
        client_query: bool = False,
        session: Session = None,
        new_ids: bool = False,
    ) -> None:
        """Insert all documents or none: on a duplicate key, undo the ones inserted
        (inside a transaction, the transaction undoes them). Documents without an
        ``_id`` get one (PyMongo sets it in place). With ``client_query``, a
        document MongoDB refuses is the client's: a 400. With ``new_ids`` (every
        ``_id`` was just made at random by the caller), a duplicate key while all
        the documents are stored as sent is this insert, retried: done."""
        target = self.collection(collection, database)
        if session is not None:
            try:
                await target.insert_many(documents, ordered=True, session=session)
            except BulkWriteError as error:
                first = (error.details.get("writeErrors") or [{}])[0]
                if first.get("code") != 11000:
                    raise  # the transaction retries a transient error, or fails
                message = duplicate_message(error, first)
                if len(documents) > 1:
                    message = f"item {first.get('index', 0)}: {message}; nothing was inserted"
                raise Conflict(message) from error
            return
        if len(documents) == 1:
            try:
                await self.run(lambda: target.insert_one(documents[0]), client_query=client_query)
            except Conflict:
                if not new_ids or not await self._stored_as_sent(target, documents):
                    raise
            return
        try:
            await self.run(lambda: target.insert_many(documents, ordered=True))
        except BulkWriteError as error:
            duplicate = (error.details.get("writeErrors") or [{}])[0].get("code") == 11000
            if duplicate and new_ids and await self._stored_as_sent(target, documents):
                return
            inserted = [document["_id"] for document in documents[: error.details["nInserted"]]]
            if inserted:
                await self.run(lambda: target.delete_many({"_id": {"$in": inserted}}))
            failures = error.details.get("writeErrors") or [{}]
            first = failures[0]
            if first.get("code") == 11000:
                raise Conflict(
                    f"item {first.get('index', 0)}: {duplicate_message(error, first)}; "
                    "nothing was inserted"
                ) from error
            if client_query and first.get("code") not in SERVER_FAULT_CODES:
                raise BadRequest(
                    f"item {first.get('index', 0)}: MongoDB refused the document: "
                    f"{first.get('errmsg', 'no reason given')}; nothing was inserted"
                ) from error
            raise refused_write(first) from None

    async def _stored(self, target: Collection, ids: list[Any]) -> dict[Any, Document]:
        """The stored documents among ``ids``, by ``_id``."""
        found = await self.run(lambda: target.find({"_id": {"$in": ids}}).to_list(None))
        return {document["_id"]: document for document in found}

    async def _stored_as_sent(self, target: Collection, documents: list[Document]) -> bool:
        """Whether every document is stored exactly as sent (MongoDB answers a
        retried insert as its first try; DocumentDB has no retryable writes)."""
        found = await self._stored(target, [document["_id"] for document in documents])
        return all(
            found.get(document["_id"]) == decode(encode(document), target.codec_options)
            for document in documents
        )

    async def insert_once(self, collection: str, documents: list[Document]) -> dict[Any, Document]:
        """Insert the documents whose ``_id`` is new; the stored documents whose
        ``_id`` exists already, by ``_id`` (those are not inserted).

        All or none of the new ones: a duplicate of another unique field undoes
        this call's inserts (409), as in ``insert_many``.
        """
        target = self.collection(collection)
        try:
            await self.run(lambda: target.insert_many(documents, ordered=False))
        except BulkWriteError as error:
            details: Document = dict(error.details or {})
        else:
            return {}
        failures: list[Document] = details.get("writeErrors") or []
        failed = {int(failure["index"]) for failure in failures}
        inserted = [document["_id"] for n, document in enumerate(documents) if n not in failed]
        taken = [documents[n]["_id"] for n in sorted(failed)]

        existing = await self._stored(target, taken)
        others = [f for f in failures if documents[int(f["index"])]["_id"] not in existing]
        if not others:
            return existing
        if inserted:
            await self.run(lambda: target.delete_many({"_id": {"$in": inserted}}))
        first = others[0]
        if first.get("code") == 11000:
            message = duplicate_message(BulkWriteError(details), first)
            raise Conflict(f"item {first.get('index', 0)}: {message}; nothing was inserted")
        raise refused_write(first)

    async def replace_if(
        self,
        collection: str,
        filter: Document,
        replacement: Document,
        *,
        upsert: bool = False,
        session: Session = None,
    ) -> bool:
        """Replace the document matching ``filter``; False when none matched
        (with ``upsert``, True when one was inserted instead)."""
        operation = self.collection(collection).replace_one
        result = await self._run(
            lambda: operation(filter, replacement, upsert=upsert, session=session), session
        )
        return result.matched_count == 1 or result.upserted_id is not None

    async def find_one_and_update(
        self, collection: str, filter: Document, update: Document
    ) -> Document | None:
        """Apply an update document to the one document ``filter`` matches, in
        one atomic step; the document as it was before, or None if none matched.
        MongoDB refusing the update (``$inc`` of a string, say) is a 400."""
        target = self.collection(collection)
        return await self.run(
            lambda: target.find_one_and_update(
                filter, update, return_document=ReturnDocument.BEFORE
            ),
            client_query=True,
        )

    async def replace_each(
        self, collection: str, replacements: list[tuple[Document, Document]]
    ) -> int:
        """Replace, in one unordered bulk write, the document each filter matches;
        how many were replaced (a filter that matches nothing replaces nothing)."""
        if not replacements:
            return 0
        operations = [ReplaceOne(filter, document) for filter, document in replacements]
        result = await self.bulk_write(collection, operations)
        if result.get("writeErrors"):
            first = result["writeErrors"][0]
            if first.get("code") == 11000:
                raise Conflict(duplicate_message(BulkWriteError(result), first))
            raise refused_write(first)
        return int(result.get("nModified", 0))

    async def update_one(self, collection: str, filter: Document, update: Document) -> bool:
        """Apply an update operator document; False when nothing matched."""
        result = await self.run(lambda: self.collection(collection).update_one(filter, update))
        return result.matched_count == 1

    async def delete_if(
        self, collection: str, filter: Document, *, session: Session = None
    ) -> bool:
        operation = self.collection(collection).delete_one
        result = await self._run(lambda: operation(filter, session=session), session)
        return result.deleted_count == 1

    async def delete_many(
        self, collection: str, filter: Document, *, session: Session = None
    ) -> int:
        operation = self.collection(collection).delete_many
        result = await self._run(lambda: operation(filter, session=session), session)
        return result.deleted_count

    async def bulk_write(self, collection: str, operations: list[Any]) -> Document:
        """One unordered bulk write; MongoDB's result, with the per-document
        write errors in ``writeErrors`` (they are an answer, not a failure)."""
        target = self.collection(collection)

        async def operation() -> Document:
            try:
                result = await target.bulk_write(operations, ordered=False)
            except BulkWriteError as error:
                return dict(error.details or {})
            return dict(result.bulk_api_result)

        return await self.run(operation)

    async def watch(
        self,
        collection: str,
        *,
        resume_after: Mapping[str, Any] | None = None,
        max_await_ms: int = 500,
    ) -> ChangeStream:
        """A change stream of ``collection``, after ``resume_after`` or from now.

        Updates carry the document as it is when the event is read
        (``fullDocument: updateLookup``). ``ResumeFailed`` when MongoDB cannot
        resume after the token.
        """

        async def operation() -> ChangeStream:
            try:
                stream = await self.collection(collection).watch(
                    full_document="updateLookup",
                    resume_after=resume_after,
                    max_await_time_ms=max_await_ms,
                )
            except OperationFailure as error:
                if error.code in UNSUPPORTED_CODES:
                    raise ChangeStreamsUnsupported(
                        "the database has no change streams (MongoDB serves them on a "
                        "replica set or a sharded cluster, not on a standalone server)"
                    ) from None
                raise
            return ChangeStream(stream, deadline=self.deadline(max_await_ms))

        return await self.run(operation)

    # -- the operations the Data API adds (any database; filters are the client's) --

    async def find_many(
        self,
        collection: str,
        filter: Document,
        *,
        database: str | None = None,
        projection: Document | None = None,
        sort: Document | None = None,
        skip: int = 0,
        limit: int = 0,
        max_time_ms: int | None = None,
    ) -> list[Document]:
        """The matching documents; what MongoDB refuses in the query is a 400."""

        async def operation() -> list[Document]:
            cursor = self.collection(collection, database).find(
                filter,
                projection=projection or None,
                sort=list(sort.items()) if sort else None,
                skip=skip,
                limit=limit,
                max_time_ms=max_time_ms,
            )
            return await cursor.to_list(None)

        return await self.run(operation, client_query=True, timeout=self.deadline(max_time_ms))

    async def update(
        self,
        collection: str,
        filter: Document,
        update: Document,
        *,
        database: str | None = None,
        upsert: bool = False,
        many: bool = False,
    ) -> UpdateOutcome:
        """``updateOne`` / ``updateMany`` with MongoDB's own counts."""
        target = self.collection(collection, database)
        if many:
            result = await self.run(
                lambda: target.update_many(filter, update, upsert=upsert), client_query=True
            )
        else:
            result = await self.run(
                lambda: target.update_one(filter, update, upsert=upsert), client_query=True
            )
        return UpdateOutcome(result.matched_count, result.modified_count, result.upserted_id)

    async def replace(
        self,
        collection: str,
        filter: Document,
        replacement: Document,
        *,
        database: str | None = None,
        upsert: bool = False,
    ) -> UpdateOutcome:
        target = self.collection(collection, database)
        result = await self.run(
            lambda: target.replace_one(filter, replacement, upsert=upsert), client_query=True
        )
        return UpdateOutcome(result.matched_count, result.modified_count, result.upserted_id)

    async def delete(
        self, collection: str, filter: Document, *, database: str | None = None, many: bool
    ) -> int:
        target = self.collection(collection, database)
        if many:
            result = await self.run(lambda: target.delete_many(filter), client_query=True)
        else:
            result = await self.run(lambda: target.delete_one(filter), client_query=True)
        return result.deleted_count

    async def aggregate(
        self,
        collection: str,
        pipeline: list[Document],
        *,
        database: str | None = None,
        max_time_ms: int | None = None,
        max_documents: int | None = None,
    ) -> list[Document]:
        """The pipeline's output, at most ``max_documents`` + 1 documents (so a
        caller can tell that there were more)."""

        async def operation() -> list[Document]:
            cursor = await self.collection(collection, database).aggregate(
                pipeline, maxTimeMS=max_time_ms
            )
            length = None if max_documents is None else max_documents + 1
            return await cursor.to_list(length)

        return await self.run(operation, client_query=True, timeout=self.deadline(max_time_ms))

    async def ensure_indexes(
        self, collection: str, indexes: list[IndexModel], *, timeout: float | None = None
    ) -> None:
        """Create the indexes (see ``create_indexes`` for a database that
        refuses partial ones)."""
        if indexes:
            target = self.collection(collection)
            await self.run(lambda: create_indexes(target, indexes), timeout=timeout)


def get_storage(app: Quart) -> Storage:
    storage: Storage = app.extensions[EXTENSION_KEY]
    return storage


@asynccontextmanager
async def open_storage(settings: MongoDBSettings) -> AsyncIterator[Storage]:
    """Storage outside a served app (the CLI's import and users commands)."""
    storage = Storage(settings)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()
