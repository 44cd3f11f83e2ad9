"""Every MongoDB operation Shoal makes ends within its deadline
(``mongodb.operation_timeout_ms``), even when MongoDB takes the request and
never answers: Toxiproxy drops what Shoal sends, and the connection hangs.

Without the deadline such an operation waits until the driver's own monitor
gives up on the server (``connectTimeoutMS``, 20 s, after its next heartbeat).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.engine import MongoURI, with_address
from bson import ObjectId

from shoal.config import MongoDBSettings
from shoal.errors import ServiceUnavailable
from shoal.storage import Storage
from tests.utils.toxiproxy import Proxy, Toxiproxy

DEADLINE_MS = 500
#: Time beyond the deadline for the event loop and the driver to give up.
SLACK = 1.0


@pytest.fixture
def proxied(mongodb_uri: str, tmp_path: Path) -> Iterator[tuple[Proxy, str]]:
    """A Toxiproxy in front of the test's MongoDB; the URI through it."""
    host, port = MongoURI.parse(mongodb_uri).address()
    with Toxiproxy(tmp_path / "toxiproxy") as toxiproxy:
        proxy = toxiproxy.proxy("mongodb", f"{host}:{port}")
        yield proxy, with_address(mongodb_uri, "127.0.0.1", proxy.port)


async def test_an_operation_on_a_blackholed_mongodb_is_a_503_at_its_deadline(
    proxied: tuple[Proxy, str],
) -> None:
    proxy, uri = proxied
    settings = MongoDBSettings(
        uri=uri, database=f"deadline_{ObjectId()}", operation_timeout_ms=DEADLINE_MS
    )
    storage = Storage(settings)
    await storage.open()
    try:
        await storage.insert_many("books", [{"title": "Before"}])
        with proxy.toxic("timeout", streams=("upstream",), timeout=0):
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable, match="did not answer in time"):
                # The outer bound only keeps a regression from hanging the suite.
                await asyncio.wait_for(storage.find_one("books", {}), 30)
            waited = time.monotonic() - started
        assert DEADLINE_MS / 1000 <= waited <= DEADLINE_MS / 1000 + SLACK, waited
        # The link is back: the next operation is answered, with no restart.
        found = await storage.find_one("books", {})
        assert found is not None
        assert found["title"] == "Before"
    finally:
        await storage.client.drop_database(settings.database)
        await storage.close()


def test_an_operation_with_its_own_time_limit_gets_that_much_longer() -> None:
    storage = Storage(MongoDBSettings(uri="mongodb://127.0.0.1:1", operation_timeout_ms=2000))
    assert storage.deadline() == 2.0
    assert storage.deadline(60_000) == 62.0


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_a_change_stream_read_on_a_blackholed_mongodb_is_a_503_at_its_deadline(
    proxied: tuple[Proxy, str],
) -> None:
    """A stream's read waits up to its ``maxAwaitTimeMS`` for changes, and no
    longer than the deadline beyond that."""
    proxy, uri = proxied
    settings = MongoDBSettings(
        uri=uri, database=f"deadline_{ObjectId()}", operation_timeout_ms=DEADLINE_MS
    )
    storage = Storage(settings)
    await storage.open()
    try:
        await storage.insert_many("books", [{"title": "Before"}])
        stream = await storage.watch("books", max_await_ms=100)
        assert await stream.try_next() is None
        with proxy.toxic("timeout", streams=("upstream",), timeout=0):
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable, match="did not answer in time"):
                await asyncio.wait_for(stream.try_next(), 30)
            waited = time.monotonic() - started
        assert waited <= (DEADLINE_MS + 100) / 1000 + SLACK, waited
    finally:
        await storage.client.drop_database(settings.database)
        await storage.close()
