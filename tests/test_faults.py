"""Faults on the wire: Toxiproxy between Shoal and Redis, and between Shoal and
MongoDB, while a bounded mixed load goes through two `shoal serve` instances
behind nginx.

The load, one loop per kind of request, each sent once: anonymous reads of a
book, of a page of books and of an author (a resource no request writes, so
its cached answers stay valid), POSTs with an API key with and without an
``Idempotency-Key``, logins, and a change-stream subscriber (on an engine
with change streams).

Each fault is put on one service's link, for ``WINDOW`` seconds (the flap:
10 s) while the load runs, then taken off:

- ``latency``: every reply 300 ms late;
- ``blackhole``: what Shoal sends goes nowhere, and the connection hangs
  (Toxiproxy's ``timeout`` toxic on the upstream direction);
- ``reset_peer``: every connection is reset as Shoal sends on it, open or new;
- ``slow_close``: a connection's close reaches the other side 1 s late;
- ``bandwidth``: 10 KB/s each way;
- ``flap``: the link is down 500 ms (open connections closed, new ones
  refused), up 500 ms, for 10 s.

The blackhole and the reset act on what Shoal sends, so a request they meet
never reaches the service: a write refused then is known not to be stored.
The flap cuts connections whatever is on them, so a write can be done and its
answer lost (stored, answered 503): the test says how often, and checks that
such writes are stored at most once and that keyed ones, sent again with
their key, are stored exactly once.

For each fault the test checks that no answer is a 500 (or any 5xx but 503,
or a broken connection); that each 503 carries ``Retry-After``; that every
answer came within the bound of its service (below, from the timeouts the
config sets); that what does not need the faulty service kept serving; that
every acknowledged write is stored exactly once and no refused one is
stored; and that once the fault is off, both instances serve everything
again within ``RECOVERY_BOUND`` seconds, with no restart.

Every load is bounded in requests and seconds; every process (Redis,
Toxiproxy, the instances, nginx) is stopped by its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.engine import MongoURI, with_address
from benchmarks.local_stack import LocalStack
from pymongo import MongoClient

from tests.utils.gaps import ENGINE_GAPS
from tests.utils.processes import run_shoal
from tests.utils.scaleout import PASSWORD, create_user, running_stack, stack_config
from tests.utils.servers import RedisServer
from tests.utils.settings import example_resources
from tests.utils.toxiproxy import Proxy, Toxiproxy

# --- the timeouts the instances are configured with, and the bounds they give ----------------

#: redis.socket_timeout (its default): every Redis call ends within it. With
#: 300 ms of latency a call on a new connection takes four round trips (the
#: handshake's three and its own), well within it.
REDIS_TIMEOUT = 2.0
#: mongodb.operation_timeout_ms: every MongoDB operation ends within it.
MONGODB_TIMEOUT = 2.0
#: mongodb.server_selection_timeout_ms, in seconds.
SELECTION_TIMEOUT = 2.0
#: idempotency.lock_ttl: a claim whose request never finished lapses after it.
LOCK_TTL = 2

#: The longest answer while Redis is faulty. A request meets at most two Redis
#: calls that wait the whole timeout before it fails or carries on without
#: Redis (the rate limit, then the cache or a session; after a failure a worker
#: leaves the cache and the limiter alone for a second). On a slow link its
#: calls are answered: a login, the request with the most of them, makes seven
#: (2.1 s at 300 ms each), a new connection's handshake adds three round trips.
#: Its MongoDB work is quick here: a second covers that and the rest.
REDIS_BOUND = 2 * REDIS_TIMEOUT + 1.0
#: The longest answer while MongoDB is faulty. Each operation ends within its
#: timeout (server selection included), and a request of the mix makes two at
#: most (a login reads the user, then reads it again after its not-before
#: mark; a page reads the documents, then their count): during a flap each may
#: wait nearly that long for a usable server and still succeed. Its Redis calls
#: and the rest are quick here.
MONGODB_BOUND = 2 * MONGODB_TIMEOUT + 1.0
BOUNDS = {"redis": REDIS_BOUND, "mongodb": MONGODB_BOUND}
#: From the fault's end until both instances serve every kind of request: a
#: worker that saw Redis fail leaves the cache and the limiter alone for 1 s,
#: and a call in flight ends within its timeout; the MongoDB client finds its
#: server again within half a second of asking (its shortest heartbeat).
RECOVERY_BOUND = 1.0 + max(REDIS_TIMEOUT, MONGODB_TIMEOUT) + 2.0

#: Seconds each fault lasts (the flap lasts FLAP_SECONDS): long enough for a
#: request to wait out two Redis timeouts (the rate limit's, then its own) and
#: be refused while the fault lasts.
WINDOW = 2 * REDIS_TIMEOUT + 1.0
FLAP_SECONDS = 10.0
#: Seconds of load before the fault goes on.
LEAD = 0.5
#: Requests each load loop sends at most per case (the window bounds it first).
MAX_PER_LOOP = 300
#: A client gives up on an answer after this long: far beyond every bound, so
#: a hang shows as an answer too slow, not as a stuck test.
CLIENT_TIMEOUT = 30.0

READS = ("item", "list", "author")
KINDS = (*READS, "plain", "keyed", "login")


@dataclass(frozen=True)
class Fault:
    name: str
    #: Whether the fault can cut a reply that is on its way (a write done, its
    #: answer lost); the others act on what Shoal sends, or only slow things.
    cuts_replies: bool = False
    #: Whether requests may fail at all: a slow link must only be slower.
    outage: bool = True
    #: The services on whose link the fault surely refuses something that needs
    #: the service (the test checks that it was met). A flapping MongoDB link
    #: refuses only the requests in flight at a cut: for one sent while the link
    #: is down the driver waits for its server (server_selection_timeout_ms),
    #: longer than the link stays down, and goes on.
    refuses: tuple[str, ...] = ("redis", "mongodb")

    def apply(self, proxy: Proxy) -> None:
        """Put the fault on ``proxy`` for its time, then take it off."""
        if self.name == "flap":
            ends = time.monotonic() + FLAP_SECONDS
            while time.monotonic() < ends:
                proxy.enable(False)
                time.sleep(0.5)
                proxy.enable(True)
                time.sleep(0.5)
            return
        kind, streams, attributes = TOXICS[self.name]
        with proxy.toxic(kind, streams=streams, **attributes):
            time.sleep(WINDOW)


UP, DOWN, BOTH = ("upstream",), ("downstream",), ("upstream", "downstream")
TOXICS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "latency": ("latency", DOWN, {"latency": 300}),
    "blackhole": ("timeout", UP, {"timeout": 0}),
    "reset_peer": ("reset_peer", UP, {"timeout": 0}),
    "slow_close": ("slow_close", BOTH, {"delay": 1000}),
    "bandwidth": ("bandwidth", BOTH, {"rate": 10}),
}
FAULTS = [
    Fault("latency", outage=False),
    Fault("blackhole"),
    Fault("reset_peer"),
    Fault("slow_close", outage=False),
    Fault("bandwidth", outage=False),
    Fault("flap", cuts_replies=True, refuses=("redis",)),
]


# --- the deployment -----------------------------------------------------------------------------


@dataclass
class Wire:
    stack: LocalStack
    proxies: dict[str, Proxy]
    mongodb_uri: str  # the engine itself, not through Toxiproxy
    database: str
    api_key: str
    book: str  # ids of documents the reads ask for
    author: str
    streams: bool  # whether the engine has change streams

    def stored_titles(self, prefix: str) -> Counter[str]:
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongodb_uri)
        try:
            found = client[self.database]["books"].find(
                {"title": {"$regex": f"^{re.escape(prefix)}"}}, {"title": 1}
            )
            return Counter(str(document["title"]) for document in found)
        finally:
            client.close()


def _resources() -> dict[str, Any]:
    resources = example_resources()
    resources["books"] = {**resources["books"], "cache_ttl": 60, "streams": True}
    # Never written by the load: its cached answers stay valid for the whole module.
    resources["authors"] = {**resources["authors"], "cache_ttl": 3600}
    return resources


def _stream_status(url: str) -> int:
    """The status a subscriber to the books' stream gets (the stream is left at once)."""
    with httpx.stream("GET", f"{url}/books/_stream", timeout=5) as response:
        return response.status_code


