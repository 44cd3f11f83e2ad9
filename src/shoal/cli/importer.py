"""`shoal import`: load a JSON Lines file into a resource, each line checked as a POST is.

    shoal import books books.jsonl --config shoal.yaml --batch-size 1000 --rejects bad.jsonl

The file is read line by line, never whole. Each non-blank line must be a JSON
object; the resource's own rules check and stamp it (schema, defaults, read-only
fields, ``_created``, ``_updated``, ``_etag``) as ``POST /<resource>`` would, but
for three things a POST does that an import does not: it checks no references
(``data_relation``), runs no event hooks and adds nothing to a versioned
resource's history (see the configuration reference). Valid documents are
written in unordered bulk writes, so a line MongoDB refuses (a duplicate unique
value) is rejected alone while the rest of its batch goes in. A line carrying
``_id`` replaces the document with that id, or creates it: re-running a file of
such lines adds nothing twice.

Rejected lines are reported with their line number and reason (the first 50 on
stderr, all of them in the ``--rejects`` file). Exit status: 0 when every line
was imported, 1 when some were rejected or MongoDB failed, 2 for a bad
invocation or config, 130 when interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from bson import ObjectId
from pymongo import InsertOne, ReplaceOne
from pymongo.errors import PyMongoError
from tqdm import tqdm

from ..config import ConfigError, Settings, load_settings
from ..errors import ApiError
from ..resources import Access, Resource, ResourceService, build_resources, readers
from ..resources.documents import Document
from ..state import SharedState, StateUnavailable, bump_generation, create_state
from ..storage import Storage
from ..storage.embedded import EmbeddedStoreError, mongodb_for_command
from .output import warn

DEFAULT_BATCH_SIZE = 500
#: Rejected lines shown on stderr; the ``--rejects`` file has them all.
SHOWN_REJECTS = 50
#: MongoDB's largest document (``maxBsonObjectSize``).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_DUPLICATE_KEY = 11000
_UTF8_BOM = b"\xef\xbb\xbf"

WriteOp = InsertOne[Document] | ReplaceOne[Document]


class ImportUsageError(Exception):
    """The import cannot start (bad config, resource or file); exit status 2."""


class ImportFailed(Exception):
    """The import stopped part-way (MongoDB failed); exit status 1."""


@dataclass(frozen=True)
class ImportOptions:
    resource: str
    file: str
    config: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    rejects: str | None = None
    #: For a resource with an ``auth_field``: whose the imported documents are.
    owner: str | None = None


@dataclass(frozen=True)
class Rejection:
    """One line that was not imported, and why."""

    line: int
    reason: str
    text: str
    issues: dict[str, str] | None = None

    def record(self) -> dict[str, Any]:
        """The line's entry in the ``--rejects`` file."""
        entry: dict[str, Any] = {"line": self.line, "reason": self.reason}
        if self.issues:
            entry["issues"] = self.issues
        entry["text"] = self.text
        return entry


@dataclass
class ImportReport:
    """Counts of the lines written so far; ``lines`` counts non-blank lines."""

    lines: int = 0
    imported: int = 0
    updated: int = 0
    rejected: int = 0
    #: Documents inserted with a new id: importing the file again adds them again.
    inserted_without_id: int = 0
    last_line: int = 0

    def summary(self, seconds: float) -> str:
        return (
            f"imported {self.imported}, updated {self.updated}, "
            f"rejected {self.rejected} of {self.lines} lines in {seconds:.1f} s"
        )


class RejectLog:
    """Shows the first rejections on stderr and writes all of them to a file."""

    def __init__(self, stream: IO[str], file: IO[bytes] | None) -> None:
        self.stream = stream
        self.file = file
        self.count = 0

    def add(self, rejections: list[Rejection]) -> None:
        for rejection in sorted(rejections, key=lambda rejection: rejection.line):
            self.count += 1
            if self.count <= SHOWN_REJECTS:
                # tqdm.write keeps a progress bar intact below the message.
                tqdm.write(f"line {rejection.line}: {rejection.reason}", file=self.stream)
            if self.file is not None:
                self.file.write(orjson.dumps(rejection.record()) + b"\n")

    def close(self, rejects_path: str | None) -> None:
        hidden = self.count - SHOWN_REJECTS
        if hidden > 0:
            where = f"all are in {rejects_path}" if rejects_path else "--rejects FILE lists all"
            noun = "line" if hidden == 1 else "lines"
            print(f"... and {hidden} more rejected {noun} ({where})", file=self.stream)


@dataclass
class _Batch:
    """Lines read since the last write: their write operations and rejections."""

    operations: list[WriteOp] = field(default_factory=list)
    #: Line number and raw line of each operation, to report what MongoDB refuses.
    line_numbers: list[int] = field(default_factory=list)
    raw_lines: list[bytes] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    lines: int = 0


