"""Scale-out with real processes: `shoal serve` instances behind nginx on one
MongoDB and one Redis (``benchmarks.local_stack``), every request over HTTP through
nginx, which sends consecutive requests to different instances (each answer
names its instance in X-Shoal-Instance).

- Coherence: what one instance does, every other one sees at once (tokens,
  logouts, refresh-token reuse, cache invalidation, rate limits, keys); books
  are also cached in each worker's memory (``cache_tier: worker``), where a
  write is seen once Redis's push reaches the instance (the test prints how
  many stale answers it met).
- Losing an instance: SIGKILL one mid-way through a bounded write load whose
  every POST carries an Idempotency-Key and is retried on errors; afterwards
  every acknowledged write is stored exactly once.
- A rolling restart: SIGTERM one of two instances under a bounded load and
  start it again; no request fails, and those in flight on it complete.

Every load is bounded in requests and seconds; every process is stopped by
its id when the stack goes down.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from benchmarks.local_stack import LocalStack
from pymongo import MongoClient

from tests.utils.scaleout import (
    PASSWORD,
    at_a_distance,
    create_user,
    instance_of,
    running_stack,
    stack_config,
)
from tests.utils.settings import example_resources

INSTANCES = {"instance-1", "instance-2", "instance-3"}


def _resources() -> dict[str, Any]:
    resources = example_resources()
    # Books in each worker's memory too (cache_tier: worker), authors in Redis only.
    resources["books"] = {**resources["books"], "cache_ttl": 60, "cache_tier": "worker"}
    resources["authors"] = {**resources["authors"], "cache_ttl": 60}
    resources["quotes"] = {
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "resource_methods": ["GET"],
        "item_methods": ["GET"],
        "allowed_roles": ["editor"],
        "rate_limits": {"read": "5/minute"},
    }
    return resources


@dataclass
class Deployment:
    stack: LocalStack
    config: Path

    @property
    def url(self) -> str:
        return self.stack.url


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str
) -> Iterator[Deployment]:
    """Three instances of one worker each behind nginx, and a user editor1."""
    workdir = tmp_path_factory.mktemp("stack")
    config = stack_config(workdir / "config", resources=_resources())
    with running_stack(
        workdir / "run", config, mongodb_uri=mongodb_uri, redis_url=redis_url, instances=3
    ) as stack:
        create_user(stack, config, "editor1", "editor")
        yield Deployment(stack, config)


@pytest.fixture
def http(deployment: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deployment.url, timeout=10) as client:
        yield client


def _login(http: httpx.Client) -> dict[str, Any]:
    response = http.post("/auth/login", json={"username": "editor1", "password": PASSWORD})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _around(http: httpx.Client, method: str, path: str, **kwargs: Any) -> list[httpx.Response]:
    """The same request three times in a row: once to each instance."""
    responses = [http.request(method, path, **kwargs) for _ in range(3)]
    assert {instance_of(response) for response in responses} == INSTANCES
    return responses


# --- coherence through the load balancer ----------------------------------------------------


def test_consecutive_requests_land_on_different_instances(http: httpx.Client) -> None:
    seen = [instance_of(http.get("/healthz")) for _ in range(6)]
    assert set(seen) == INSTANCES
    assert all(a != b for a, b in itertools.pairwise(seen)), seen


def test_a_token_issued_on_one_instance_works_on_every_other(http: httpx.Client) -> None:
    tokens = _login(http)
    for response in _around(http, "GET", "/auth/me", headers=_bearer(tokens["access_token"])):
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "editor1"
    created = [
        http.post("/books", json={"title": f"Token {n}"}, headers=_bearer(tokens["access_token"]))
        for n in range(3)
    ]
    assert [response.status_code for response in created] == [201, 201, 201]
    assert {instance_of(response) for response in created} == INSTANCES


def test_a_logout_is_refused_on_every_instance_at_once(http: httpx.Client) -> None:
    tokens = _login(http)
    headers = _bearer(tokens["access_token"])
    assert all(r.status_code == 200 for r in _around(http, "GET", "/auth/me", headers=headers))

    logout = http.post("/auth/logout", headers=headers)
    assert logout.status_code == 204

    # The very next requests, one to each instance (the one that logged out too).
    for response in _around(http, "GET", "/auth/me", headers=headers):
        assert response.status_code == 401, (instance_of(response), response.text)
        assert "revoked" in response.json()["_error"]["message"]


def test_a_reused_refresh_token_kills_its_family_on_every_instance(http: httpx.Client) -> None:
    first = _login(http)
    rotated = http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()

    replay = http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert "already used" in replay.json()["_error"]["message"]

    for token in (first["access_token"], second["access_token"]):
        for response in _around(http, "GET", "/auth/me", headers=_bearer(token)):
            assert response.status_code == 401, instance_of(response)
    newest = http.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401


def test_a_write_through_one_instance_ends_every_stale_cached_answer(
    http: httpx.Client,
) -> None:
    headers = _bearer(_login(http)["access_token"])
    ack = http.post("/authors", json={"name": "Cached", "born": 1}, headers=headers).json()
    path = f"/authors/{ack['_id']}"
    warm = _around(http, "GET", path)
    assert [response.json()["born"] for response in warm] == [1, 1, 1]
    assert "HIT" in {response.headers["X-Cache"] for response in warm}

    patched = http.patch(path, json={"born": 2}, headers={**headers, "If-Match": ack["_etag"]})
    assert patched.status_code == 200

    # The coherent path: the very next read of every instance is fresh.
    for response in _around(http, "GET", path):
        assert response.json()["born"] == 2, (instance_of(response), response.headers)


def test_with_the_worker_tier_every_instance_sees_a_write_once_redis_pushes_it(
    http: httpx.Client,
) -> None:
    headers = _bearer(_login(http)["access_token"])
    ack = http.post("/books", json={"title": "Kept", "year": 1}, headers=headers).json()
    path = f"/books/{ack['_id']}"
    etag = ack["_etag"]
    stale, rounds, slowest = 0, 20, 0.0
    for year in range(2, 2 + rounds):
        for _ in range(2):  # every instance's worker keeps the answer
            warm = _around(http, "GET", path)
        assert {response.headers["X-Cache"] for response in warm} == {"HIT"}
        patched = http.patch(path, json={"year": year}, headers={**headers, "If-Match": etag})
        assert patched.status_code == 200
        written, etag = time.monotonic(), patched.json()["_etag"]
        fresh: set[str] = set()
        while fresh != INSTANCES:
            # Bounded: a push that never came would leave an instance stale
            # until cache_ttl; this fails long before.
            assert time.monotonic() - written < 5, f"stale after 5 s: {INSTANCES - fresh}"
            response = http.get(path)
            if response.json()["year"] == year:
                fresh.add(instance_of(response))
            else:
                stale += 1
        slowest = max(slowest, time.monotonic() - written)
    print(
        f"\nworker tier, {rounds} writes: {stale} stale answers after the writes' 200s; "
        f"every instance fresh within {slowest * 1000:.1f} ms of its write's answer"
    )


def test_one_rate_limit_budget_is_shared_by_every_instance(http: httpx.Client) -> None:
    headers = _bearer(_login(http)["access_token"])  # the budget is this user's
    answers = [http.get("/quotes", headers=headers) for _ in range(8)]
    statuses = [response.status_code for response in answers]
    assert statuses == [200] * 5 + [429] * 3, statuses
    allowed = answers[:5]
    assert {instance_of(response) for response in allowed} == INSTANCES
    remaining = [int(response.headers["RateLimit-Remaining"]) for response in allowed]
    assert remaining == [4, 3, 2, 1, 0]
    assert int(answers[5].headers["Retry-After"]) >= 1


def test_an_idempotent_post_replayed_to_another_instance_is_done_once(
    http: httpx.Client,
) -> None:
    headers = {**_bearer(_login(http)["access_token"]), "Idempotency-Key": str(uuid.uuid4())}
    title = f"Once {uuid.uuid4()}"
    first = http.post("/books", json={"title": title}, headers=headers)
    again = http.post("/books", json={"title": title}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert instance_of(first) != instance_of(again)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    listed = http.get("/books", params={"where": f'{{"title": "{title}"}}'}).json()
    assert listed["_meta"]["total"] == 1


# --- load through nginx ---------------------------------------------------------------------


@dataclass
class Load:
    """What a bounded load saw."""

    #: Idempotency-Key → the acknowledged answer's body.
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Keys that were never acknowledged before the load ended.
    unacknowledged: set[str] = field(default_factory=set)
    #: Answers or errors that made a client send the same request again.
    retried: Counter[str] = field(default_factory=Counter)
    #: Requests that failed (the rolling restart allows none).
    failed: list[str] = field(default_factory=list)
    #: (instance, start, end) of every answered request.
    served: list[tuple[str, float, float]] = field(default_factory=list)
    #: Set once this many writes are acknowledged.
    milestone: tuple[int, asyncio.Event] | None = None

    def acknowledge(self, key: str, answer: dict[str, Any]) -> None:
        self.acknowledged[key] = answer
        if self.milestone is not None and len(self.acknowledged) >= self.milestone[0]:
            self.milestone[1].set()


RETRIED_STATUSES = {409, 502, 503, 504}


async def _write_with_retries(
    client: httpx.AsyncClient, load: Load, key: str, title: str, deadline: float
) -> None:
    """POST one book with its key until it is acknowledged or the time is up."""
    headers = {"Idempotency-Key": key}
    while time.monotonic() < deadline:
        try:
            response = await client.post("/books", json={"title": title}, headers=headers)
        except httpx.TransportError as error:
            load.retried[type(error).__name__] += 1
            await asyncio.sleep(0.1)
            continue
        if response.status_code == 201:
            load.acknowledge(key, response.json())
            return
        if response.status_code not in RETRIED_STATUSES:
            raise AssertionError(f"unexpected answer {response.status_code}: {response.text}")
        load.retried[str(response.status_code)] += 1
        await asyncio.sleep(float(response.headers.get("Retry-After", "0.2")))
    load.unacknowledged.add(key)


async def _writers(
    url: str, token: str, *, clients: int, per_client: int, seconds: float, load: Load
) -> None:
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, timeout=10, limits=limits, headers=_bearer(token)
    ) as client:

        async def writer(number: int) -> None:
            for n in range(per_client):
                if time.monotonic() >= deadline:
                    return
                key = f"{number}-{n}-{uuid.uuid4()}"
                await _write_with_retries(client, load, key, f"load {key}", deadline)

        await asyncio.gather(*(writer(number) for number in range(clients)))


def _stored_titles(mongodb_uri: str, database: str) -> Counter[str]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        documents = client[database]["books"].find({}, {"title": 1})
        return Counter(str(document["title"]) for document in documents)
    finally:
        client.close()


def _database(config: Path) -> str:
    raw: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
    return str(raw["mongodb"]["database"])


async def _cut_short(stack: Any, token: str, load: Load, key: str, seconds: float) -> str:
    """One keyed POST sent straight to instance 0, which the test kills while
    the POST waits on MongoDB; then sent again with its key through nginx, as a
    client would. Returns how the direct try ended."""
    title = f"load {key}"
    headers = {**_bearer(token), "Idempotency-Key": key}
    async with httpx.AsyncClient(base_url=stack.instance_url(0), timeout=10) as direct:
        try:
            response = await direct.post("/books", json={"title": title}, headers=headers)
        except httpx.TransportError as error:
            ended = type(error).__name__
            load.retried[ended] += 1
        else:
            ended = str(response.status_code)
            if response.status_code == 201:
                load.acknowledge(key, response.json())
    async with httpx.AsyncClient(base_url=stack.url, timeout=10, headers=_bearer(token)) as client:
        await _write_with_retries(client, load, key, title, time.monotonic() + seconds)
    return ended


def test_an_instance_killed_mid_load_loses_no_acknowledged_write_and_doubles_none(
    tmp_path: Path, mongodb_uri: str, redis_url: str
) -> None:
    """SIGKILL of one instance (and its workers) while POSTs run through it.
    Each MongoDB round trip takes 50 ms more (a delay proxy), so the kill
    lands between writes and their recorded answers; the retries, with the
    same keys, reach the other instances. One POST is sent to the killed
    instance itself just before the kill, so at least one request is always
    cut short: it cannot be answered before its insert's 50 ms round trip."""
    config = stack_config(tmp_path / "config", idempotency={"lock_ttl": 2})
    with (
        at_a_distance(tmp_path, mongodb_uri, delay_ms=50) as distant,
        running_stack(
            tmp_path / "run",
            config,
            mongodb_uri=distant,
            redis_url=redis_url,
            instances=3,
        ) as stack,
    ):
        create_user(stack, config, "writer", "editor")
        login = httpx.post(
            f"{stack.url}/auth/login", json={"username": "writer", "password": PASSWORD}
        )
        token = login.json()["access_token"]
        load = Load()
        cut_ended: list[str] = []

        async def scenario() -> None:
            load.milestone = (40, asyncio.Event())
            writes = asyncio.create_task(
                _writers(stack.url, token, clients=6, per_client=40, seconds=25, load=load)
            )
            await asyncio.wait_for(load.milestone[1].wait(), 20)
            cut = asyncio.create_task(_cut_short(stack, token, load, f"cut-{uuid.uuid4()}", 20))
            await asyncio.sleep(0.01)  # the direct POST reaches instance 0 (loopback)
            await asyncio.to_thread(stack.kill, 0)
            cut_ended.append(await cut)
            await writes

        asyncio.run(scenario())

    stored = _stored_titles(mongodb_uri, _database(config))
    lost = [key for key in load.acknowledged if stored[f"load {key}"] == 0]
    doubled = [title for title, count in stored.items() if count > 1]
    print(
        f"\nkill test: {len(load.acknowledged)} acknowledged, {len(lost)} lost, "
        f"{len(doubled)} duplicated, {len(load.unacknowledged)} never acknowledged; "
        f"retries after errors: {dict(load.retried)}"
    )
    assert not lost, lost
    assert not doubled, doubled
    assert len(load.acknowledged) >= 100
    # The kill did hit a request in flight (no answer, no refused connection),
    # which the client sent again.
    assert cut_ended in (["RemoteProtocolError"], ["ReadError"]), cut_ended
    assert load.retried
    for key, answer in load.acknowledged.items():
        assert answer["_id"], key


