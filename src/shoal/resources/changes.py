"""Change feeds: each worker watches each streamed resource with one MongoDB
change stream, and hands its events to every subscriber that may see them.

- **One stream per worker and resource.** A ``ChangeFeed`` opens its change
  stream with its first subscriber and closes it with its last; subscribers get
  the events through bounded queues.
- **Resuming.** An event's id is MongoDB's resume token, so a client that
  reconnects with the last id it saw (to this worker or any other) misses
  nothing: the feed replays what it still holds in memory, or reads the gap
  from a change stream of the subscriber's own that resumes after the id, and
  then joins the shared stream, dropping what the gap already delivered.
- **Filters.** Every event is matched against the subscriber's owner filter
  (``auth_field``) and ``where`` before it is queued, on the event's document
  (with mongoquery, see docs/decisions/0009-change-streams.md). A delete
  carries no document, so it reaches only subscribers with neither filter, and
  those of that one document.
- **Failures.** A database error pauses the shared stream, which resumes after
  its last event; a subscriber that falls ``backlog`` events behind is ended,
  to reconnect with its last id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import re2
from bson import json_util
from mongoquery import Query

from ..config import StreamSettings
from ..errors import ApiError, BadRequest, ServiceUnavailable
from ..storage import ChangeStream, ChangeStreamsUnsupported, ResumeFailed, Storage
from ..tasks import cancel
from .access import Access
from .model import DELETED
from .query import QueryRules, parse_where
from .registry import Resources

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart

logger = logging.getLogger("shoal.streams")

EXTENSION_KEY = "shoal.streams"

Document = dict[str, Any]

#: Seconds between two polls of an idle change stream (MongoDB also waits up
#: to the stream's max_await_ms inside each poll).
POLL_INTERVAL = 0.05
#: Operators a stream's ``where`` may use: those Shoal can match on an event's
#: document the way MongoDB matches stored documents.
STREAM_OPERATORS = frozenset(
    {
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        "$and", "$or", "$nor", "$not", "$exists", "$all", "$elemMatch", "$size",
        "$mod", "$regex",
    }
)  # fmt: skip
#: Seconds a resuming subscriber waits for the shared stream to open.
OPEN_TIMEOUT = 10.0
#: Seconds a feed waits for MongoDB again after the stream failed (doubling).
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)


def event_id(token: Mapping[str, Any]) -> str:
    """A resume token as an SSE event id: MongoDB's ``_data`` string itself,
    else the token as canonical Extended JSON."""
    data = token.get("_data")
    if isinstance(data, str) and len(token) == 1:
        return data
    return json_util.dumps(token)


def resume_token(event: str) -> dict[str, Any]:
    """The resume token an SSE event id stands for (see ``event_id``)."""
    if event.startswith("{"):
        try:
            token = json_util.loads(event)
        except ValueError:
            raise BadRequest("Last-Event-ID is not an event id of this stream") from None
        if isinstance(token, dict):
            return token
        raise BadRequest("Last-Event-ID is not an event id of this stream")
    return {"_data": event}


#: The operations whose events carry the document (MongoDB's ``fullDocument``).
DOCUMENT_OPERATIONS = frozenset({"insert", "update", "replace"})


@dataclass(frozen=True)
class Change:
    """One write to a resource's collection."""

    #: The event's id (the resume token), as ``event_id`` writes it.
    id: str
    #: insert, update, replace or delete.
    operation: str
    document_id: Any
    #: The document after the write (None for a delete, or an update whose
    #: document is gone again by the time the event was read).
    document: Document | None


def change_of(event: Mapping[str, Any]) -> Change:
    """A MongoDB change event as a ``Change``."""
    key = event.get("documentKey") or {}
    operation = str(event.get("operationType", ""))
    document = event.get("fullDocument")
    if operation in DOCUMENT_OPERATIONS and isinstance(document, Mapping):
        document = _native(dict(document))
        # documentKey is the event's identity of the document (the same _id).
        document["_id"] = key.get("_id")
    else:
        document = None
    return Change(
        id=event_id(event["_id"]),
        operation=operation,
        document_id=key.get("_id"),
        document=document,
    )


#: Extended JSON read back as BSON values, dates time-zone aware as reads have them.
_EXTENDED = json_util.JSONOptions(tz_aware=True, tzinfo=UTC)