def read_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of every non-blank line, one at a time."""
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(_UTF8_BOM)
        if raw.strip():
            yield number, raw


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def prepare_line(
    service: ResourceService, number: int, raw: bytes, access: Access
) -> WriteOp | Rejection:
    """The write operation for one line, or why the line is rejected.

    Checks and stamps the document with the same ``ResourceService`` steps a POST
    takes (``check_new`` then ``stamp``).
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return Rejection(number, f"not valid JSON: {error.msg} at column {error.colno}", _text(raw))
    if not isinstance(body, dict):
        return Rejection(number, f"not a JSON object (got {_kind(body)})", _text(raw))
    document, issues = service.check_new(body, access)
    if issues or document is None:
        reason = "; ".join(f"{name}: {message}" for name, message in issues.items())
        return Rejection(number, reason, _text(raw), issues)
    stamped = service.stamp(document)
    item_id = stamped.get("_id")
    if item_id is None:
        stamped["_id"] = ObjectId()
        return InsertOne(stamped)
    # ReplaceOne upserts by id: it is MongoDB's own idempotent write. Keeping an
    # existing document's _created would need an update with $setOnInsert and
    # $set, which the test stand-in stores wrongly (dates inside $set become
    # strings), so a re-import stamps _created anew, as a PUT of the whole
    # document would have to. _id stays in the replacement: MongoDB accepts it
    # when it equals the filter's, and an upsert then creates exactly that id.
    return ReplaceOne({"_id": item_id}, stamped, upsert=True)


def _write_error_reason(error: dict[str, Any]) -> str:
    if error.get("code") == _DUPLICATE_KEY:
        key = error.get("keyValue")
        if isinstance(key, dict) and key:
            fields = ", ".join(sorted(key))
            return f"duplicate key: a document with the same {fields} already exists"
        return f"duplicate key: {error.get('errmsg', 'a unique value is taken')}"
    return f"MongoDB refused the document: {error.get('errmsg', 'no reason given')}"


class Importer:
    """Imports lines into one resource, a batch at a time."""

    def __init__(
        self,
        service: ResourceService,
        *,
        batch_size: int,
        rejects: RejectLog,
        access: Access | None = None,
    ) -> None:
        self.service = service
        self.access = access or Access()
        self.batch_size = batch_size
        self.rejects = rejects
        self.report = ImportReport()

    async def run(self, lines: Iterable[tuple[int, bytes]], progress: tqdm[Any]) -> ImportReport:
        # Unique indexes must exist before the writes, or duplicates would go in.
        await self.service.ensure_indexes()
        batch = _Batch()
        number = 0
        for number, raw in lines:
            batch.lines += 1
            prepared = prepare_line(self.service, number, raw, self.access)
            if isinstance(prepared, Rejection):
                batch.rejections.append(prepared)
            else:
                batch.operations.append(prepared)
                batch.line_numbers.append(number)
                batch.raw_lines.append(raw)
            progress.update(len(raw))
            # A batch is at most batch_size lines, so rejections do not pile up.
            if batch.lines >= self.batch_size:
                await self._flush(batch, number)
                progress.set_postfix(self._postfix(), refresh=False)
                batch = _Batch()
        await self._flush(batch, number)
        progress.set_postfix(self._postfix(), refresh=False)
        return self.report

    def _postfix(self) -> dict[str, str]:
        # Strings: tqdm would print a number like 20000 as 2e+4.
        return {
            "imported": str(self.report.imported),
            "updated": str(self.report.updated),
            "rejected": str(self.report.rejected),
        }

    async def _flush(self, batch: _Batch, last_line: int) -> None:
        rejections = batch.rejections
        if batch.operations:
            outcome = await self.service.storage.bulk_write(
                self.service.collection, batch.operations
            )
            concern = outcome.get("writeConcernErrors") or []
            if concern:
                raise ImportFailed(f"MongoDB could not confirm the writes: {concern[0]}")
            inserted = int(outcome.get("nInserted", 0))
            self.report.imported += inserted + int(outcome.get("nUpserted", 0))
            self.report.updated += int(outcome.get("nMatched", 0))
            self.report.inserted_without_id += inserted
            for error in outcome.get("writeErrors") or []:
                index = int(error["index"])
                rejections.append(
                    Rejection(
                        batch.line_numbers[index],
                        _write_error_reason(error),
                        _text(batch.raw_lines[index]),
                    )
                )
            await self.service.notify_written()
        self.report.lines += batch.lines
        self.report.rejected += len(rejections)
        self.report.last_line = max(self.report.last_line, last_line)
        self.rejects.add(rejections)


# -- the command ----------------------------------------------------------