async def _mixed_load(url: str, token: str, *, clients: int, seconds: float, load: Load) -> None:
    """Reads and keyed writes through nginx, each request sent once."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=clients)
    ) as client:

        async def one(number: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                started = time.monotonic()
                try:
                    if n % 3 == 0:
                        response = await client.post(
                            "/books",
                            json={"title": f"rolling {number}-{n}"},
                            headers={**_bearer(token), "Idempotency-Key": str(uuid.uuid4())},
                        )
                        ok = response.status_code == 201
                    else:
                        response = await client.get("/books", params={"max_results": 5})
                        ok = response.status_code == 200
                except httpx.TransportError as error:
                    load.failed.append(f"{type(error).__name__}: {error}")
                    continue
                if not ok:
                    load.failed.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                load.served.append((instance_of(response), started, time.monotonic()))

        await asyncio.gather(*(one(number) for number in range(clients)))


def test_a_rolling_restart_under_load_fails_no_request(
    tmp_path: Path, mongodb_uri: str, redis_url: str
) -> None:
    """Two instances of two workers; instance-1 gets SIGTERM mid-load, exits,
    and is started again, while requests keep coming through nginx. Each
    MongoDB round trip takes 30 ms more, so requests are in flight on
    instance-1 when it is told to stop."""
    config = stack_config(tmp_path / "config")
    with (
        at_a_distance(tmp_path, mongodb_uri, delay_ms=30) as distant,
        running_stack(
            tmp_path / "run",
            config,
            mongodb_uri=distant,
            redis_url=redis_url,
            instances=2,
            workers=2,
        ) as stack,
    ):
        create_user(stack, config, "roller", "editor")
        login = httpx.post(
            f"{stack.url}/auth/login", json={"username": "roller", "password": PASSWORD}
        )
        token = login.json()["access_token"]
        load = Load()
        moments: dict[str, float] = {}

        async def scenario() -> None:
            traffic = asyncio.create_task(
                _mixed_load(stack.url, token, clients=8, seconds=14, load=load)
            )
            await asyncio.sleep(2)
            moments["sigterm"] = time.monotonic()
            status = await asyncio.to_thread(stack.stop_instance, 0)
            moments["stopped"] = time.monotonic()
            assert status == 0, "instance-1 did not stop cleanly"
            await asyncio.to_thread(stack.start_instance, 0)
            moments["restarted"] = time.monotonic()
            await traffic

        asyncio.run(scenario())

    sigterm = moments["sigterm"]
    in_flight = [
        entry for entry in load.served if entry[0] == "instance-1" and entry[1] < sigterm < entry[2]
    ]
    print(
        f"\nrolling restart: {len(load.served)} requests answered, {len(load.failed)} failed; "
        f"{len(in_flight)} in flight on instance-1 at SIGTERM, all completed; instance-1 "
        f"stopped {moments['stopped'] - sigterm:.1f}s after SIGTERM"
    )
    assert not load.failed, load.failed[:10]
    assert in_flight, "no request was in flight on instance-1 when it was told to stop"
    assert len(load.served) >= 100
