"""Media fields: files sent with a document, kept in GridFS, read at a URL.

A write sent as ``multipart/form-data`` (Eve's way) carries the document's
fields as parts, a file part (one with a ``filename``) for each media field.
``read_form`` reads the body as it arrives: each file goes to GridFS in
chunks (``storage/files.py``), after its first bytes are checked against the
field's ``content_types``, and stops at ``max_bytes``; the other parts become
the document's fields. The document holds each file's id.

What a refused body leaves behind: nothing. Every file stored for it is
removed before the error leaves ``read_form``; a write that fails after it
(validation, a stale ETag) removes them too (``Media.discard``).

A file that a write replaces, or whose document is deleted, is removed after
the write succeeds: a crash in between leaves a file no document holds (an
orphan, which ``shoal media gc`` removes), never a document that names a file
that is gone.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from ..config import MediaField
from ..errors import BadRequest, PayloadTooLarge, UnprocessableEntity, UnsupportedMediaType
from ..storage import Storage
from ..storage.files import Files, Upload
from .model import Resource

Document = dict[str, Any]

FORM_DATA = "multipart/form-data"
#: The bytes a file's signature is read from.
HEAD_BYTES = 16
#: Seconds ``orphans`` may take to read one collection's file ids.
SCAN_SECONDS = 3600.0
#: The multipart decoder is fed at most this many bytes at a time.
SLICE_BYTES = 16 * 1024
#: The most a part's headers may take.
HEADER_BYTES = 8 * 1024

#: Known signatures ("magic numbers"): a type whose files start so. ``None``
#: in a pattern matches any byte.
SIGNATURES: tuple[tuple[str, tuple[int | None, ...]], ...] = tuple(
    (kind, tuple(None if char == "?" else ord(char) for char in pattern))
    for kind, pattern in (
        ("image/png", "\x89PNG\r\n\x1a\n"),
        ("image/jpeg", "\xff\xd8\xff"),
        ("image/gif", "GIF87a"),
        ("image/gif", "GIF89a"),
        ("image/webp", "RIFF????WEBP"),
        ("image/bmp", "BM"),
        ("image/tiff", "II*\x00"),
        ("image/tiff", "MM\x00*"),
        ("application/pdf", "%PDF-"),
        ("application/zip", "PK\x03\x04"),
        ("application/gzip", "\x1f\x8b"),
        ("video/mp4", "????ftyp"),
        ("audio/mpeg", "ID3"),
        ("audio/ogg", "OggS"),
    )
)
SIGNED_TYPES = frozenset(kind for kind, _ in SIGNATURES)
#: Signatures other types share: a ZIP's starts every Office document, EPUB and
#: JAR; MP4's ``ftyp`` box starts QuickTime, HEIC, M4A and 3GP files. Bytes
#: with one of these are no proof that another declared type is a lie.
CONTAINER_TYPES = frozenset({"application/zip", "video/mp4"})
#: A declared type that says nothing (curl's and many clients' default).
GENERIC_TYPE = "application/octet-stream"
#: A media type as RFC 6838 names one (``type/subtype``, restricted names): what
#: a file is stored with and later sent back as its ``Content-Type``.
MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def sniff(head: bytes) -> str | None:
    """The type whose signature ``head`` starts with, if any."""
    for kind, pattern in SIGNATURES:
        if len(head) >= len(pattern) and all(
            byte is None or head[index] == byte for index, byte in enumerate(pattern)
        ):
            return kind
    return None


def checked_type(media: MediaField, declared: str | None, head: bytes) -> str:
    """The content type a file is stored with: the one its part declares (or,
    declaring none or ``application/octet-stream``, its signature's, else
    ``application/octet-stream``), refused (415) when the field does not allow
    it or the bytes' signature says otherwise."""
    sniffed = sniff(head)
    kind = (declared or "").split(";", 1)[0].strip().lower()
    if not kind or kind == GENERIC_TYPE:
        kind = sniffed or GENERIC_TYPE
    if not MEDIA_TYPE.fullmatch(kind):
        raise UnsupportedMediaType(f"{media.name}: {kind!r} is not a media type (type/subtype)")
    allowed = media.content_types
    if allowed is not None and kind not in allowed:
        raise UnsupportedMediaType(
            f"{media.name}: {kind} is not allowed (send {', '.join(allowed)})"
        )
    if kind in SIGNED_TYPES and sniffed != kind:
        raise UnsupportedMediaType(
            f"{media.name}: the file's bytes are not {kind} "
            f"({'they are ' + sniffed if sniffed else 'their signature is not ' + kind})"
        )
    if allowed is not None and sniffed not in (None, kind, *CONTAINER_TYPES):
        raise UnsupportedMediaType(f"{media.name}: the file's bytes are {sniffed}, not {kind}")
    return kind


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)
    size: int = 0
    upload: Upload | None = None
    kind: str | None = None


