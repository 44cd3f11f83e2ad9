"""The response cache, over HTTP: hits, 304s, invalidation across instances, scopes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.policies.cache import get_cache
from shoal.state import get_state
from shoal.state.redis import RedisState
from tests.conftest import SettingsFactory
from tests.utils.auth import editor_client
from tests.utils.cache import OWNED_NOTES
from tests.utils.http import create, if_match
from tests.utils.instances import two_served
from tests.utils.settings import example_resources


def cached_resources(ttl: int = 60) -> dict[str, Any]:
    resources = example_resources()
    resources["books"]["cache_ttl"] = ttl
    resources["notes"] = OWNED_NOTES
    return resources


@pytest.fixture
async def cached_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    app = create_app(settings_factory(resources=cached_resources()))
    async with app.test_app():
        yield app


@pytest.fixture
async def two_instances(settings_factory: SettingsFactory) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two apps ('instances') on one database and one Redis, books cached."""
    async with two_served(settings_factory(resources=cached_resources())) as apps:
        yield apps


async def _get(client: Client, path: str, **kwargs: Any) -> tuple[Any, Any]:
    response = await client.get(path, **kwargs)
    body = await response.get_json() if response.status_code != 304 else None
    return response, body


async def test_cache_is_off_unless_a_resource_asks(app: Quart, anonymous: Client) -> None:
    for _ in range(2):
        response = await anonymous.get("/books")
        assert response.status_code == 200
        assert "X-Cache" not in response.headers


async def test_a_list_is_a_miss_then_a_hit_with_the_same_answer(cached_app: Quart) -> None:
    editor = await editor_client(cached_app)
    await create(editor, "books", {"title": "Dune", "year": 1965})
    anonymous = cached_app.test_client()

    first, first_body = await _get(anonymous, "/books")
    second, second_body = await _get(anonymous, "/books")

    assert first.headers["X-Cache"] == "MISS"
    assert second.headers["X-Cache"] == "HIT"
    assert second_body == first_body
    assert second_body["_items"][0]["title"] == "Dune"
    for name in ("ETag", "Last-Modified", "X-Total-Count", "Content-Type"):
        assert second.headers[name] == first.headers[name]


async def test_an_item_is_a_miss_then_a_hit(cached_app: Quart) -> None:
    editor = await editor_client(cached_app)
    ack = await create(editor, "books", {"title": "Dune"})
    first, first_body = await _get(editor, f"/books/{ack['_id']}")
    second, second_body = await _get(editor, f"/books/{ack['_id']}")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second_body == first_body
    assert second.headers["ETag"] == f'"{ack["_etag"]}"'


async def test_if_none_match_on_a_cached_answer_is_304(cached_app: Quart) -> None:
    editor = await editor_client(cached_app)
    ack = await create(editor, "books", {"title": "Dune"})
    for path in ("/books", f"/books/{ack['_id']}"):
        warm, _ = await _get(editor, path)
        etag = warm.headers["ETag"]
        response, _ = await _get(editor, path, headers={"If-None-Match": etag})
        assert response.status_code == 304
        assert response.headers["X-Cache"] == "HIT"
        assert response.headers["ETag"] == etag
        assert await response.get_data() == b""
        stale, _ = await _get(editor, path, headers={"If-None-Match": '"other"'})
        assert (stale.status_code, stale.headers["X-Cache"]) == (200, "HIT")


async def test_the_query_is_normalised_and_distinguishes_answers(cached_app: Quart) -> None:
    editor = await editor_client(cached_app)
    await editor.post("/books", json=[{"title": f"B{n}", "year": n} for n in range(3)])
    miss, page = await _get(editor, "/books?max_results=2&sort=year")
    hit, same = await _get(editor, "/books?sort=year&max_results=2")
    other, different = await _get(editor, "/books?max_results=2&sort=-year")
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert same == page
    assert other.headers["X-Cache"] == "MISS"
    assert [item["year"] for item in different["_items"]] == [2, 1]


