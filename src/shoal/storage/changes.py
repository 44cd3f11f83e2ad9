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
from .errors import translate_errors, within

#: What MongoDB (and compatible servers) answer when they have no change streams:
#: a standalone MongoDB (40573: replica sets only), a server without them
#: (238 NotImplemented, 115 CommandNotSupported).
UNSUPPORTED_CODES = frozenset({40573, 238, 115})


class ChangeStreamsUnsupported(ApiError):
    """The database has no change streams (MongoDB needs a replica set for them)."""

    status = 501


Document = dict[str, Any]


class ChangeStream:
    """One open change stream of one collection. Each read (and the close) ends
    within ``deadline`` seconds, or is a 503: a read whose connection was cut
    without the driver noticing would otherwise wait for ever."""

    def __init__(self, stream: AsyncChangeStream[Document], *, deadline: float) -> None:
        self._stream = stream
        self.deadline = deadline

    @property
    def resume_token(self) -> Mapping[str, Any] | None:
        """Where this stream stands: resuming after it misses nothing."""
        token = self._stream.resume_token
        return dict(token) if token is not None else None

    @property
    def alive(self) -> bool:
        """Whether the stream can still return changes: False once the server
        ended its cursor (an invalidating event), and the stream closed itself."""
        return bool(self._stream.alive)

    async def try_next(self) -> Document | None:
        """The next change, or None when none is available right now;
        ``ResumeFailed`` when the stream's history is gone."""
        with translate_errors():
            return await within(self.deadline, self._stream.try_next())

    async def close(self) -> None:
        with translate_errors():
            await within(self.deadline, self._stream.close())