def _api_key(config: Path, mongodb_uri: str) -> str:
    arguments = ["apikeys", "create", "--role", "editor", "--name", "load", "--config", str(config)]
    result = run_shoal(arguments, cwd=config.parent, env={"SHOAL_MONGODB_URI": mongodb_uri})
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.split() if line.startswith("shoal_"))


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, engine: str) -> Iterator[Wire]:
    """Two one-worker instances behind nginx, reaching a Redis of their own and
    the engine's MongoDB through Toxiproxy."""
    workdir = tmp_path_factory.mktemp(f"faults-{engine}")
    redis = RedisServer(workdir / "redis").start()
    try:
        with Toxiproxy(workdir / "toxiproxy") as toxiproxy:
            host, port = MongoURI.parse(mongodb_uri).address()
            proxies = {
                "redis": toxiproxy.proxy("redis", f"127.0.0.1:{redis.port}"),
                "mongodb": toxiproxy.proxy("mongodb", f"{host}:{port}"),
            }
            unique = uuid.uuid4().hex[:12]
            database = f"faults_{unique}"
            config = stack_config(
                workdir / "config",
                resources=_resources(),
                mongodb={
                    "database": database,
                    "server_selection_timeout_ms": int(SELECTION_TIMEOUT * 1000),
                    "operation_timeout_ms": int(MONGODB_TIMEOUT * 1000),
                },
                redis={"key_prefix": f"faults:{unique}:", "socket_timeout": REDIS_TIMEOUT},
                idempotency={"lock_ttl": LOCK_TTL},
                # A login whose attempt Redis counted and whose answer the flap cut
                # is counted as a failure (nothing can take it back); many of them
                # would slow the next cases' logins. Not what these tests are about.
                auth={"login_slowdown_after": 10_000, "login_lockout_after": 10_000},
                rate_limits={"read": "100000/minute", "write": "100000/minute"},
                streams={"heartbeat": 1.0},
            )
            with running_stack(
                workdir / "run",
                config,
                mongodb_uri=with_address(mongodb_uri, "127.0.0.1", proxies["mongodb"].port),
                redis_url=f"redis://{proxies['redis'].listen}/0",
                instances=2,
            ) as stack:
                create_user(stack, config, "reader", "editor")
                key = _api_key(config, mongodb_uri)
                headers = {"X-API-Key": key}
                book = httpx.post(f"{stack.url}/books", json={"title": "Seed"}, headers=headers)
                author = httpx.post(f"{stack.url}/authors", json={"name": "Seed"}, headers=headers)
                assert (book.status_code, author.status_code) == (201, 201), author.text
                yield Wire(
                    stack=stack,
                    proxies=proxies,
                    mongodb_uri=mongodb_uri,
                    database=database,
                    api_key=key,
                    book=book.json()["_id"],
                    author=author.json()["_id"],
                    streams=_stream_status(stack.url) == 200,
                )
    finally:
        redis.stop()