async def test_a_write_through_one_instance_is_never_missed_by_the_other(
    two_instances: tuple[Quart, Quart],
) -> None:
    first, second = [await editor_client(app) for app in two_instances]
    ack = await create(first, "books", {"title": "Dune", "year": 0})
    etag = ack["_etag"]
    for round_ in range(1, 6):
        # Warm both instances' view of the list and the item...
        for client in (first, second):
            await client.get("/books")
            await client.get(f"/books/{ack['_id']}")
        # ...write through the first one...
        patched = await first.patch(
            f"/books/{ack['_id']}", json={"year": round_}, headers=if_match(etag)
        )
        assert patched.status_code == 200
        etag = (await patched.get_json())["_etag"]
        await create(first, "books", {"title": f"Sequel {round_}"})
        # ...and the second one answers with the new state at once.
        response, item = await _get(second, f"/books/{ack['_id']}")
        assert item["year"] == round_, response.headers.get("X-Cache")
        assert item["_etag"] == etag
        _, page = await _get(second, "/books")
        assert page["_meta"]["total"] == round_ + 1
        assert {i["title"] for i in page["_items"]} >= {f"Sequel {round_}"}


async def test_a_delete_invalidates_the_item_and_the_list(
    two_instances: tuple[Quart, Quart],
) -> None:
    first, second = [await editor_client(app) for app in two_instances]
    ack = await create(first, "books", {"title": "Dune"})
    assert (await second.get(f"/books/{ack['_id']}")).status_code == 200
    await second.get("/books")
    deleted = await first.delete(f"/books/{ack['_id']}", headers=if_match(ack["_etag"]))
    assert deleted.status_code == 204
    assert (await second.get(f"/books/{ack['_id']}")).status_code == 404
    _, page = await _get(second, "/books")
    assert page["_meta"]["total"] == 0


async def test_owner_restricted_answers_never_cross_users(cached_app: Quart) -> None:
    owner_a = await editor_client(cached_app, name="owner_a")
    owner_b = await editor_client(cached_app, name="owner_b")
    mine = await create(owner_a, "notes", {"text": "owner_a's"})
    await create(owner_b, "notes", {"text": "owner_b's"})
    for _ in range(2):  # the second round is served from the cache
        alice_list, alice_page = await _get(owner_a, "/notes")
        bob_list, bob_page = await _get(owner_b, "/notes")
        assert [note["text"] for note in alice_page["_items"]] == ["owner_a's"]
        assert [note["text"] for note in bob_page["_items"]] == ["owner_b's"]
    assert (alice_list.headers["X-Cache"], bob_list.headers["X-Cache"]) == ("HIT", "HIT")
    assert (await owner_a.get(f"/notes/{mine['_id']}")).status_code == 200
    assert (await owner_a.get(f"/notes/{mine['_id']}")).headers["X-Cache"] == "HIT"
    assert (await owner_b.get(f"/notes/{mine['_id']}")).status_code == 404


async def test_anonymous_callers_get_no_cached_private_answer(cached_app: Quart) -> None:
    owner_a = await editor_client(cached_app, name="owner_a")
    await create(owner_a, "notes", {"text": "secret"})
    await owner_a.get("/notes")
    response = await cached_app.test_client().get("/notes")
    assert response.status_code == 401
    assert "X-Cache" not in response.headers


async def test_entries_expire_after_cache_ttl(settings_factory: SettingsFactory) -> None:
    app = create_app(settings_factory(resources=cached_resources(ttl=1)))
    async with app.test_app():
        client = app.test_client()
        assert (await client.get("/books")).headers["X-Cache"] == "MISS"
        assert (await client.get("/books")).headers["X-Cache"] == "HIT"
        await asyncio.sleep(1.2)
        assert (await client.get("/books")).headers["X-Cache"] == "MISS"


async def test_head_is_served_from_the_cache(cached_app: Quart) -> None:
    client = cached_app.test_client()
    got = await client.get("/books")
    head = await client.head("/books")
    assert head.status_code == 200
    assert head.headers["X-Cache"] == "HIT"
    assert head.headers["ETag"] == got.headers["ETag"]


