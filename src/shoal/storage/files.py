"""Files in GridFS: the media fields' bytes (``resources/media.py`` decides
what is stored; this module is the only caller of PyMongo's GridFS).

A file is written in chunks as its bytes arrive (``Upload``), so a worker
holds one chunk of it at a time, never the whole file; it is read back the
same way (``Download``). Every file records, in its ``metadata``, the resource
and field it was sent for and its content type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.asynchronous import grid_file
from gridfs.asynchronous.grid_file import AsyncGridIn, AsyncGridOut
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.errors import PyMongoError

from .errors import translate_errors, within
from .mongo import Storage

#: GridFS's default bucket (``fs.files``, ``fs.chunks``), the one Eve uses.
BUCKET = "fs"
#: Bytes per GridFS chunk (GridFS's default: 255 KiB).
CHUNK_BYTES = 255 * 1024

Document = dict[str, Any]
#: Chunks a download's cursor asks for at a time (about a megabyte).
READ_BATCH_CHUNKS = 4
#: Bytes of chunks an upload gathers before it inserts them.
UPLOAD_BUFFER_BYTES = 4 * CHUNK_BYTES

# PyMongo's GridIn gathers up to 32 MB of an upload's chunks before it inserts
# them (a module constant of PyMongo 4.x, read at each flush): a worker would
# hold that much of every upload, and as much again encoding it. Four chunks
# at a time instead. (No public option sets it; should a PyMongo release drop
# the name, this does nothing, and benchmarks/media.py shows the cost.)
if hasattr(grid_file, "_UPLOAD_BUFFER_SIZE"):
    grid_file._UPLOAD_BUFFER_SIZE = UPLOAD_BUFFER_BYTES


@dataclass(frozen=True)
class StoredFile:
    """What GridFS holds about one file."""

    id: ObjectId
    length: int
    uploaded: datetime
    content_type: str
    md5: str | None


def _moment(value: Any, file_id: Any) -> datetime:
    """When a file was stored: its ``uploadDate`` (a string, as the embedded
    store gives it back, is read as ISO 8601), else its ObjectId's time."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _moment(datetime.fromisoformat(value), file_id)
        except ValueError:
            pass
    if isinstance(file_id, ObjectId):
        return file_id.generation_time
    return datetime.now(UTC)


class Upload:
    """One file being written: ``write`` its bytes, then ``close`` it (it is
    stored then) or ``abort`` it (its chunks are removed)."""

    def __init__(self, files: Files, stream: AsyncGridIn) -> None:
        self._files = files
        self._stream = stream

    @property
    def id(self) -> ObjectId:
        file_id: ObjectId = self._stream._id
        return file_id

    async def write(self, data: bytes) -> None:
        await self._files.run(self._stream.write(data))

    async def close(self) -> None:
        await self._files.run(self._stream.close())

    async def abort(self) -> None:
        """Remove what was written of the file. The embedded store refuses to
        abort a file it holds no ``files`` document for (it writes the chunks
        at the close); its chunks are then removed by their ``files_id``."""
        try:
            await within(self._files.storage.deadline(), self._stream.abort())
        except PyMongoError:
            chunks = self._files.storage.collection(f"{BUCKET}.chunks")
            await self._files.run(chunks.delete_many({"files_id": self.id}))


class Download:
    """One stored file, read from an offset on."""

    def __init__(self, files: Files, stream: AsyncGridOut, stored: StoredFile) -> None:
        self._files = files
        self._stream = stream
        self.file = stored

    async def close(self) -> None:
        await self._stream.close()

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        """The bytes from ``start`` up to ``end`` (exclusive), a chunk at a time.

        Read here rather than through ``AsyncGridOut``, whose cursor takes
        the driver's default batches (101 chunks, about 25 MB, at first): this
        one asks for ``READ_BATCH_CHUNKS`` at a time, so a worker holds about
        a megabyte of a download, whatever the file's size."""
        size = self._stream.chunk_size
        number = start // size
        filter: Document = {"files_id": {"$eq": self.file.id}}
        if number > 0:
            filter["n"] = {"$gte": number}
        cursor = self._files.storage.collection(f"{BUCKET}.chunks").find(
            filter, sort=[("n", 1)], batch_size=READ_BATCH_CHUNKS
        )
        offset = start - number * size  # into the first chunk
        left = end - start
        try:
            while left > 0:
                chunk = await self._files.run(anext(cursor, None))
                if chunk is None or chunk.get("n") != number:
                    raise CorruptGridFile(f"chunk {number} of file {self.file.id} is missing")
                data = bytes(chunk["data"])[offset : offset + left]
                offset, number = 0, number + 1
                left -= len(data)
                yield data
        finally:
            await cursor.close()


class Files:
    """The GridFS bucket of the configured database."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def bucket(self) -> AsyncGridFSBucket:
        return AsyncGridFSBucket(self.storage.database, BUCKET, chunk_size_bytes=CHUNK_BYTES)

    async def run(self, awaitable: Any, timeout: float | None = None) -> Any:
        """Await one GridFS operation within ``timeout`` seconds (the
        storage's deadline by default), its errors as API errors (503 when
        MongoDB cannot be reached)."""
        with translate_errors():
            return await within(timeout or self.storage.deadline(), awaitable)

    def upload(self, filename: str, metadata: Document) -> Upload:
        stream = self.bucket.open_upload_stream(filename, metadata=metadata)
        return Upload(self, stream)

    async def open(self, file_id: Any) -> Download | None:
        """The stored file ``file_id`` names; None if there is none."""
        try:
            stream = await self.run(self.bucket.open_download_stream(file_id))
        except NoFile:
            return None
        metadata = stream.metadata or {}
        stored = StoredFile(
            id=stream._id,
            length=stream.length,
            uploaded=_moment(stream.upload_date, stream._id),
            content_type=str(metadata.get("contentType") or "application/octet-stream"),
            md5=stream.md5 if isinstance(stream.md5, str) else None,
        )
        return Download(self, stream, stored)

    async def delete(self, file_ids: list[Any]) -> None:
        """Remove these files (one already gone is no error)."""
        for file_id in file_ids:
            try:
                await self.run(self.bucket.delete(file_id))
            except NoFile:
                continue

    async def older_than(self, moment: datetime) -> list[ObjectId]:
        """The ids of every file whose upload began before ``moment`` (told by
        its ObjectId, which holds the second it was made; compared here, as
        the embedded store filters no ``fs.files`` by a range of ids)."""

        async def ids() -> list[ObjectId]:
            cursor = self.storage.collection(f"{BUCKET}.files").find({}, {"_id": 1})
            return [
                document["_id"]
                async for document in cursor
                if isinstance(document["_id"], ObjectId)
                and document["_id"].generation_time < moment
            ]

        found: list[ObjectId] = await self.run(ids())
        return found