def _native(value: Any) -> Any:
    """An event's document with what an engine left in storage form (the
    embedded store sends dates as ``{"$date": ...}``) as the values reads
    get, so that events render as reads do; native values pass as they are."""
    if isinstance(value, list):
        return [_native(item) for item in value]
    if isinstance(value, dict):
        decoded = {key: _native(item) for key, item in value.items()}
        # Stored documents hold no $-names (writes refuse them): one is
        # Extended JSON (``{"$date": …}``, ``{"$oid": …}``).
        if any(key.startswith("$") for key in decoded):
            return json_util.object_hook(decoded, json_options=_EXTENDED)
        return decoded
    return value


Matcher = Callable[[Change], bool]


def matcher(
    access: Access,
    where: Mapping[str, Any] | None,
    item_id: Any = None,
    base: Mapping[str, Any] | None = None,
) -> Matcher:
    """What a subscriber may see: the resource's own documents (``base``, its
    ``datasource.filter``), its document (``item_id``), its owner filter, its
    ``where``."""
    if base:
        access = Access(
            filter={"$and": [dict(base), dict(access.filter)]} if access.filter else base
        )
    owner = Query(dict(access.filter)) if access.filter else None
    wanted = _LinearQuery(dict(where)) if where else None

    def matches(change: Change) -> bool:
        if item_id is not None and change.document_id != item_id:
            return False
        document = change.document
        if document is None:
            return item_id is not None or (owner is None and wanted is None)
        try:
            if owner is not None and not owner.match(document):
                return False
            return wanted is None or bool(wanted.match(document))
        except Exception:  # one subscriber's where must never stop the shared feed
            return False

    return matches


def parse_stream_where(text: str, rules: QueryRules) -> dict[str, Any]:
    """``where`` for a stream: the resource's rules, and only the operators
    Shoal matches on events itself."""
    where = parse_where(text, rules)
    _check_stream_operators(where)
    return where


#: RE2, quietly: a pattern it cannot take is the client's 400, not a log line.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def linear_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2, whose matching time grows linearly with
    the text: one subscriber's ``$regex`` runs on the worker's event loop for
    every event, so a pattern that backtracks (``^(a+)+$``) must not be able to
    stall it. 400 for what RE2 cannot match (backreferences, lookaround)."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        raise BadRequest(
            f"$regex {pattern!r} is not supported in the where of a stream: stream filters "
            "take regular expressions without backreferences or lookaround (RE2 syntax)"
        ) from None


class _LinearQuery(Query):  # type: ignore[misc]  # mongoquery has no types
    """mongoquery's matcher with ``$regex`` matched by RE2 (``linear_regex``)."""

    @staticmethod
    def _regex(condition: Any, entry: Any) -> bool:
        if not isinstance(entry, str) or not isinstance(condition, str):
            return False
        return linear_regex(condition).search(entry) is not None


