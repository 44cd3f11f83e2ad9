"""MongoDB access: the only module that talks to PyMongo.

One ``AsyncMongoClient`` per worker process, opened in ``before_serving`` and
closed in ``after_serving``. Driver errors leave this module as ``ApiError``
values (503 when MongoDB cannot be reached, 409 on a duplicate key), so no
caller handles PyMongo's exceptions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from quart import Quart

from .config import MongoDBSettings
from .errors import ApiError, Conflict, ServiceUnavailable

logger = logging.getLogger("shoal.storage")

Document = dict[str, Any]
T = TypeVar("T")

EXTENSION_KEY = "shoal.storage"


class Storage:
    """The MongoDB connection of one worker and the operations Shoal needs."""

    def __init__(self, settings: MongoDBSettings) -> None:
        self.settings = settings
        self._client: AsyncMongoClient[Document] | None = None

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
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    @property
    def client(self) -> AsyncMongoClient[Document]:
        if self._client is None:
            raise RuntimeError("storage is not open; it opens in before_serving")
        return self._client

    @property
    def database(self) -> AsyncDatabase[Document]:
        return self.client[self.settings.database]

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.database[name]

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise ServiceUnavailable unless MongoDB answers within ``timeout`` seconds."""
        await self.run(lambda: self.client.admin.command("ping"), timeout=timeout)

    async def run(
        self,
        operation: Callable[[], Coroutine[Any, Any, T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """Await one driver operation, translating driver errors into API errors."""
        with translate_errors():
            if timeout is None:
                return await operation()
            try:
                return await asyncio.wait_for(operation(), timeout)
            except TimeoutError as error:
                raise ServiceUnavailable("MongoDB did not answer in time") from error


class _Translator:
    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        if error is None or isinstance(error, ApiError):
            return
        if isinstance(error, DuplicateKeyError):
            raise Conflict(_duplicate_message(error)) from error
        if isinstance(error, ServerSelectionTimeoutError | ConnectionFailure):
            logger.warning("MongoDB unreachable: %s", error)
            raise ServiceUnavailable("MongoDB is unreachable; retry shortly") from error
        if isinstance(error, OperationFailure) and error.code == 11000:
            raise Conflict(_duplicate_message(error)) from error
        if isinstance(error, PyMongoError):
            logger.error("MongoDB error: %s", error)


def translate_errors() -> _Translator:
    """A context manager mapping PyMongo errors to ``ApiError`` values."""
    return _Translator()


def _duplicate_message(error: PyMongoError) -> str:
    details = getattr(error, "details", None) or {}
    key = details.get("keyValue") if isinstance(details, dict) else None
    if isinstance(key, dict) and key:
        fields = ", ".join(sorted(key))
        return f"a document with the same value of {fields} already exists"
    return "a document with the same unique value already exists"


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
