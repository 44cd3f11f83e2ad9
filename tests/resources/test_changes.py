"""The change feed's own rules, on a scripted database: what one subscriber's
filter, a large gap or an unexpected failure does to the shared stream.

The HTTP behaviour of streams (events, resuming on another instance, limits)
is tested in tests/api/test_streams.py against the engines; these are the
faults those engines cannot be made to produce on demand.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import pytest

from shoal.config import StreamSettings
from shoal.errors import ApiError, BadRequest
from shoal.resources import Access
from shoal.resources.changes import Change, ChangeFeed, matcher, parse_stream_where
from shoal.resources.query import QueryRules
from shoal.storage import Storage

Step = dict[str, Any] | Exception | None


def insert(n: int) -> dict[str, Any]:
    return {
        "_id": {"_data": f"token-{n:04d}"},
        "operationType": "insert",
        "documentKey": {"_id": n},
        "fullDocument": {"_id": n, "n": n},
    }


class ScriptedStream:
    """A change stream that answers ``try_next`` from a script, then None."""

    def __init__(self, script: list[Step], *, ends: bool = False) -> None:
        self.script = deque(script)
        self.resume_token: dict[str, Any] | None = None
        #: Whether it closes itself once its script is read, as a stream does
        #: when the server ends its cursor.
        self.ends = ends

    @property
    def alive(self) -> bool:
        return not (self.ends and not self.script)

    async def try_next(self) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        if not self.script:
            return None
        step = self.script.popleft()
        if isinstance(step, Exception):
            raise step
        return step

    async def close(self) -> None:
        return None


class ScriptedStorage:
    """``watch`` hands out the next scripted stream: the shared one first."""

    def __init__(self, *scripts: list[Step], ending: bool = False) -> None:
        self.scripts = deque(scripts)
        self.ending = ending  # the scripted streams close themselves at their end
        self.watched = 0

    async def watch(self, collection: str, **options: Any) -> ScriptedStream:
        self.watched += 1
        script = self.scripts.popleft() if self.scripts else []
        return ScriptedStream(script, ends=self.ending and bool(self.scripts))


def feed(storage: ScriptedStorage, backlog: int = 100) -> ChangeFeed:
    settings = StreamSettings(backlog=backlog)
    return ChangeFeed("books", "books", cast(Storage, storage), settings)


def everything(change: Change) -> bool:
    return True


async def until(done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.01)


def test_a_where_the_matcher_cannot_evaluate_matches_nothing() -> None:
    # mongoquery cannot evaluate $options; the feed must not fail on it.
    matches = matcher(Access(), {"n": {"$regex": "a", "$options": "i"}})
    assert matches(Change("id", "insert", 1, {"_id": 1, "n": "a"})) is False


def test_regex_options_are_refused_in_a_stream_where_even_where_regex_is_allowed() -> None:
    rules = QueryRules(
        pagination_limit=50, default_max_results=25, count=True, allow_regex=True, max_depth=8
    )
    assert parse_stream_where('{"n": {"$regex": "a"}}', rules) == {"n": {"$regex": "a"}}
    with pytest.raises(BadRequest, match=r"\$options"):
        parse_stream_where('{"n": {"$regex": "a", "$options": "i"}}', rules)


async def test_a_gap_larger_than_the_backlog_ends_the_subscription_instead_of_hanging() -> None:
    shared: list[Step] = []
    gap: list[Step] = [insert(n) for n in range(5)]
    changes = feed(ScriptedStorage(shared, gap), backlog=3)
    async with asyncio.timeout(5):
        async with changes.subscribe(everything, after="token-0000") as (subscription, lost):
            assert not lost
            received = []
            while (change := await subscription.next()) is not None:
                received.append(change.document_id)
    assert subscription.ended == "fell behind"
    assert received == [0, 1, 2]  # what fitted is still delivered, in order
    await changes.stop()


async def test_a_database_error_while_reading_pauses_the_feed_which_resumes() -> None:
    failed: list[Step] = [insert(1), ApiError("the database failed", status=500)]
    changes = feed(ScriptedStorage(failed, [insert(2)]))
    async with changes.subscribe(everything) as (subscription, _):
        async with asyncio.timeout(5):
            first, second = await subscription.next(), await subscription.next()
        assert first is not None
        assert first.document_id == 1
        assert second is not None
        assert second.document_id == 2
        assert subscription.ended is None
    await changes.stop()


async def test_a_stream_the_server_ended_is_followed_by_a_new_one() -> None:
    """A stream whose cursor the server ended returns nothing more, ever (after a
    cut connection the stand-in ends it; MongoDB, after an invalidating event):
    the feed opens a new one instead of waiting on it for ever."""
    storage = ScriptedStorage([insert(1)], [insert(2)], ending=True)
    changes = feed(storage)
    async with changes.subscribe(everything) as (subscription, _):
        async with asyncio.timeout(5):
            first, second = await subscription.next(), await subscription.next()
        assert first is not None
        assert first.document_id == 1
        assert second is not None
        assert second.document_id == 2
        assert storage.watched == 2
    await changes.stop()


async def test_an_unexpected_failure_ends_every_subscription_with_a_reason() -> None:
    changes = feed(ScriptedStorage([insert(1), RuntimeError("a bug")]))
    async with changes.subscribe(everything) as (subscription, _):
        async with asyncio.timeout(5):
            first, end = await subscription.next(), await subscription.next()
    assert first is not None
    assert first.document_id == 1
    assert end is None
    assert subscription.ended == "the stream stopped on the server; reconnect"
    await changes.stop()  # the feed stopped cleanly: nothing to raise


async def test_one_subscribers_where_does_not_stop_the_others() -> None:
    changes = feed(ScriptedStorage([insert(1), insert(2)]))
    broken = matcher(Access(), {"n": {"$regex": "a", "$options": "i"}})
    async with (
        changes.subscribe(broken) as (quiet, _),
        changes.subscribe(everything) as (
            listening,
            _,
        ),
    ):
        async with asyncio.timeout(5):
            got = [await listening.next(), await listening.next()]
        assert [change.document_id for change in got if change] == [1, 2]
        assert quiet.queue.empty()
        assert quiet.ended is None
    await until(lambda: not changes.subscribers)
    await changes.stop()
