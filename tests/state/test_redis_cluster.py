"""Shoal on a real Redis Cluster (three masters, ``redis+cluster://``), over HTTP.

Every multi-key command and script Shoal sends keeps its keys in one hash slot
(the cache's generation and entry under ``{resource}``, a caller's rate-limit
buckets under ``{caller}``), or is split by slot on purpose (a route's own
limit counted by another key). So cached reads with invalidation, shared rate
limits, idempotency keys and ``shoal import`` behave as on one Redis, and a
master that dies mid-traffic costs what a Redis outage costs (bypass, fail
open, 503 for what needs Redis) and never a 500.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_rate_limiter import rate_limit
from redis.crc import key_slot

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.config import RedisSettings, Settings
from shoal.policies.cache import get_cache
from shoal.policies.idempotency import claim_key
from shoal.state import generation_key
from shoal.state.base import StateUnavailable
from shoal.state.redis import RedisState
from tests.conftest import SettingsFactory
from tests.utils.auth import client_with
from tests.utils.cluster import RedisCluster
from tests.utils.http import if_match
from tests.utils.processes import run_shoal
from tests.utils.servers import wait_for_port
from tests.utils.settings import example_resources, write_config

LIMITS = {"read": "1000/minute", "write": "1000/minute"}


def _cluster_settings(
    factory: SettingsFactory, url: str, *, socket_timeout: float = 2.0, **overrides: Any
) -> Settings:
    """Settings on the cluster at ``url``. A healthy cluster's tests keep the
    default deadline: a new client's first call (the slots, then the rate-limit
    script loaded) can take longer than half a second on a busy machine, and a
    call past its deadline lets the request through uncounted."""
    resources = example_resources()
    # The worker tier asked for: a Cluster has none, so these reads take the
    # coherent path all the same.
    resources["books"].update(cache_ttl=300, cache_tier="worker")
    options: dict[str, Any] = {
        "resources": resources,
        "redis": {"url": url, "socket_timeout": socket_timeout},
    }
    return factory(**{**options, **overrides})


@dataclass
class Instances:
    apps: list[Quart]
    writers: list[Client]  # an API key: checked in MongoDB
    readers: list[Client]  # anonymous
    writer_caller: str  # who the writers are to rate limits and idempotency keys
    statuses: Counter[int] = field(default_factory=Counter)

    async def call(self, request: Any) -> Any:
        response = await request
        self.statuses[response.status_code] += 1
        return response


@asynccontextmanager
async def _instances(settings: Settings) -> AsyncIterator[Instances]:
    apps = [create_app(settings), create_app(settings)]
    async with apps[0].test_app(), apps[1].test_app():
        key, info = await get_auth(apps[0]).accounts.create_api_key("writer", ["editor"])
        yield Instances(
            apps=apps,
            writers=[client_with(app, {"X-API-Key": key}) for app in apps],
            readers=[app.test_client() for app in apps],
            writer_caller=f"apikey:{info.id}",
        )


@pytest.fixture
async def instances(
    settings_factory: SettingsFactory, redis_cluster_url: str
) -> AsyncIterator[Instances]:
    """Two instances on one database and the session's Redis Cluster."""
    async with _instances(_cluster_settings(settings_factory, redis_cluster_url)) as pair:
        yield pair


async def test_cached_reads_are_invalidated_on_every_instance_by_a_write(
    instances: Instances,
) -> None:
    call, (a, b), (writer, _) = instances.call, instances.readers, instances.writers
    assert [get_cache(app).tier.watch for app in instances.apps] == [None, None]
    created = await (await call(writer.post("/books", json={"title": "Dune"}))).get_json()
    item = f"/books/{created['_id']}"
    for path in (item, "/books"):  # kept by A, served by both
        assert (await call(a.get(path))).headers["X-Cache"] == "MISS"
        assert (await call(a.get(path))).headers["X-Cache"] == "HIT"
        assert (await call(b.get(path))).headers["X-Cache"] == "HIT"

    patched = await call(
        writer.patch(item, json={"year": 1965}, headers=if_match(created["_etag"]))
    )
    assert patched.status_code == 200

    for client in (b, a):  # neither instance serves the answer cached before the write
        fresh = await call(client.get(item))
        assert (await fresh.get_json())["year"] == 1965
        listed = await (await call(client.get("/books"))).get_json()
        assert [book.get("year") for book in listed["_items"]] == [1965]
    # The fast path answers the next anonymous read from the Cluster, 304 included.
    again = await call(a.get(item))
    assert again.headers["X-Cache"] == "HIT"
    etag = again.headers["ETag"]
    assert (await call(b.get(item, headers={"If-None-Match": etag}))).status_code == 304
    assert set(instances.statuses) <= {200, 201, 304}


