"""PyMongo's errors as API errors: 503 when MongoDB cannot be reached, 409 on a
duplicate key, 400 when MongoDB refuses a client's query or BSON cannot hold a
client's document, 500 otherwise (with the error's class only: MongoDB's
messages can quote documents)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from bson.errors import InvalidDocument
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from ..errors import ApiError, BadRequest, Conflict, ServiceUnavailable
from ..metrics import MONGODB_ERRORS

logger = logging.getLogger("shoal.storage")

Document = dict[str, Any]
T = TypeVar("T")


#: Operations given up on, still finishing their cancellation.
_abandoned: set[asyncio.Future[Any]] = set()


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """What ``awaitable`` gives, or 503 once it has waited ``seconds`` for MongoDB.

    It is cancelled then, and not waited for: the driver's clean-up of a
    cancelled cursor (a ``killCursors`` sent on the same silent link) can wait
    as long as the operation would have.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait((task,), timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_settled)
    MONGODB_ERRORS.labels("timeout").inc()
    raise ServiceUnavailable("MongoDB did not answer in time")


def _settled(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the request was answered 503 already


#: MongoDB's codes for a change stream it cannot resume after a token:
#: InvalidResumeToken, ChangeStreamFatalError, ChangeStreamHistoryLost.
_RESUME_FAILURES = frozenset({260, 280, 286})


class ResumeFailed(ApiError):
    """MongoDB cannot resume a change stream after this token (unknown, or its
    history is gone)."""

    status = 410


# Server-side codes that are never the query's fault (auth, shutdown, elections).
SERVER_FAULT_CODES = frozenset({6, 7, 13, 18, 89, 91, 189, 10107, 11600, 11602, 13435, 13436})


class _Translator:
    def __init__(self, client_query: bool) -> None:
        self.client_query = client_query

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        if error is None or isinstance(error, ApiError):
            return
        if isinstance(error, InvalidDocument | OverflowError):
            # BSON cannot hold what was sent (an integer beyond 64 bits...): the
            # document is at fault, and it is the client's own.
            raise BadRequest(f"MongoDB cannot store this document: {error}") from error
        if isinstance(error, DuplicateKeyError):
            raise Conflict(duplicate_message(error)) from error
        if isinstance(error, ServerSelectionTimeoutError | ConnectionFailure):
            logger.warning("MongoDB unreachable: %s", unreachable_reason(error))
            MONGODB_ERRORS.labels("unreachable").inc()
            raise ServiceUnavailable("MongoDB is unreachable; retry shortly") from error
        if isinstance(error, OperationFailure) and error.code == 11000:
            raise Conflict(duplicate_message(error)) from error
        if isinstance(error, OperationFailure) and error.code in _RESUME_FAILURES:
            raise ResumeFailed("the change stream cannot resume after this event") from None
        if (
            self.client_query
            and isinstance(error, OperationFailure)
            and error.code not in SERVER_FAULT_CODES
        ):
            details = error.details or {}
            reason = details.get("errmsg") or str(error)
            raise BadRequest(f"MongoDB refused the query: {reason}") from error
        if isinstance(error, PyMongoError) and not isinstance(error, BulkWriteError):
            # The code and class only, here and in the answer: MongoDB's messages
            # can quote documents, which must not reach the logs or other clients.
            code = getattr(error, "code", None)
            logger.error("MongoDB error %s: %s", code, type(error).__name__)
            MONGODB_ERRORS.labels("failed").inc()
            raise ApiError(
                f"the database could not complete the operation ({type(error).__name__})",
                status=500,
            ) from None


#: PyMongo's additions to a connection error's reason: the timeouts it was
#: configured with, and the whole topology (hundreds of characters per server).
_TIMEOUTS = re.compile(r" \(configured timeouts: [^)]*\)")
_TOPOLOGY = re.compile(r", Timeout: [0-9.]+s, Topology Description: .*", re.DOTALL)


def unreachable_reason(error: PyMongoError) -> str:
    """Why MongoDB could not be reached, in a line: each server's address and
    error (``127.0.0.1:27017: [Errno 111] Connection refused``), without the
    topology description PyMongo appends."""
    reason = _TOPOLOGY.sub("", _TIMEOUTS.sub("", str(error))).strip()
    return reason if len(reason) <= 300 else reason[:299] + "…"


def translate_errors(*, client_query: bool = False) -> _Translator:
    """A context manager mapping PyMongo errors to ``ApiError`` values."""
    return _Translator(client_query)


def duplicate_message(error: PyMongoError, details: Document | None = None) -> str:
    if details is None:
        details = getattr(error, "details", None) or {}
    key = details.get("keyValue") if isinstance(details, dict) else None
    if isinstance(key, dict) and key:
        fields = ", ".join(sorted(key))
        return f"a document with the same value of {fields} already exists"
    return "a document with the same unique value already exists"


def refused_write(failure: Mapping[str, Any]) -> ApiError:
    """A bulk write's refusal that is not the client's to fix: a 500 naming the
    code only (MongoDB's message quotes the document, which must not be logged)."""
    code = failure.get("code")
    logger.error("MongoDB refused part of a write: code %s", code)
    MONGODB_ERRORS.labels("failed").inc()
    return ApiError(f"MongoDB refused part of the write (code {code})", status=500)