# --- the load -------------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str
    status: int  # 0: no answer (a broken connection, or the client gave up)
    seconds: float
    retry_after: str | None
    detail: str


@dataclass
class Load:
    case: str
    answers: list[Answer] = field(default_factory=list)
    #: Idempotency-Key → title, for every keyed write sent; and those acknowledged.
    keyed: dict[str, str] = field(default_factory=dict)
    keyed_done: set[str] = field(default_factory=set)
    plain_done: list[str] = field(default_factory=list)
    plain_refused: list[str] = field(default_factory=list)

    def by(self, kind: str) -> list[Answer]:
        return [answer for answer in self.answers if answer.kind == kind]


class Client:
    """The requests of the load, through nginx."""

    def __init__(self, wire: Wire, http: httpx.AsyncClient, load: Load) -> None:
        self.wire = wire
        self.http = http
        self.load = load

    async def send(self, kind: str, n: int) -> Answer:
        wire, load = self.wire, self.load
        key_header = {"X-API-Key": wire.api_key}
        title = f"{load.case} {kind} {n}"
        started = time.monotonic()
        try:
            if kind == "item":
                response = await self.http.get(f"/books/{wire.book}")
            elif kind == "list":
                response = await self.http.get("/books", params={"max_results": 5})
            elif kind == "author":
                response = await self.http.get(f"/authors/{wire.author}")
            elif kind == "plain":
                response = await self.http.post("/books", json={"title": title}, headers=key_header)
            elif kind == "keyed":
                key = f"{load.case}-{n}-{uuid.uuid4()}"
                load.keyed[key] = title
                headers = {**key_header, "Idempotency-Key": key}
                response = await self.http.post("/books", json={"title": title}, headers=headers)
                if response.status_code == 201:
                    load.keyed_done.add(key)
            else:
                response = await self.http.post(
                    "/auth/login", json={"username": "reader", "password": PASSWORD}
                )
        except httpx.HTTPError as error:
            answer = Answer(kind, 0, time.monotonic() - started, None, repr(error))
        else:
            answer = Answer(
                kind,
                response.status_code,
                time.monotonic() - started,
                response.headers.get("Retry-After"),
                response.text[:200],
            )
        if kind == "plain":
            (load.plain_done if answer.status == 201 else load.plain_refused).append(title)
        return answer


