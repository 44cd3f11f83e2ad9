"""Slow clients against a real `shoal serve`, over real sockets: a body that comes
too slowly gets 408 within its deadline and leaves nothing behind, on a public
POST, an authenticated PATCH and a Data API action; slow senders never hold an
admission slot; a client that stops reading a large answer has its connection
reset within ``send_timeout``, and others are served meanwhile.

The server runs with one admission slot and a one-second queue, so a request
that held the slot while waiting on its client would show as a 503 for the next.
Time bounds here are the configured deadlines plus ``SLACK``, what a loaded
machine may add to them; none is a speed target.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pymongo import MongoClient

from tests.utils.auth import bearer
from tests.utils.data_api import SOURCE, data_api_config
from tests.utils.live import LiveServer, live_example
from tests.utils.settings import example_resources

BODY_TIMEOUT = 5.0
BODY_GRACE = 0.5
BODY_MIN_RATE = 1000
SEND_TIMEOUT = 2.0
#: Seconds a loaded machine may add to a deadline (scheduling, the answer's trip).
SLACK = 2.0
#: Large notes, and how many make a list answer far larger than loopback's
#: kernel buffers (a few MB), so that the rest waits in the worker.
NOTE_BYTES = 200_000
NOTES_IN_LIST = 50

NOTES = {
    "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET"],
    "public_methods": ["GET", "POST"],
    "public_item_methods": ["GET"],
    "pagination_limit": NOTES_IN_LIST,
}


@dataclass(frozen=True)
class Served:
    server: LiveServer
    data_api_database: str
    mongodb_uri: str

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.server.url)
        assert parts.hostname is not None
        assert parts.port is not None
        return parts.hostname, parts.port

    def count(self, database: str, collection: str, query: dict[str, Any]) -> int:
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongodb_uri)
        try:
            return client[database][collection].count_documents(query)
        finally:
            client.close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str
) -> Iterator[Served]:
    database = f"slow_{uuid.uuid4().hex[:10]}"
    with live_example(
        tmp_path_factory.mktemp("slow-clients"),
        mongodb_uri,
        redis_url,
        resources={**example_resources(), "notes": NOTES},
        slow_clients={
            "body_timeout": BODY_TIMEOUT,
            "body_grace": BODY_GRACE,
            "body_min_rate": BODY_MIN_RATE,
            "send_timeout": SEND_TIMEOUT,
        },
        admission={"max_in_flight": 1, "queue_timeout": 1},
        data_api=data_api_config(database, notes={"roles": ["editor"]}),
    ) as server:
        yield Served(server, database, mongodb_uri)


# -- a raw HTTP/1.1 client ---------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the request's first byte

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def send_slowly(
    served: Served,
    method: str,
    path: str,
    *,
    first: bytes,
    declared: int,
    headers: dict[str, str] | None = None,
    then: tuple[int, float] | None = None,
    wait: float = BODY_TIMEOUT + SLACK,
) -> tuple[Answer, bool]:
    """Send the head of a request announcing ``declared`` body bytes and the
    ``first`` of them, then ``then`` = (bytes, every seconds) until an answer
    comes (or nothing more); the answer, and whether the server then closed
    the connection."""
    host, port = served.address
    reader, writer = await asyncio.open_connection(host, port)
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {declared}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    started = time.monotonic()
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + first)

    async def trickle() -> None:
        if then is None:
            return
        size, every = then
        sent = len(first)
        while sent + size < declared:
            await asyncio.sleep(every)
            writer.write(b" " * size)
            sent += size

    feeding = asyncio.create_task(trickle())
    try:
        status, answer_headers, body = await asyncio.wait_for(_read_answer(reader), wait)
        seconds = time.monotonic() - started
        try:
            closed = await asyncio.wait_for(reader.read(1), SLACK) == b""
        except ConnectionResetError:
            closed = True
    finally:
        feeding.cancel()
        writer.close()
    return Answer(status, answer_headers, body, seconds), closed


def assert_late_body(answer: Answer, closed: bool, deadline: float) -> None:
    """A 408 with Shoal's JSON error, no sooner than ``deadline`` allows and no
    later than it plus the slack, on a connection the server then closed."""
    assert answer.status == 408, answer
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-request-id"]
    error = answer.json
    assert error["_status"] == "ERR"
    assert error["_error"]["code"] == 408
    assert "did not arrive in time" in error["_error"]["message"]
    assert error["_error"]["request_id"] == answer.headers["x-request-id"]
    assert BODY_GRACE <= answer.seconds <= deadline + SLACK, answer.seconds
    assert closed


def stalled_deadline(first: bytes) -> float:
    """When a body that stops after ``first`` falls behind the minimum rate."""
    return BODY_GRACE + len(first) / BODY_MIN_RATE


# -- bodies ------------------------------------------------------------------------


async def test_a_stalled_body_on_a_public_post_gets_408_and_nothing_is_stored(
    served: Served,
) -> None:
    marker = uuid.uuid4().hex
    # A whole JSON document, followed (the client says) by 10,000 more bytes.
    first = json.dumps({"text": marker}).encode()
    answer, closed = await send_slowly(served, "POST", "/notes", first=first, declared=10_000)
    assert_late_body(answer, closed, stalled_deadline(first))
    database = served.server.settings.mongodb.database
    assert served.count(database, "notes", {"text": marker}) == 0


async def test_a_stalled_body_on_an_authenticated_patch_gets_408_and_changes_nothing(
    served: Served,
) -> None:
    headers = bearer(served.server.token("editor"))
    async with httpx.AsyncClient(base_url=served.server.url, headers=headers) as http:
        created = (await http.post("/books", json={"title": "Kindred", "year": 1979})).json()
        first = json.dumps({"year": 1980}).encode()
        answer, closed = await send_slowly(
            served,
            "PATCH",
            f"/books/{created['_id']}",
            first=first,
            declared=5_000,
            headers={**headers, "If-Match": created["_etag"]},
        )
        assert_late_body(answer, closed, stalled_deadline(first))
        after = (await http.get(f"/books/{created['_id']}")).json()
    assert after["year"] == 1979
    assert after["_etag"] == created["_etag"]


async def test_a_stalled_body_on_a_data_api_action_gets_408_and_inserts_nothing(
    served: Served,
) -> None:
    marker = uuid.uuid4().hex
    namespace = {"dataSource": SOURCE, "database": served.data_api_database, "collection": "notes"}
    first = json.dumps({**namespace, "document": {"text": marker}}).encode()
    answer, closed = await send_slowly(
        served,
        "POST",
        "/action/insertOne",
        first=first,
        declared=10_000,
        headers=bearer(served.server.token("editor")),
    )
    # Shoal's own error body: the body never reached the Data API's routes.
    assert_late_body(answer, closed, stalled_deadline(first))
    assert served.count(served.data_api_database, "notes", {"text": marker}) == 0


async def test_a_body_that_keeps_the_rate_still_ends_at_body_timeout(served: Served) -> None:
    # 2,000 bytes at once, then 2,000 bytes/s: twice the minimum rate, for ever.
    answer, closed = await send_slowly(
        served, "POST", "/notes", first=b" " * 2000, declared=1_000_000, then=(200, 0.1)
    )
    assert_late_body(answer, closed, BODY_TIMEOUT)
    assert answer.seconds >= BODY_TIMEOUT


async def test_a_late_body_claims_no_idempotency_key(served: Served) -> None:
    key = {"Idempotency-Key": f"slow-{uuid.uuid4().hex}"}
    marker = uuid.uuid4().hex
    first = json.dumps({"text": marker}).encode()
    late, _ = await send_slowly(served, "POST", "/notes", first=first, declared=10_000, headers=key)
    assert late.status == 408
    async with httpx.AsyncClient(base_url=served.server.url, timeout=10) as http:
        done = await http.post("/notes", json={"text": marker}, headers=key)
        again = await http.post("/notes", json={"text": marker}, headers=key)
    assert done.status_code == 201, done.text  # the key was free: done now, not replayed
    assert "Idempotent-Replayed" not in done.headers
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    database = served.server.settings.mongodb.database
    assert served.count(database, "notes", {"text": marker}) == 1


async def test_a_body_in_pieces_within_its_deadlines_is_stored(served: Served) -> None:
    marker = uuid.uuid4().hex
    body = json.dumps({"text": marker}).encode()
    host, port = served.address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"POST /notes HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        for piece in (body[:5], body[5:15], body[15:]):
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        status, _, answer = await asyncio.wait_for(_read_answer(reader), BODY_TIMEOUT + SLACK)
    finally:
        writer.close()
    assert status == 201, answer
    database = served.server.settings.mongodb.database
    assert served.count(database, "notes", {"text": marker}) == 1


async def test_slow_senders_hold_no_admission_slot(served: Served) -> None:
    # One slot, a one-second queue: five bodies taking their time (within their
    # deadlines) would turn every other request away with 503 if they held it.
    senders = [
        asyncio.create_task(
            send_slowly(served, "POST", "/notes", first=b" " * 2000, declared=1_000_000,
                        then=(200, 0.1))
        )
        for _ in range(5)
    ]  # fmt: skip
    try:
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=served.server.url, timeout=10) as http:
            statuses = [(await http.get("/books")).status_code for _ in range(5)]
        assert not any(task.done() for task in senders)  # still sending all along
    finally:
        results = await asyncio.gather(*senders, return_exceptions=True)
    assert statuses == [200] * 5
    answers = [result[0] for result in results if not isinstance(result, BaseException)]
    assert [answer.status for answer in answers] == [408] * 5, results


# -- readers -----------------------------------------------------------------------


def _seed_large_notes(served: Served) -> int:
    """NOTES_IN_LIST notes of NOTE_BYTES each; the size of their list answer."""
    text = "n" * NOTE_BYTES
    with httpx.Client(base_url=served.server.url, timeout=30) as http:
        for _ in range(NOTES_IN_LIST // 4):
            posted = http.post("/notes", json=[{"text": text}] * 4)
            assert posted.status_code == 201, posted.text
        listed = http.get(f"/notes?max_results={NOTES_IN_LIST}")
    assert listed.status_code == 200
    return len(listed.content)


def _hung_up(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP)
    return bool(poller.poll(int(timeout * 1000)))


def test_a_reader_that_stops_reading_is_cut_off_and_others_are_served(served: Served) -> None:
    size = _seed_large_notes(served)
    assert size > 8_000_000
    reader = socket.socket()
    try:
        # A small receive window, and nothing read: the answer stops in the worker.
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(served.address)
        reader.sendall(
            f"GET /notes?max_results={NOTES_IN_LIST} HTTP/1.1\r\nHost: shoal\r\n\r\n".encode()
        )
        # Its answer has started (peeked at, not taken) ...
        reader.settimeout(30)
        assert reader.recv(12, socket.MSG_PEEK).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        # ... and while it waits for the client, the one slot serves others.
        with httpx.Client(base_url=served.server.url, timeout=10) as http:
            statuses = [http.get("/books").status_code for _ in range(5)]
        assert statuses == [200] * 5
        # The connection is reset once a send has waited SEND_TIMEOUT.
        assert _hung_up(reader, SEND_TIMEOUT + SLACK)
        assert time.monotonic() - started <= SEND_TIMEOUT + SLACK
        received = 0
        reader.settimeout(SLACK)
        try:
            while chunk := reader.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < size  # cut short
    finally:
        reader.close()
    with httpx.Client(base_url=served.server.url, timeout=10) as http:
        assert http.get(f"/notes?max_results={NOTES_IN_LIST}").status_code == 200