def _check_stream_operators(value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _check_stream_operators(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key.startswith("$") and key not in STREAM_OPERATORS:
                raise BadRequest(f"{key} is not supported in the where of a stream")
            if key == "$regex":
                if not isinstance(item, str):
                    raise BadRequest("$regex takes a pattern (a string) in the where of a stream")
                linear_regex(item)
            if key == "$mod" and not (
                isinstance(item, list)
                and len(item) == 2
                and all(isinstance(n, int | float) and not isinstance(n, bool) for n in item)
                and item[0] != 0
            ):
                raise BadRequest("$mod takes [divisor, remainder]: two numbers, the divisor not 0")
            _check_stream_operators(item)


class Subscription:
    """One subscriber's queue of changes."""

    def __init__(self, matches: Matcher, backlog: int) -> None:
        self.matches = matches
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(backlog)
        self.backlog = backlog
        #: Why the subscription ended (None while it runs).
        self.ended: str | None = None
        #: While the gap is being read: live changes held back until it is done.
        self._held: list[Change] | None = None
        #: Ids the gap delivered, which the shared stream may deliver again.
        self._skip: set[str] = set()

    def offer(self, change: Change) -> None:
        """A change of the shared stream: queue it if it is for this subscriber."""
        if self.ended is not None:
            return
        if self._held is not None:
            if len(self._held) >= self.backlog:
                self.end("fell behind")
            else:
                self._held.append(change)
            return
        if self._skip:
            if change.id in self._skip:
                return
            self._skip.clear()  # the shared stream is past what the gap delivered
        if not self.matches(change):
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.end("fell behind")

    def end(self, reason: str) -> None:
        """End the subscription: what is queued is still delivered, then None."""
        if self.ended is None:
            self.ended = reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    async def next(self) -> Change | None:
        """The next change, or None once the subscription has ended."""
        if self.ended is not None and self.queue.empty():
            return None
        return await self.queue.get()

    def hold(self) -> None:
        self._held = []

    async def release(self, delivered: set[str]) -> None:
        """The gap is read: deliver the held changes it did not deliver."""
        held, self._held = self._held or [], None
        self._skip = set(delivered)
        for change in held:
            self.offer(change)


class ChangeFeed:
    """The change events of one resource on this worker."""

    def __init__(
        self,
        name: str,
        collection: str,
        storage: Storage,
        settings: StreamSettings,
        *,
        soft_delete: bool = False,
    ) -> None:
        self.name = name
        self.collection = collection
        #: The resource marks deletes (``_deleted``) rather than removing documents.
        self.soft_delete = soft_delete
        self.storage = storage
        self.settings = settings
        self.subscribers: set[Subscription] = set()
        self.recent: deque[Change] = deque(maxlen=settings.replay)
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()
        #: Set once the database said it has no change streams (the error).
        self.unsupported: ChangeStreamsUnsupported | None = None
        self._probed = False

    @property
    def following(self) -> bool:
        """Whether the shared stream is open: a change written from now on reaches
        every subscriber."""
        return self._opened.is_set()

    async def check_supported(self) -> None:
        """501 if the database has no change streams (asked once per feed; a
        database that cannot be reached now is asked again next time)."""
        if self.unsupported is not None:
            raise self.unsupported
        if self._probed:
            return
        try:
            stream = await self.storage.watch(self.collection, max_await_ms=10)
        except ChangeStreamsUnsupported as error:
            self.unsupported = error
            raise
        except ApiError:
            return
        self._probed = True
        await _close(stream)

    # -- subscribing -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(
        self, matches: Matcher, after: str | None = None
    ) -> AsyncIterator[tuple[Subscription, bool]]:
        """A subscription to the changes after event ``after`` (or from now),
        and whether the client's history was lost (it may have missed events)."""
        subscription = Subscription(matches, self.settings.backlog)
        self._start()
        lost = False
        replay = self._replay_from(after) if after is not None else None
        if replay is not None:
            for change in replay:  # no await until it is registered: nothing slips by
                subscription.offer(change)
            self.subscribers.add(subscription)
        else:
            if after is not None:
                subscription.hold()
            self.subscribers.add(subscription)
        try:
            if after is not None and replay is None:
                lost = not await self._read_gap(subscription, after)
            yield subscription, lost
        finally:
            self.subscribers.discard(subscription)
            if not self.subscribers:
                await self.stop()

    def _replay_from(self, after: str) -> list[Change] | None:
        """The changes this worker holds after event ``after``, if it holds it."""
        recent = list(self.recent)
        for index, change in enumerate(recent):
            if change.id == after:
                return recent[index + 1 :]
        return None

    async def _read_gap(self, subscription: Subscription, after: str) -> bool:
        """Deliver the changes after ``after`` from a stream of the subscriber's
        own, up to where the shared stream has them; False when MongoDB cannot
        resume after that event."""
        delivered: set[str] = set()
        try:
            # The gap must reach past the shared stream's start, or events between
            # the two would be lost.
            await asyncio.wait_for(self._opened.wait(), OPEN_TIMEOUT)
        except TimeoutError:
            await subscription.release(set())
            raise ServiceUnavailable("MongoDB is unreachable; retry shortly") from None
        try:
            stream = await self.storage.watch(
                self.collection, resume_after=resume_token(after), max_await_ms=10
            )
            try:
                while (event := await stream.try_next()) is not None:
                    change = self._change(event)
                    delivered.add(change.id)
                    if not subscription.matches(change):
                        continue
                    try:  # nothing reads the queue until the gap is read
                        subscription.queue.put_nowait(change)
                    except asyncio.QueueFull:
                        subscription.end("fell behind")
                        break
            finally:
                await _close(stream)
        except ResumeFailed:
            await subscription.release(set())
            return False
        await subscription.release(delivered)
        return True

    # -- the shared stream -------------------------------------------------

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._opened.clear()
            self._task = asyncio.create_task(self._follow(), name=f"changes:{self.name}")

    async def stop(self) -> None:
        """Stop the shared stream. What it read is forgotten: a client resuming
        later reads its gap from MongoDB, as nothing was read meanwhile."""
        task, self._task = self._task, None
        await cancel(task)
        self.recent.clear()

    def end_all(self, reason: str) -> None:
        for subscription in list(self.subscribers):
            subscription.end(reason)

    async def _follow(self) -> None:
        """Read the collection's changes and fan them out, resuming after errors."""
        token: Mapping[str, Any] | None = None
        failures = 0
        while True:
            try:
                stream = await self.storage.watch(self.collection, resume_after=token)
            except ChangeStreamsUnsupported as error:
                self.unsupported = error
                self.end_all(error.message)
                return
            except ResumeFailed:
                token = None
                self.end_all("the stream's history is gone; reconnect")
                continue
            except ApiError as error:
                await self._pause(error, failures)
                failures += 1
                continue
            self._opened.set()
            failures = 0
            try:
                token = stream.resume_token or token
                while True:
                    event = await stream.try_next()
                    if event is None:
                        token = stream.resume_token or token
                        await asyncio.sleep(POLL_INTERVAL)
                        if not stream.alive:
                            # The server ended the cursor and the stream closed
                            # itself (the stand-in ends a stream's cursor with the
                            # connection it was opened on): follow a new one.
                            break
                        continue
                    token = event["_id"]
                    self._publish(self._change(event))
            except ResumeFailed:
                token = None
                self.end_all("the stream's history is gone; reconnect")
            except ApiError as error:
                await self._pause(error, failures)
                failures += 1
            except Exception:
                # Not the database's: following again would fail the same way.
                logger.exception("the change stream of %s stopped", self.name)
                self.end_all("the stream stopped on the server; reconnect")
                return
            finally:
                await _close(stream)

    async def _pause(self, error: ApiError, failures: int) -> None:
        delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
        logger.warning("change stream of %s failed (%s); resuming in %gs", self.name, error, delay)
        await asyncio.sleep(delay)

    def _change(self, event: Mapping[str, Any]) -> Change:
        """An event as the resource's clients see it: with soft delete, a write
        that marks a document deleted is its delete (still carrying the
        document, for matching; a delete's answer never shows it)."""
        change = change_of(event)
        document = change.document
        if self.soft_delete and document is not None and document.get(DELETED) is True:
            return Change(change.id, "delete", change.document_id, document)
        return change

    def _publish(self, change: Change) -> None:
        self.recent.append(change)
        for subscription in list(self.subscribers):
            subscription.offer(change)


async def _close(stream: ChangeStream) -> None:
    with contextlib.suppress(ApiError):
        await stream.close()


class ChangeFeeds:
    """Every streamed resource's feed on this worker, and the worker's limit
    on open streams."""

    def __init__(self, resources: Resources, storage: Storage, settings: StreamSettings) -> None:
        self.feeds = {
            name: ChangeFeed(
                name,
                service.collection,
                storage,
                settings,
                soft_delete=service.resource.settings.soft_delete,
            )
            for name, service in resources.services.items()
            if service.resource.settings.streams
        }
        self.settings = settings
        self.open = 0
        self.closing = False

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self
        app.after_serving(self.close)

    async def check_supported(self, name: str) -> None:
        """501 when the database has no change streams."""
        await self.feeds[name].check_supported()

    def check_capacity(self) -> None:
        """503 when this worker serves no more streams (its limit, or shutting down)."""
        if self.closing:
            raise ServiceUnavailable("this server is shutting down; reconnect", retry_after=1)
        if self.open >= self.settings.max_per_worker:
            raise ServiceUnavailable(
                f"this server has {self.open} open streams, its limit; retry shortly",
                retry_after=1,
            )

    @contextlib.asynccontextmanager
    async def subscribe(
        self, name: str, matches: Matcher, after: str | None
    ) -> AsyncIterator[tuple[Subscription, bool]]:
        """A subscription to resource ``name``; ServiceUnavailable beyond the
        worker's limit, or while MongoDB cannot be reached to resume."""
        self.check_capacity()
        self.open += 1
        try:
            async with self.feeds[name].subscribe(matches, after) as subscribed:
                yield subscribed
        finally:
            self.open -= 1

    async def close(self) -> None:
        """End every subscription (they end cleanly) and stop every stream."""
        self.closing = True
        for feed in self.feeds.values():
            feed.end_all("the server is shutting down; reconnect")
        await asyncio.gather(*(feed.stop() for feed in self.feeds.values()))