async def test_one_rate_limit_budget_is_shared_by_both_instances(
    settings_factory: SettingsFactory, redis_cluster_url: str
) -> None:
    settings = _cluster_settings(
        settings_factory, redis_cluster_url, rate_limits={"read": "10/minute"}
    )
    async with _instances(settings) as pair:
        a, b = pair.readers
        responses = [await pair.call((a, b)[n % 2].get("/books")) for n in range(16)]
        assert [r.status_code for r in responses] == [200] * 10 + [429] * 6
        assert all("Retry-After" in r.headers for r in responses[10:])


async def test_a_route_limit_counted_by_another_key_is_split_by_slot_on_purpose(
    settings_factory: SettingsFactory, redis_cluster_url: str
) -> None:
    """A route's own limit keyed by something other than the caller lands in
    another slot than the caller's bucket: both are checked, no CROSSSLOT."""
    settings = _cluster_settings(
        settings_factory, redis_cluster_url, rate_limits={"read": "100/minute"}
    )
    apps = [create_app(settings), create_app(settings)]

    async def everyone() -> str:
        return "everyone"

    for app in apps:

        @app.get("/hello")
        @rate_limit(3, timedelta(minutes=1), key_function=everyone)
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

    async with apps[0].test_app(), apps[1].test_app():
        clients = [app.test_client() for app in apps]
        statuses = [(await clients[n % 2].get("/hello")).status_code for n in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        # Another caller shares the route's bucket, but still has its own read budget.
        other = await clients[0].get("/hello", scope_base={"client": ("198.51.100.9", 4000)})
        assert other.status_code == 429
        listed = await clients[1].get("/books", scope_base={"client": ("198.51.100.9", 4000)})
        assert listed.status_code == 200
        assert listed.headers["RateLimit-Remaining"] == "99"
    keys = _keys_with(redis_cluster_url, settings.redis.key_prefix + "rl:")
    assert len({key_slot(key.encode()) for key in keys}) > 1, keys  # really two slots


async def test_idempotency_keys_replay_across_instances(instances: Instances) -> None:
    call, (first, second) = instances.call, instances.writers
    key = {"Idempotency-Key": str(uuid.uuid4())}
    created = await call(first.post("/books", json={"title": "Once"}, headers=key))
    replayed = await call(second.post("/books", json={"title": "Once"}, headers=key))
    assert (created.status_code, replayed.status_code) == (201, 201)
    assert await replayed.get_json() == await created.get_json()
    assert replayed.headers["Idempotent-Replayed"] == "true"
    other_body = await call(second.post("/books", json={"title": "Twice"}, headers=key))
    assert other_body.status_code == 422

    ack = await created.get_json()
    patch_key = {"Idempotency-Key": str(uuid.uuid4()), **if_match(ack["_etag"])}
    patched = await call(second.patch(f"/books/{ack['_id']}", json={"year": 1}, headers=patch_key))
    again = await call(first.patch(f"/books/{ack['_id']}", json={"year": 1}, headers=patch_key))
    assert (patched.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    listed = await (await call(instances.readers[0].get("/books"))).get_json()
    assert listed["_meta"]["total"] == 1
    assert max(instances.statuses) < 500


@pytest.mark.engine_gap(ferretdb="recreate_indexes")  # the import asks for them again
async def test_shoal_import_invalidates_the_cache_on_a_cluster(
    instances: Instances, tmp_path: Path, redis_cluster_url: str
) -> None:
    reader = instances.readers[0]
    assert (await reader.get("/books")).headers["X-Cache"] == "MISS"
    assert (await reader.get("/books")).headers["X-Cache"] == "HIT"
    settings: Settings = instances.apps[0].extensions["shoal.settings"]
    config = write_config(
        tmp_path,
        mongodb={"uri": settings.mongodb.uri, "database": settings.mongodb.database},
        redis={"url": redis_cluster_url, "key_prefix": settings.redis.key_prefix},
        resources={"books": {**example_resources()["books"], "cache_ttl": 300}},
    )
    lines = tmp_path / "books.jsonl"
    lines.write_text(json.dumps({"title": "Imported"}) + "\n", encoding="utf-8")
    result = run_shoal(["import", "books", str(lines), "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = await reader.get("/books")
    assert listed.headers["X-Cache"] == "MISS"
    assert [book["title"] for book in (await listed.get_json())["_items"]] == ["Imported"]


async def test_a_write_bumps_generations_on_several_nodes_in_one_call(
    redis_cluster_url: str,
) -> None:
    state = RedisState(RedisSettings(url=redis_cluster_url, key_prefix=f"t{uuid.uuid4().hex}:"))
    await state.open()
    try:
        keys = [generation_key(name) for name in ("books", "authors", "notes", "shelves")]
        assert len({key_slot(state.key(key).encode()) for key in keys}) == len(keys)
        assert await state.incr_each(*keys) == [1, 1, 1, 1]
        assert await state.incr_each(*keys) == [2, 2, 2, 2]
        assert [await state.get(key) for key in keys] == [b"2"] * 4
    finally:
        await state.close()


def _idempotency_keys_in(slots: set[int], prefix: str, caller: str) -> Iterator[str]:
    """``Idempotency-Key`` values whose claims (a POST /books by ``caller``) fall
    in ``slots``: about one candidate in three does with three masters."""
    for n in range(1_000_000):
        supplied = f"victim-{n}"
        claim = prefix + claim_key(caller, "POST", "/books", supplied)
        if key_slot(claim.encode()) in slots:
            yield supplied
    raise AssertionError("no Idempotency-Key falls in the slots")


def _keys_with(url: str, prefix: str) -> list[str]:
    client = redis.RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
    try:
        return [key.decode() for key in client.scan_iter(match=prefix + "*", target_nodes="all")]
    finally:
        client.close()


# --- a master dies mid-traffic ------------------------------------------------


class RestartableCluster(RedisCluster):
    """The Cluster of tests/utils, with one node killed and started again."""

    def node_serving(self, tag: str) -> int:
        """The port of the master that holds the slot of hash tag ``tag``."""
        slot = key_slot(tag.encode())
        for port, slots in self.slots_by_node().items():
            if slot in slots:
                return port
        raise AssertionError(f"no node serves the slot of {tag}")

    def slots_by_node(self) -> dict[int, set[int]]:
        """Each master's port and the slots it serves."""
        client = redis.Redis(port=self.ports[0])
        try:
            served: dict[int, set[int]] = {}
            for start, end, master, *_ in client.cluster("SLOTS"):
                served.setdefault(int(master[1]), set()).update(range(start, end + 1))
            return served
        finally:
            client.close()

    def kill(self, port: int) -> None:
        process = self._processes[self.ports.index(port)]
        process.kill()
        process.wait(10)

    def restart(self, port: int) -> None:
        """Start a killed node again: same port, same directory, so it rejoins."""
        index = self.ports.index(port)
        self._processes[index] = subprocess.Popen(
            self._processes[index].args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", port)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RestartableCluster]:
    """A Cluster of this test's own, since the test kills one of its masters."""
    cluster = RestartableCluster(tmp_path / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_a_master_killed_mid_traffic_never_gives_500_and_shoal_recovers(
    settings_factory: SettingsFactory, own_cluster: RestartableCluster
) -> None:
    # A short deadline: a call to the dead master fails fast, so the outage
    # shows in many rounds.
    settings = _cluster_settings(
        settings_factory, own_cluster.url, socket_timeout=0.5, rate_limits=LIMITS
    )
    async with _instances(settings) as pair:
        call, (a, b), (writer, _) = pair.call, pair.readers, pair.writers
        created = await (await call(writer.post("/books", json={"title": "Before"}))).get_json()
        item = f"/books/{created['_id']}"
        for client in (a, b):
            await call(client.get(item))
            assert (await call(client.get(item))).headers["X-Cache"] == "HIT"

        seen: dict[str, Counter[int]] = {"read": Counter(), "plain": Counter(), "keyed": Counter()}
        cache: Counter[str] = Counter()
        acknowledged: list[str] = []
        # The master that dies holds the cache's generation and entries; while it
        # is down, every keyed write claims its key in one of its slots, so the
        # outage is met on every round, not when a random key happens to land there.
        victim = own_cluster.node_serving("books")
        victim_keys = _idempotency_keys_in(
            own_cluster.slots_by_node()[victim], settings.redis.key_prefix, pair.writer_caller
        )

        async def one_round(n: int, idempotency_key: str | None = None) -> None:
            read, plain, keyed = await asyncio.gather(
                (a, b)[n % 2].get(item),
                writer.post("/books", json={"title": f"plain {n}"}),
                writer.post(
                    "/books",
                    json={"title": f"keyed {n}"},
                    headers={"Idempotency-Key": idempotency_key or f"k-{n}"},
                ),
            )
            seen["read"][read.status_code] += 1
            seen["plain"][plain.status_code] += 1
            seen["keyed"][keyed.status_code] += 1
            cache[read.headers.get("X-Cache", "")] += 1
            for response in (plain, keyed):
                if response.status_code == 201:
                    acknowledged.append((await response.get_json())["_id"])

        for n in range(10):  # healthy
            await one_round(n)
        up = {kind: Counter(counts) for kind, counts in seen.items()}
        own_cluster.kill(victim)
        down_at = time.monotonic()
        n = 10
        while time.monotonic() - down_at < 6 and n < 300:  # bounded: 6 s, 300 rounds
            await one_round(n, next(victim_keys))
            n += 1
            await asyncio.sleep(0.02)
        down = {kind: seen[kind] - up[kind] for kind in seen}
        own_cluster.restart(victim)

        async def recovered(client: Any) -> bool:
            response = await client.post(  # a key in the slots that were down
                "/books", json={"title": "after"}, headers={"Idempotency-Key": next(victim_keys)}
            )
            if response.status_code == 201:
                acknowledged.append((await response.get_json())["_id"])
            assert response.status_code in (201, 503), await response.get_data(as_text=True)
            return bool(response.status_code == 201)

        # Each instance finds the returned master on its own (one may still be
        # waiting out its back-off when the other already writes): both must.
        deadline = time.monotonic() + 20
        for instance in pair.writers:
            while not await recovered(instance):
                assert time.monotonic() < deadline, "Shoal did not recover after the node returned"
                await asyncio.sleep(0.2)
        # Healthy again: rounds until ten more keyed writes are done, bounded. On a
        # busy machine a call may still miss its half-second deadline now and
        # then (a clear 503, which the assertions below allow).
        done_after, m, deadline = 0, n, time.monotonic() + 20
        while done_after < 10:
            assert time.monotonic() < deadline, f"{done_after} keyed writes done after recovery"
            before = seen["keyed"][201]
            await one_round(m)
            done_after += seen["keyed"][201] - before
            m += 1

        print(f"\nup to the restart of the killed master: {down}; cache answers {dict(cache)}")
        assert set(seen["read"]) == {200}  # public reads: never an error
        assert set(seen["plain"]) == {201}  # writes that do not need Redis: all done
        assert set(seen["keyed"]) <= {201, 503}  # writes that need it: done, or a clear 503
        assert up["keyed"] == Counter({201: 10})
        # Every key claimed in the dead master's slots: a clear 503, none done.
        assert down["keyed"] == Counter({503: n - 10}), down
        assert cache["BYPASS"] > 0  # reads went around the cache, not through a stale one
        assert seen["keyed"][201] == 20  # before and after (10 each)
        # Every acknowledged write is stored, once.
        storage = pair.apps[0].extensions["shoal.storage"]
        stored = await storage.find_page(
            "books", {}, sort=None, projection={"_id": 1}, skip=0, limit=10_000
        )
        ids = [str(document["_id"]) for document in stored]
        assert len(ids) == len(set(ids))
        assert set(acknowledged) <= set(ids)
        # And the cache works again everywhere, once each instance's breaker has
        # let it ask Redis again (it pauses a second after a failure) and its
        # owed invalidations are repaid.
        for client in (a, b):
            deadline = time.monotonic() + 10
            while (await client.get(item)).headers["X-Cache"] != "HIT":
                assert time.monotonic() < deadline, "the cache did not serve hits again"
                await asyncio.sleep(0.2)


async def test_a_call_to_a_killed_master_fails_within_the_socket_timeout(
    own_cluster: RestartableCluster,
) -> None:
    """redis-py's Cluster client tries a command on a node that is gone ten more
    times, with a backoff between tries (about 3 s in all, seen as slow rounds
    when a master died); Shoal's client tries once more, and each call ends
    within ``redis.socket_timeout`` whatever the client does."""
    socket_timeout = 0.5
    state = RedisState(RedisSettings(url=own_cluster.url, socket_timeout=socket_timeout))
    await state.open()
    try:
        slots = own_cluster.slots_by_node()
        victim = next(iter(slots))
        key = next(
            name
            for name in (f"k{n}" for n in range(100_000))
            if key_slot(state.key(name).encode()) in slots[victim]
        )
        await state.set(key, b"1")
        own_cluster.kill(victim)
        for _ in range(3):  # the first call finds the node gone; so do the next ones
            started = time.monotonic()
            with pytest.raises(StateUnavailable):
                await asyncio.wait_for(state.get(key), 30)
            waited = time.monotonic() - started
            assert waited <= socket_timeout + 0.5, waited
    finally:
        await state.close()