async def _loop(client: Client, kind: str, stop: asyncio.Event) -> None:
    for n in range(MAX_PER_LOOP):
        if stop.is_set():
            return
        client.load.answers.append(await client.send(kind, n))
        await asyncio.sleep(0.02)


@dataclass
class Subscriber:
    """A change-stream subscriber through nginx: the titles of the inserts it saw.
    It reconnects with Last-Event-ID when its stream ends."""

    url: str
    titles: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    last_id: str | None = None

    async def run(self, ends: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            while time.monotonic() < ends:
                headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
                try:
                    async with http.stream("GET", "/books/_stream", headers=headers) as response:
                        self.statuses.append(response.status_code)
                        if response.status_code != 200:
                            await asyncio.sleep(0.5)
                            continue
                        self.opened.set()
                        await self._read(response)
                except httpx.HTTPError:
                    self.statuses.append(0)
                    await asyncio.sleep(0.2)

    async def _read(self, response: httpx.Response) -> None:
        event_id, data = None, None
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and data is not None:
                body = json.loads(data)
                document = body.get("document") or {}
                if body.get("operation") == "insert" and "title" in document:
                    self.titles.add(str(document["title"]))
                if event_id:
                    self.last_id = event_id
                event_id, data = None, None


# --- one case -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    load: Load
    recovery: float
    probes: list[str]  # titles written once the fault was off
    subscriber: Subscriber | None
    seconds: float


async def _recover(wire: Wire, http: httpx.AsyncClient, load: Load) -> tuple[float, list[str]]:
    """Rounds of one request of each kind, and each instance's /readyz, until all
    succeed; the seconds that took, and the titles the rounds wrote."""
    client = Client(wire, http, Load(f"{load.case} recovery"))
    started = time.monotonic()
    for n in range(300):  # bounded: 300 rounds, and the deadline below
        answers = await asyncio.gather(*(client.send(kind, n) for kind in KINDS))
        ready = [
            (await http.get(f"{wire.stack.instance_url(index)}/readyz")).status_code
            for index in range(wire.stack.instance_count)
        ]
        good = all(answer.status in (200, 201) for answer in answers) and ready == [200, 200]
        if good:
            recovered = time.monotonic() - started
            return recovered, [*client.load.plain_done, *client.load.keyed.values()]
        assert time.monotonic() - started < 30, f"no recovery: {answers} {ready}"
        await asyncio.sleep(0.1)
    raise AssertionError("no recovery in 300 rounds")


async def _send_keyed_again(wire: Wire, http: httpx.AsyncClient, load: Load) -> None:
    """Each keyed write not acknowledged, sent again with its key until it is."""
    headers = {"X-API-Key": wire.api_key}
    for key, title in load.keyed.items():
        deadline = time.monotonic() + 5 * LOCK_TTL
        while key not in load.keyed_done:
            response = await http.post(
                "/books", json={"title": title}, headers={**headers, "Idempotency-Key": key}
            )
            if response.status_code == 201:
                load.keyed_done.add(key)
                break
            assert response.status_code in (409, 503), response.text
            assert time.monotonic() < deadline, f"{key} never acknowledged: {response.text}"
            await asyncio.sleep(0.2)


def _run_case(wire: Wire, service: str, fault: Fault) -> Outcome:
    case = f"{service}-{fault.name}-{uuid.uuid4().hex[:6]}"
    load = Load(case)
    proxy = wire.proxies[service]

    async def scenario() -> Outcome:
        began = time.monotonic()
        limits = httpx.Limits(max_connections=len(KINDS) * 2)
        async with httpx.AsyncClient(
            base_url=wire.stack.url, timeout=CLIENT_TIMEOUT, limits=limits
        ) as http:
            subscriber, watching = None, None
            if wire.streams:
                subscriber = Subscriber(wire.stack.url)
                watching = asyncio.create_task(subscriber.run(time.monotonic() + 60))
                await asyncio.wait_for(subscriber.opened.wait(), 10)
            stop = asyncio.Event()
            client = Client(wire, http, load)
            loops = [asyncio.create_task(_loop(client, kind, stop)) for kind in KINDS]
            await asyncio.sleep(LEAD)
            await asyncio.to_thread(fault.apply, proxy)
            stop.set()
            await asyncio.gather(*loops)
            recovery, probes = await _recover(wire, http, load)
            await _send_keyed_again(wire, http, load)
            if subscriber is not None and watching is not None:
                for _ in range(100):  # 10 s at most
                    if set(probes) <= subscriber.titles:
                        break
                    await asyncio.sleep(0.1)
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
        return Outcome(load, recovery, probes, subscriber, time.monotonic() - began)

    try:
        return asyncio.run(scenario())
    finally:
        proxy.clear()


def _summary(service: str, fault: Fault, outcome: Outcome, stored_refused: int) -> str:
    load = outcome.load
    parts = []
    for kind in KINDS:
        answers = load.by(kind)
        statuses = Counter(answer.status for answer in answers)
        slowest = max((answer.seconds for answer in answers), default=0.0)
        parts.append(
            f"{kind} {dict(sorted(statuses.items()))} max {slowest:.2f}s "
            f"p50 {statistics.median(a.seconds for a in answers) if answers else 0:.2f}s"
        )
    return (
        f"\nFAULT {service} {fault.name}: " + "; ".join(parts)
        + f"; recovered in {outcome.recovery:.2f}s; refused writes stored {stored_refused}"
        + f"; case took {outcome.seconds:.1f}s"
    )  # fmt: skip


def _needs(service: str, kind: str) -> bool:
    """Whether a request of ``kind`` needs ``service`` to be answered."""
    if service == "redis":
        return kind in ("keyed", "login")  # the rest carry on without it
    return kind != "author"  # a cached answer of a resource nothing writes


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
@pytest.mark.parametrize("service", ["redis", "mongodb"])
def test_a_fault_on_the_wire_gives_clear_503s_in_time_loses_nothing_and_heals(
    wire: Wire, service: str, fault: Fault
) -> None:
    outcome = _run_case(wire, service, fault)
    load, bound = outcome.load, BOUNDS[service]
    stored = wire.stored_titles(load.case)
    refused_stored = [title for title in load.plain_refused if stored[title]]
    print(_summary(service, fault, outcome, len(refused_stored)))

    # Every answer is a success or a clear 503, never a 500, a 502 or a broken connection.
    answers = load.answers
    assert answers
    unexpected = [a for a in answers if a.status not in (200, 201, 503)]
    assert not unexpected, unexpected[:5]
    # Each 503 says when to retry; every answer comes within the service's bound.
    assert all(a.retry_after for a in answers if a.status == 503)
    late = [a for a in answers if a.seconds > bound]
    assert not late, (bound, late[:5])
    # What does not need the faulty service keeps serving, and a slow link only slows.
    for kind in KINDS:
        if not fault.outage or not _needs(service, kind):
            failed = [a for a in load.by(kind) if a.status not in (200, 201)]
            assert not failed, (kind, failed[:5])
    if fault.outage and service in fault.refuses:  # the fault was met
        assert any(a.status == 503 for a in answers if _needs(service, a.kind))

    # Every acknowledged write is stored once; a refused one is not (the flap can
    # cut an answer on its way, so there a refused write is stored at most once).
    assert all(stored[title] == 1 for title in load.plain_done)
    if fault.cuts_replies:
        assert all(stored[title] <= 1 for title in load.plain_refused)
    else:
        assert not refused_stored, refused_stored
    # Keyed writes, each sent again with its key until acknowledged: stored once.
    assert load.keyed_done == set(load.keyed)
    assert all(stored[title] == 1 for title in load.keyed.values())

    # Both instances serve every kind of request again, with no restart.
    assert outcome.recovery <= RECOVERY_BOUND
    for index in range(wire.stack.instance_count):
        assert wire.stack.instance(index).alive()
    # And the stream delivers what was written once the fault was off.
    if outcome.subscriber is not None:
        seen = outcome.subscriber.titles
        assert set(outcome.probes) <= seen, (outcome.subscriber.statuses, sorted(seen)[-5:])
        assert set(outcome.subscriber.statuses) <= {200, 503}


def test_an_engine_without_change_streams_says_so(wire: Wire, engine: str) -> None:
    """The subscriber needs change streams; where the engine has none (FerretDB,
    DocumentDB: the change_streams gap), the stream answers 501 and the cases
    run without it."""
    status = _stream_status(wire.stack.url)
    assert status == (501 if "change_streams" in ENGINE_GAPS.get(engine, {}) else 200)
    assert wire.streams == (status == 200)
