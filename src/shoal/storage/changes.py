"""Change streams: MongoDB's feed of a collection's writes, errors translated.

A change stream needs a replica set or a sharded cluster (MongoDB refuses it on
a standalone server); each event's ``_id`` is its resume token, which any client
may pass back to continue after that event, for as long as the server keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.change_stream import AsyncChangeStream

from ..errors import ApiError
from .errors import translate_errors

#: What MongoDB (and compatible servers) answer when they have no change streams:
#: a standalone MongoDB (40573: replica sets only), a server without them
#: (238 NotImplemented, 115 CommandNotSupported).
UNSUPPORTED_CODES = frozenset({40573, 238, 115})


class ChangeStreamsUnsupported(ApiError):
    """The database has no change streams (MongoDB needs a replica set for them)."""

    status = 501


Document = dict[str, Any]


class ChangeStream:
    """One open change stream of one collection."""

    def __init__(self, stream: AsyncChangeStream[Document]) -> None:
        self._stream = stream

    @property
    def resume_token(self) -> Mapping[str, Any] | None:
        """Where this stream stands: resuming after it misses nothing."""
        token = self._stream.resume_token
        return dict(token) if token is not None else None

    async def try_next(self) -> Document | None:
        """The next change, or None when none is available right now;
        ``ResumeFailed`` when the stream's history is gone."""
        with translate_errors():
            return await self._stream.try_next()

    async def close(self) -> None:
        with translate_errors():
            await self._stream.close()