def _load(options: ImportOptions) -> tuple[Settings, Resource]:
    try:
        settings = load_settings(options.config)
    except ConfigError as error:
        raise ImportUsageError(str(error)) from error
    resource = settings.resources.get(options.resource)
    if resource is None:
        names = ", ".join(settings.resources) or "none (is --config or SHOAL_CONFIG set?)"
        raise ImportUsageError(f"no resource named {options.resource!r}; resources: {names}")
    if resource.auth_field and not options.owner:
        raise ImportUsageError(
            f"{options.resource} keeps each document to its owner ({resource.auth_field}): "
            "say whose the documents are with --owner ID (a user or API key id)"
        )
    if options.owner and not resource.auth_field:
        raise ImportUsageError(f"{options.resource} has no auth_field; --owner does not apply")
    return settings, build_resources(settings)[options.resource]


def _open_input(path: Path) -> IO[bytes]:
    if path.is_dir():
        raise ImportUsageError(f"{path} is a directory, not a JSON Lines file")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ImportUsageError(f"{path}: no such file") from None
    except OSError as error:
        raise ImportUsageError(f"cannot read {path}: {error.strerror}") from error


def _open_rejects(path: str | None) -> IO[bytes] | None:
    if path is None:
        return None
    try:
        return Path(path).open("wb")
    except OSError as error:
        raise ImportUsageError(f"cannot write the rejects file {path}: {error.strerror}") from error


async def _cache_invalidation(settings: Settings, service: ResourceService) -> SharedState | None:
    """Served answers go stale with every imported batch, as after any write
    through the API: the cached resources that show documents of the
    collection (Redis only: the in-process cache of a development server is
    not reachable from here)."""
    cached = [
        name
        for name in readers(settings, service.collection)
        if settings.resources[name].cache_ttl is not None
    ]
    if not cached or settings.redis.url is None:
        return None
    state = create_state(settings.redis)
    await state.open()

    async def bump(resource: Resource) -> None:
        for name in cached:
            try:
                await bump_generation(state, name)
            except StateUnavailable:
                warn(
                    f"Redis is unreachable: cached answers of {name} may be stale "
                    f"for up to {settings.resources[name].cache_ttl}s"
                )

    service.write_listeners.append(bump)
    return state


def run_import(options: ImportOptions) -> int:
    """Run `shoal import`; raises ImportUsageError for what exits with status 2."""
    settings, resource = _load(options)
    path = Path(options.file)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(_open_input(path))
        rejects_file = _open_rejects(options.rejects)
        if rejects_file is not None:
            stack.enter_context(rejects_file)
        try:
            mongodb = stack.enter_context(mongodb_for_command(settings))
        except EmbeddedStoreError as error:
            raise ImportUsageError(str(error)) from error

        storage = Storage(mongodb)
        rejects = RejectLog(sys.stderr, rejects_file)
        owner = resource.settings.auth_field
        importer = Importer(
            ResourceService(resource, storage),
            batch_size=options.batch_size,
            rejects=rejects,
            access=Access(owner=(owner, options.owner)) if owner and options.owner else None,
        )
        progress: tqdm[Any] = tqdm(
            total=path.stat().st_size or None,  # a pipe has no size: a counter then
            desc=f"importing {resource.name}",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            dynamic_ncols=True,
        )

        async def main() -> ImportReport:
            await storage.open()
            invalidate = await _cache_invalidation(settings, importer.service)
            try:
                return await importer.run(read_lines(source), progress)
            finally:
                if invalidate is not None:
                    await invalidate.close()
                await storage.close()

        started = time.monotonic()
        try:
            report = asyncio.run(main())
        except (ApiError, ImportFailed, PyMongoError, KeyboardInterrupt) as error:
            progress.close()
            rejects.close(options.rejects)
            _stopped(error, importer.report, time.monotonic() - started)
            return 130 if isinstance(error, KeyboardInterrupt) else 1
        progress.close()
        seconds = time.monotonic() - started
    rejects.close(options.rejects)
    if report.inserted_without_id:
        print(
            f"note: {_lines(report.inserted_without_id)} without an _id got new ids; "
            "importing this file again would add them again (lines with an _id are "
            "replaced instead)",
            file=sys.stderr,
        )
    print(report.summary(seconds))
    return 1 if report.rejected else 0


def _lines(count: int) -> str:
    return f"{count} line" if count == 1 else f"{count} lines"


def _stopped(error: BaseException, report: ImportReport, seconds: float) -> None:
    if isinstance(error, KeyboardInterrupt):
        message = "interrupted"
    elif isinstance(error, ApiError):
        message = error.message
    else:
        message = str(error)
    print(f"shoal import: {message}", file=sys.stderr)
    if report.last_line == 0:
        print("nothing was imported", file=sys.stderr)
        return
    print(
        f"stopped after line {report.last_line}: {report.summary(seconds)}. Importing the "
        "file again replaces the lines that have an _id and adds the others again.",
        file=sys.stderr,
    )