async def test_a_hit_costs_one_redis_round_trip(
    cached_app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = get_state(cached_app)
    assert isinstance(state, RedisState)
    client = cached_app.test_client()
    await client.get("/books")
    calls: list[str] = []
    original = state._call

    async def counting(method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return await original(method, *args, **kwargs)

    monkeypatch.setattr(state, "_call", counting)
    response = await client.get("/books")
    assert response.headers["X-Cache"] == "HIT"
    assert calls == ["mget"]


# -- the fast path --------------------------------------------------------------------


async def test_the_edge_answers_a_hit_exactly_as_the_app_does(
    cached_app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An anonymous public hit is answered by the fast path; a signed-in caller's
    hit on the same entry goes through the app. Both must be the same answer."""
    editor = await editor_client(cached_app)
    ack = await create(editor, "books", {"title": "Dune", "year": 1965})
    anonymous = cached_app.test_client()
    cache = get_cache(cached_app)
    answered_fast: list[bool] = []
    original = cache.fast_answer

    async def spy(scope: Any, send: Any) -> bool:
        answered = await original(scope, send)
        answered_fast.append(answered)
        return answered

    monkeypatch.setattr(cache, "fast_answer", spy)
    for path in ("/books?sort=-year&max_results=5", f"/books/{ack['_id']}"):
        await anonymous.get(path)  # the miss fills the entry
        answered_fast.clear()
        fast = await anonymous.get(path)
        assert answered_fast == [True]
        app_hit = await editor.get(path)  # credentials: never answered by the fast path
        assert fast.headers["X-Cache"] == app_hit.headers["X-Cache"] == "HIT"
        assert await fast.get_data() == await app_hit.get_data()
        for name in (
            "Content-Type",
            "ETag",
            "Last-Modified",
            "X-Content-Type-Options",
            "X-Frame-Options",
            "Referrer-Policy",
            "Content-Security-Policy",
        ):
            assert fast.headers.get(name) == app_hit.headers.get(name), name
        assert fast.headers["X-Request-ID"] != app_hit.headers["X-Request-ID"]


async def test_the_edge_gives_304_to_a_current_client(cached_app: Quart) -> None:
    editor = await editor_client(cached_app)
    ack = await create(editor, "books", {"title": "Dune"})
    anonymous = cached_app.test_client()
    first = await anonymous.get(f"/books/{ack['_id']}")
    again = await anonymous.get(
        f"/books/{ack['_id']}", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.headers["X-Cache"] == "HIT"
    assert again.headers["ETag"] == first.headers["ETag"]


@pytest.mark.parametrize(
    "headers",
    [{"Cookie": "a=b"}, {"Origin": "http://example.invalid"}, {"X-API-Key": "shoal_nope"}],
)
async def test_requests_that_may_depend_on_who_asks_skip_the_edge(
    cached_app: Quart, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    cache = get_cache(cached_app)
    answered: list[bool] = []
    original = cache.fast_answer

    async def spy(scope: Any, send: Any) -> bool:
        answered.append(await original(scope, send))
        return answered[-1]

    monkeypatch.setattr(cache, "fast_answer", spy)
    client = cached_app.test_client()
    await client.get("/books")
    response = await client.get("/books", headers=headers)
    assert answered[-1] is False
    # The app answers instead (the bad API key is its 401, not a cached list).
    assert response.status_code == (401 if "X-API-Key" in headers else 200)


async def test_a_write_then_a_read_at_the_other_instance_edge_is_fresh(
    two_instances: tuple[Quart, Quart],
) -> None:
    first, second = two_instances
    writer = await editor_client(first)
    reader = second.test_client()  # anonymous: answered by the fast path once cached
    for round_ in range(5):
        await reader.get("/books")
        await create(writer, "books", {"title": f"book {round_}"})
        listed = await (await reader.get("/books")).get_json()
        assert listed["_meta"]["total"] == round_ + 1


# --- aggregations, embedding, sub-resources and lookups -----------------------------

EVE_FEATURES: dict[str, Any] = {
    "people": {
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET", "PATCH"],
        "public_methods": ["GET", "POST"],
        "public_item_methods": ["GET", "PATCH"],
        "additional_lookup": {"field": "name"},
        "cache_ttl": 60,
    },
    "invoices": {
        "schema": {
            "type": "object",
            "properties": {
                "person": {
                    "type": "string",
                    "format": "objectid",
                    "data_relation": {"resource": "people", "embeddable": True},
                },
                "owner": {"type": "string"},
                "amount": {"type": "integer"},
            },
        },
        "url": "owners/<owner>/invoices",
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET"],
        "public_methods": ["GET", "POST"],
        "public_item_methods": ["GET"],
        "cache_ttl": 60,
    },
    "totals": {
        "schema": {"type": "object"},
        "datasource": {
            "source": "invoices",
            "aggregation": {
                "pipeline": [{"$group": {"_id": "$owner", "amount": {"$sum": "$amount"}}}]
            },
        },
        "public_methods": ["GET"],
        "cache_ttl": 60,
    },
}


@pytest.fixture
async def eve_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    app = create_app(settings_factory(resources=EVE_FEATURES))
    async with app.test_app():
        yield app


@pytest.mark.engine_gap(ferretdb="facet")
async def test_an_aggregation_is_cached_and_made_stale_by_writes_to_its_source(
    eve_app: Quart,
) -> None:
    client = eve_app.test_client()
    await create(client, "owners/ann/invoices", {"amount": 5})
    first, body = await _get(client, "/totals")
    assert (first.headers["X-Cache"], body["_items"]) == ("MISS", [{"_id": "ann", "amount": 5}])
    hit, _ = await _get(client, "/totals")
    assert hit.headers["X-Cache"] == "HIT"
    await create(client, "owners/ann/invoices", {"amount": 2})
    again, body = await _get(client, "/totals")
    assert (again.headers["X-Cache"], body["_items"]) == ("MISS", [{"_id": "ann", "amount": 7}])


async def test_a_sub_resource_is_cached_per_parent(eve_app: Quart) -> None:
    client = eve_app.test_client()
    await create(client, "owners/ann/invoices", {"amount": 1})
    await create(client, "owners/bob/invoices", {"amount": 2})
    for expected in ("MISS", "HIT"):
        ann_response, ann = await _get(client, "/owners/ann/invoices")
        bob_response, bob = await _get(client, "/owners/bob/invoices")
        assert [item["amount"] for item in ann["_items"]] == [1]
        assert [item["amount"] for item in bob["_items"]] == [2]
        assert ann_response.headers["X-Cache"] == bob_response.headers["X-Cache"] == expected


async def test_embedded_documents_are_made_stale_by_writes_to_their_resource(
    eve_app: Quart,
) -> None:
    client = eve_app.test_client()
    person = await create(client, "people", {"name": "ann"})
    invoice = await create(client, "owners/ann/invoices", {"person": person["_id"]})
    path = f"/owners/ann/invoices/{invoice['_id']}?embedded=%7B%22person%22%3A1%7D"
    _, body = await _get(client, path)
    hit, _ = await _get(client, path)
    assert (hit.headers["X-Cache"], body["person"]["name"]) == ("HIT", "ann")
    response = await client.patch(
        f"/people/{person['_id']}", json={"name": "anne"}, headers=if_match(person["_etag"])
    )
    assert response.status_code == 200
    again, body = await _get(client, path)
    assert (again.headers["X-Cache"], body["person"]["name"]) == ("MISS", "anne")


async def test_an_additional_lookup_is_cached_and_made_stale(eve_app: Quart) -> None:
    client = eve_app.test_client()
    person = await create(client, "people", {"name": "ann"})
    await _get(client, "/people/by-name/ann")
    hit, _ = await _get(client, "/people/by-name/ann")
    assert hit.headers["X-Cache"] == "HIT"
    await client.patch(
        f"/people/{person['_id']}", json={"name": "ann"}, headers=if_match(person["_etag"])
    )
    assert (await _get(client, "/people/by-name/ann"))[0].headers["X-Cache"] == "MISS"