@dataclass
class _Form:
    """What one multipart body gave so far."""

    values: Document = field(default_factory=dict)
    stored: list[ObjectId] = field(default_factory=list)
    part: _Part | None = None
    ended: bool = False
    field_bytes: int = 0


class Media:
    """The media fields of one resource, and their files."""

    def __init__(self, resource: Resource, files: Files) -> None:
        self.resource = resource
        self.files = files
        self.fields = resource.media
        self.limits = resource.settings.media

    # -- writes ----------------------------------------------------------

    def refuse_files(self, body: Any) -> None:
        """A JSON body names no file: a media field is written by a file part
        of a multipart body (null removes its file)."""
        documents = body if isinstance(body, list) else [body]
        issues = {
            name: "a file: send it as a part of a multipart/form-data body"
            for document in documents
            if isinstance(document, Mapping)
            for name in self.fields
            if document.get(name) is not None
        }
        if issues:
            raise UnprocessableEntity("media fields take files", issues=issues)

    async def read_form(
        self, content_type: str, length: int | None, chunks: AsyncIterator[bytes]
    ) -> tuple[Document, list[ObjectId]]:
        """A multipart body as a document (each file stored, its field holding
        its id) and the ids of the files stored; on any refusal, nothing stays
        stored."""
        _, options = parse_options_header(content_type)
        boundary = options.get("boundary")
        if not boundary:
            raise BadRequest("a multipart/form-data body needs a boundary in its Content-Type")
        limit = self.limits.max_body_bytes
        if length is not None and length > limit:
            raise _too_large(limit)
        form = _Form()
        try:
            await self._read(boundary.encode("latin-1"), chunks, form)
        except BaseException:
            upload = form.part.upload if form.part is not None else None
            if upload is not None and upload.id not in form.stored:
                await upload.abort()
            await self.discard(form.stored)
            raise
        return form.values, form.stored

    async def _read(self, boundary: bytes, chunks: AsyncIterator[bytes], form: _Form) -> None:
        limits = self.limits
        # The decoder's buffer holds what it has not handed on yet: fed a slice
        # at a time, it stays small (a part's headers, at most, beyond a slice).
        decoder = MultipartDecoder(
            boundary, max_form_memory_size=SLICE_BYTES + HEADER_BYTES, max_parts=limits.max_parts
        )
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise _too_large(limits.max_body_bytes)
                for start in range(0, len(chunk), SLICE_BYTES):
                    decoder.receive_data(chunk[start : start + SLICE_BYTES])
                    await self._events(decoder, form)
            decoder.receive_data(None)
            await self._events(decoder, form)
        except RequestEntityTooLarge:
            raise PayloadTooLarge(
                f"the multipart body has more than {limits.max_parts} parts or more than "
                f"{limits.max_field_bytes} bytes of fields (media.max_parts, "
                "media.max_field_bytes)"
            ) from None
        except ValueError as error:
            raise BadRequest(f"the multipart/form-data body is malformed: {error}") from None
        if not form.ended:
            raise BadRequest("the multipart/form-data body ended before its closing boundary")

    async def _events(self, decoder: MultipartDecoder, form: _Form) -> None:
        values = form.values
        while True:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                return
            if isinstance(event, Epilogue):
                form.ended = True
                return
            if isinstance(event, File | Field):
                name = event.name
                if name in values:
                    raise UnprocessableEntity(
                        "a field is sent twice", issues={name: "sent in more than one part"}
                    )
                filename = event.filename if isinstance(event, File) else None
                if name in self.fields and filename is None:
                    raise UnprocessableEntity(
                        "media fields take files",
                        issues={name: "a file: send a part with a filename"},
                    )
                if filename is not None and name not in self.fields:
                    raise UnprocessableEntity(
                        "a file for a field that takes none",
                        issues={name: "not a media field: send its value without a filename"},
                    )
                form.part = _Part(name, filename, event.headers.get("Content-Type"))
            elif isinstance(event, Data) and form.part is not None:
                part = form.part
                if part.filename is not None:
                    await self._file_data(part, event.data)
                    if not event.more_data and (part.filename or part.size):
                        await self._end_file(part, form.stored)
                        values[part.name] = part.upload.id if part.upload else None
                    # else: a file input left empty (no name, no bytes): no file
                else:
                    part.data += event.data
                    form.field_bytes += len(event.data)
                    if form.field_bytes > self.limits.max_field_bytes:
                        raise RequestEntityTooLarge()
                    if not event.more_data:
                        values[part.name] = self._value(part.name, bytes(part.data))
                if not event.more_data:
                    form.part = None

    async def _file_data(self, part: _Part, data: bytes) -> None:
        media = self.fields[part.name]
        part.size += len(data)
        if media.max_bytes is not None and part.size > media.max_bytes:
            raise PayloadTooLarge(
                f"{part.name}: the file is larger than {media.max_bytes} bytes (x-media.max_bytes)"
            )
        if part.upload is None:
            part.data += data
            if len(part.data) < HEAD_BYTES:
                return
            await self._start_file(part)
            return
        await part.upload.write(data)

    async def _start_file(self, part: _Part) -> None:
        head = bytes(part.data)
        part.kind = checked_type(self.fields[part.name], part.content_type, head)
        metadata = {
            "contentType": part.kind,
            "resource": self.resource.name,
            "field": part.name,
        }
        part.upload = self.files.upload(part.filename or part.name, metadata)
        part.data = bytearray()
        await part.upload.write(head)

    async def _end_file(self, part: _Part, stored: list[ObjectId]) -> None:
        if part.upload is None:
            await self._start_file(part)  # a file shorter than HEAD_BYTES
        assert part.upload is not None
        await part.upload.close()
        stored.append(part.upload.id)

    def _value(self, name: str, data: bytes) -> Any:
        """A field's part as the schema types it: text for a string (or an
        undeclared field), JSON for anything else (text if it is no JSON)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnprocessableEntity(
                "a field is not UTF-8 text", issues={name: "must be UTF-8 text"}
            ) from None
        rule = self.resource.schema.properties.get(name)
        kind = rule.get("type", "string") if isinstance(rule, Mapping) else "string"
        if kind == "string":
            return text
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def discard(self, file_ids: Iterable[Any]) -> None:
        """Remove these files (the write that stored them failed)."""
        await self.files.delete(list(file_ids))

    # -- reads -----------------------------------------------------------

    async def inline(self, documents: Iterable[Document]) -> None:
        """With ``media.base64``: each file a document names, in its place, as
        base64 text (Eve's ``RETURN_MEDIA_AS_BASE64_STRING``; the whole file is
        read). A file that is gone reads as null."""
        if not self.limits.base64:
            return
        for document in documents:
            for name in self.fields:
                file_id = document.get(name)
                if not isinstance(file_id, ObjectId):
                    continue
                download = await self.files.open(file_id)
                if download is None:
                    document[name] = None
                    continue
                try:
                    data = b"".join(
                        [piece async for piece in download.chunks(0, download.file.length)]
                    )
                finally:
                    await download.close()
                document[name] = base64.b64encode(data).decode("ascii")

    # -- files a write replaces --------------------------------------------

    def file_ids(self, document: Mapping[str, Any] | None) -> set[ObjectId]:
        """The files ``document`` holds."""
        if document is None:
            return set()
        return {value for name in self.fields if isinstance(value := document.get(name), ObjectId)}

    async def replaced(
        self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> None:
        """After a write succeeded: remove the files ``before`` held that
        ``after`` (None: the document is gone) does not."""
        gone = self.file_ids(before) - self.file_ids(after)
        if gone:
            await self.files.delete(sorted(gone))


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the multipart body is larger than {limit} bytes (media.max_body_bytes)"
    )


async def orphans(
    storage: Storage, resources: Iterable[Resource], before: datetime
) -> tuple[list[ObjectId], int]:
    """The files uploaded before ``before`` that no document of ``resources``
    names (a crash between a write and the removal of the file it replaced,
    or an upload whose write never came), and how many files were looked at.
    Files younger than that may belong to a write still under way."""
    files = Files(storage)
    candidates = await files.older_than(before)
    if not candidates:
        return [], 0
    held: set[ObjectId] = set()
    for resource in resources:
        if not resource.media:
            continue
        collection = storage.collection(resource.collection)
        projection = dict.fromkeys(resource.media, 1)

        async def names(collection: Any = collection, projection: Any = projection) -> None:
            async for document in collection.find({}, projection):
                held.update(
                    value
                    for name in projection
                    if isinstance(value := document.get(name), ObjectId)
                )

        await files.run(names(), timeout=SCAN_SECONDS)
    return [file_id for file_id in candidates if file_id not in held], len(candidates)
