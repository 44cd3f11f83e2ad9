"""/metrics on the API's listener behind a token, and what it counts, over HTTP.

In one process (these tests), the metrics are that process's own; several
workers of `shoal serve` are summed in tests/cli/test_metrics.py. Counters only
grow within a process, so each test compares two scrapes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import get_auth
from tests.conftest import SettingsFactory
from tests.utils.auth import client_with
from tests.utils.servers import RedisServer
from tests.utils.settings import example_resources

TOKEN = "metrics-token-0123456789"
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every sample that has ``labels`` (and maybe others)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, await response.get_data()
    return parse(await response.get_data(as_text=True))


@pytest.fixture
async def app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    resources = example_resources()
    resources["books"]["cache_ttl"] = 60
    resources["authors"]["rate_limits"] = {"read": "2/minute"}
    settings = settings_factory(resources=resources, metrics={"token": TOKEN})
    application = create_app(settings)
    async with application.test_app():
        yield application


async def test_metrics_are_not_served_unless_configured(settings_factory: SettingsFactory) -> None:
    application = create_app(settings_factory())
    async with application.test_app():
        response = await application.test_client().get("/metrics", headers=SCRAPE)
        assert response.status_code == 404
        assert (await response.get_json())["_status"] == "ERR"


async def test_the_token_is_required(app: Quart) -> None:
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"X-API-Key": TOKEN}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        body = await refused.get_json()
        assert body["_error"] == {
            "code": 401,
            "message": "/metrics needs the metrics token as a Bearer token",
        }
    assert (await client.post("/metrics", headers=SCRAPE)).status_code == 405
    served = await client.get("/metrics", headers=SCRAPE)
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await served.get_data(as_text=True)
    for name in ("http_requests_total", "http_request_duration_seconds_bucket"):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text
    openmetrics = await client.get(
        "/metrics", headers={**SCRAPE, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await openmetrics.get_data(as_text=True)).endswith("# EOF\n")


async def test_requests_are_counted_by_route_template_method_and_status(app: Quart) -> None:
    client = app.test_client()
    key, _ = await get_auth(app).accounts.create_api_key("writer", ["editor"])
    writer = client_with(app, {"X-API-Key": key})
    before = await scrape(client)

    created = await writer.post("/books", json={"title": "Dune"})
    item = f"/books/{(await created.get_json())['_id']}"
    for _ in range(3):
        assert (await client.get(item)).status_code == 200  # a miss, then two fast-path hits
    assert (await client.get("/books")).status_code == 200  # a miss
    assert (await client.get("/books")).status_code == 200  # a fast-path hit
    for _ in range(2):  # with credentials: the app's path, a miss then a hit
        assert (await writer.get("/books?max_results=3")).status_code == 200
    assert (await client.get(f"/books/{'0' * 24}")).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404
    assert (await client.post("/books", json={"title": "x"})).status_code == 401
    for _ in range(3):
        await client.get("/authors")  # 2 allowed, then 429
    idempotent = {"Idempotency-Key": str(uuid.uuid4())}
    for _ in range(2):
        await writer.post("/books", json={"title": "Once"}, headers=idempotent)
    await client.open("/books", method="FOO", json=None)

    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "http_requests_total"
    assert grew(requests, method="GET", route="/books/<item_id>", status="200") == 3
    assert grew(requests, method="GET", route="/books/<item_id>", status="404") == 1
    assert grew(requests, method="GET", route="/books", status="200") == 4
    assert grew(requests, method="GET", route="unmatched", status="404") == 1
    assert grew(requests, method="POST", route="/books", status="401") == 1
    assert grew(requests, method="POST", route="/books", status="201") == 3
    assert grew(requests, method="GET", route="/authors", status="429") == 1
    assert grew(requests, method="other", route="unmatched", status="405") == 1
    assert grew(requests, method="GET", route="/metrics", status="200") == 1  # the first scrape
    latency = "http_request_duration_seconds_count"
    assert grew(latency, method="GET", route="/books/<item_id>", status="200") == 3
    assert (
        grew(
            "http_request_duration_seconds_bucket",
            method="GET",
            route="/books/<item_id>",
            status="200",
            le="+Inf",
        )
        == 3
    )

    cache = "shoal_cache_requests_total"
    assert grew(cache, resource="books", result="hit", path="fast_path") == 3
    assert grew(cache, resource="books", result="miss", path="app") == 4  # 2 lists, item, 404
    assert grew(cache, resource="books", result="hit", path="app") == 1
    assert grew("shoal_rate_limit_rejections_total", method_class="read") == 1
    assert grew("shoal_idempotent_replays_total", method="POST") == 1

    def count(samples: Samples, name: str) -> float:
        return total(samples, name)

    redis_calls = "shoal_redis_command_duration_seconds_count"
    assert count(after, redis_calls) - count(before, redis_calls) >= 10
    assert total(after, redis_calls, command="mget") > total(before, redis_calls, command="mget")
    assert total(after, redis_calls, command="gcra") > total(before, redis_calls, command="gcra")
    mongo_calls = "shoal_mongodb_command_duration_seconds_count"
    assert (
        total(after, mongo_calls, command="insert") - total(before, mongo_calls, command="insert")
        >= 2
    )
    assert total(after, mongo_calls, command="find") > total(before, mongo_calls, command="find")
    assert value(after, "shoal_workers") == 1


async def test_errors_of_mongodb_and_redis_are_counted(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    resources = example_resources()
    resources["books"]["cache_ttl"] = 60
    settings = settings_factory(
        resources=resources,
        metrics={"token": TOKEN},
        redis={"url": server.url, "socket_timeout": 0.5},
        mongodb={"uri": "mongodb://127.0.0.1:9/", "server_selection_timeout_ms": 200},
    )
    application = create_app(settings)
    try:
        async with application.test_app():
            client = application.test_client()
            before = await scrape(client)
            server.stop()
            assert (await client.get("/books")).status_code == 503  # MongoDB is not there
            after = await scrape(client)
    finally:
        server.stop()
    assert value(after, "shoal_mongodb_errors_total", error="unreachable") > value(
        before, "shoal_mongodb_errors_total", error="unreachable"
    )
    assert value(after, "shoal_redis_errors_total", command="mget") > value(
        before, "shoal_redis_errors_total", command="mget"
    )
    bypassed = ("shoal_cache_requests_total", "books", "bypass", "app")
    name, resource, result, path = bypassed
    assert value(after, name, resource=resource, result=result, path=path) > value(
        before, name, resource=resource, result=result, path=path
    )


async def test_a_client_that_leaves_before_the_answer_is_counted_as_499(
    settings_factory: SettingsFactory,
) -> None:
    application = create_app(settings_factory(metrics={"token": TOKEN}))

    @application.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(5)
        return {}

    async with application.test_app():
        client = application.test_client()
        before = await scrape(client)
        async with client.request("/slow", method="GET") as leaving:
            await leaving.send_complete()
            await asyncio.sleep(0.05)  # the view is waiting now
            await leaving.disconnect()
        await asyncio.sleep(0.05)
        after = await scrape(client)
    labels = {"method": "GET", "route": "/slow"}
    left = "http_requests_total"
    assert (
        value(after, left, **labels, status="499") - value(before, left, **labels, status="499")
        == 1
    )
    assert value(after, left, **labels, status="500") == value(before, left, **labels, status="500")


async def test_direct_item_reads_are_counted_under_the_items_route(
    settings_factory: SettingsFactory,
) -> None:
    """Anonymous public item reads of an uncached resource are answered before
    Quart (api/direct.py); they are labelled with the item view's rule all the same."""
    application = create_app(settings_factory(metrics={"token": TOKEN}))
    async with application.test_app():
        client = application.test_client()
        key, _ = await get_auth(application).accounts.create_api_key("writer", ["editor"])
        created = await client_with(application, {"X-API-Key": key}).post(
            "/books", json={"title": "Dune"}
        )
        item = f"/books/{(await created.get_json())['_id']}"
        before = await scrape(client)
        for _ in range(2):
            assert (await client.get(item)).status_code == 200
        after = await scrape(client)
    labels = {"method": "GET", "route": "/books/<item_id>", "status": "200"}
    name = "http_requests_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 2
    unmatched = {"method": "GET", "route": "unmatched", "status": "200"}
    assert value(after, name, **unmatched) == value(before, name, **unmatched)


async def test_a_stalled_event_loop_is_seen_by_the_lag_probe(app: Quart) -> None:
    """The probe's timer fires late by as long as the loop was held: here by a
    blocking call of 0.3 s, as a CPU-bound request would hold it. Its timer,
    set 0.1 s ahead at most 0.1 s before the stall began, fires at least 0.2 s late."""
    client = app.test_client()

    def stalls(samples: Samples) -> float:  # lags longer than 0.1 s
        return value(samples, "shoal_event_loop_lag_seconds_count") - value(
            samples, "shoal_event_loop_lag_seconds_bucket", le="0.1"
        )

    await asyncio.sleep(0.25)  # the probe is running
    before = await scrape(client)
    time.sleep(0.3)  # noqa: ASYNC251 (the stall under test)
    await asyncio.sleep(0.25)  # the probe wakes, late
    after = await scrape(client)
    assert stalls(after) - stalls(before) >= 1
    assert value(after, "shoal_event_loop_lag_max_seconds") >= 0.2
