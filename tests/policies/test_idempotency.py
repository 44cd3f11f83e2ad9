"""Idempotency-Key, over HTTP: one write per key, replays, conflicts, bad keys."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from bson import ObjectId
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.policies.idempotency import EXTENSION_KEY as IDEMPOTENCY_KEY
from shoal.storage import get_storage
from tests.api.test_resources_operators import OPERATORS, counted_resources
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, editor_client, token_for
from tests.utils.http import create, if_match
from tests.utils.instances import two_served


def keyed(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or str(uuid.uuid4())}


async def _total(client: Client, query: str = "") -> int:
    body = await (await client.get(f"/books{query}")).get_json()
    total: int = body["_meta"]["total"]
    return total


async def test_one_key_sent_20_times_at_once_across_instances_writes_once(
    two_instances: tuple[Quart, Quart],
) -> None:
    user = str(ObjectId())  # one caller, whichever instance it reaches
    clients = [await editor_client(app, user_id=user) for app in two_instances]
    headers = keyed()
    responses = await asyncio.gather(
        *(clients[n % 2].post("/books", json={"title": "Once"}, headers=headers) for n in range(20))
    )
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [response for response in responses if response.status_code == 201]
    assert created
    bodies = [await response.get_json() for response in created]
    assert all(body == bodies[0] for body in bodies)
    for response in responses:
        if response.status_code == 409:
            conflict = await response.get_json()
            assert conflict["_error"]["code"] == 409
            assert response.headers["Retry-After"] == "1"
    assert await _total(clients[0], '?where={"title":"Once"}') == 1
    # Once the first request is done, every retry gets its answer.
    replay = await clients[1].post("/books", json={"title": "Once"}, headers=headers)
    assert replay.status_code == 201
    assert await replay.get_json() == bodies[0]
    assert await _total(clients[1], '?where={"title":"Once"}') == 1


async def test_while_the_first_request_runs_the_others_get_409(
    two_instances: tuple[Quart, Quart], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first request's write waits until the 19 others have been answered.
    release = asyncio.Event()
    for app in two_instances:
        storage = get_storage(app)
        insert = storage.insert_once

        async def held_insert(*args: Any, _insert: Any = insert, **kwargs: Any) -> Any:
            await release.wait()
            return await _insert(*args, **kwargs)

        monkeypatch.setattr(storage, "insert_once", held_insert)
    user = str(ObjectId())
    clients = [await editor_client(app, user_id=user) for app in two_instances]
    headers = keyed()
    requests = [
        asyncio.create_task(clients[n % 2].post("/books", json={"title": "Once"}, headers=headers))
        for n in range(20)
    ]
    for _ in range(200):  # bounded: 10 s
        if sum(request.done() for request in requests) == 19:
            break
        await asyncio.sleep(0.05)
    release.set()
    responses = await asyncio.gather(*requests)
    assert sorted(response.status_code for response in responses) == [201] + [409] * 19
    assert await _total(clients[0]) == 1


async def test_a_retry_replays_the_first_answer(client: Client) -> None:
    headers = keyed()
    first = await client.post("/books", json={"title": "Dune"}, headers=headers)
    again = await client.post("/books", json={"title": "Dune"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert await again.get_json() == await first.get_json()
    for name in ("Location", "ETag", "Content-Type"):
        assert again.headers[name] == first.headers[name]
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await _total(client) == 1


async def test_the_same_key_with_another_body_is_422(client: Client) -> None:
    headers = keyed()
    assert (await client.post("/books", json={"title": "A"}, headers=headers)).status_code == 201
    response = await client.post("/books", json={"title": "B"}, headers=headers)
    assert response.status_code == 422
    body = await response.get_json()
    assert body["_status"] == "ERR"
    assert "different request body" in body["_error"]["message"]
    assert await _total(client) == 1


async def test_a_patch_is_done_once(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune", "year": 1})
    headers = {**keyed(), **if_match(ack["_etag"])}
    path = f"/books/{ack['_id']}"
    first = await client.patch(path, json={"year": 2}, headers=headers)
    # Without the key, the retry would be refused (its If-Match is stale now).
    again = await client.patch(path, json={"year": 2}, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert await again.get_json() == await first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    plain = await client.patch(path, json={"year": 2}, headers=if_match(ack["_etag"]))
    assert plain.status_code == 412


async def test_a_failed_precondition_does_not_use_up_the_key(client: Client) -> None:
    """412 and 428 are about the headers, not the body: a retry with the right
    If-Match (and the same key and body) must do the write."""
    ack = await create(client, "books", {"title": "Dune", "year": 1})
    path, key = f"/books/{ack['_id']}", keyed()
    missing = await client.patch(path, json={"year": 2}, headers=key)
    assert missing.status_code == 428
    stale = await client.patch(path, json={"year": 2}, headers={**key, **if_match("stale")})
    assert stale.status_code == 412
    right = await client.patch(path, json={"year": 2}, headers={**key, **if_match(ack["_etag"])})
    assert right.status_code == 200
    assert "Idempotent-Replayed" not in right.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
async def test_a_malformed_key_is_400(client: Client, key: str) -> None:
    response = await client.post("/books", json={"title": "x"}, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert "Idempotency-Key" in (await response.get_json())["_error"]["message"]
    assert await _total(client) == 0


async def test_a_key_of_255_printable_characters_is_fine(client: Client) -> None:
    key = ("abc-XYZ_0.9 ~!" * 20)[:255]
    response = await client.post("/books", json={"title": "x"}, headers=keyed(key))
    assert response.status_code == 201


async def test_keys_belong_to_their_caller(app: Quart) -> None:
    owner_a, owner_b = await editor_client(app), await editor_client(app)
    headers = keyed("shared-key")
    first = await owner_a.post("/books", json={"title": "x"}, headers=headers)
    second = await owner_b.post("/books", json={"title": "x"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in second.headers
    assert (await first.get_json())["_id"] != (await second.get_json())["_id"]


async def test_a_refused_document_is_replayed_as_refused(client: Client) -> None:
    headers = keyed()
    first = await client.post("/books", json={"year": -1}, headers=headers)
    again = await client.post("/books", json={"year": -1}, headers=headers)
    assert (first.status_code, again.status_code) == (422, 422)
    assert await again.get_json() == await first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_an_unauthorised_attempt_does_not_use_up_the_key(app: Quart) -> None:
    headers = keyed()
    anonymous = await app.test_client().post("/books", json={"title": "x"}, headers=headers)
    assert anonymous.status_code == 401
    editor = await editor_client(app)
    response = await editor.post("/books", json={"title": "x"}, headers=headers)
    assert response.status_code == 201


async def test_the_key_is_ignored_where_it_does_not_apply(client: Client) -> None:
    headers = keyed()
    for _ in range(2):
        response = await client.get("/books", headers=headers)
        assert response.status_code == 200
        assert "Idempotent-Replayed" not in response.headers


async def test_after_the_stored_answer_expires_the_write_is_still_found_done(
    settings_factory: SettingsFactory,
) -> None:
    """The document's id comes from the key: the same POST again, even once
    Redis has forgotten the answer, finds it instead of inserting a twin."""
    settings: Any = settings_factory(idempotency={"ttl": 1})
    app = create_app(settings)
    async with app.test_app():
        client = await editor_client(app, user_id=str(ObjectId()))
        headers = keyed()
        first = await client.post("/books", json={"title": "x"}, headers=headers)
        await asyncio.sleep(1.2)
        again = await client.post("/books", json={"title": "x"}, headers=headers)
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await again.get_json() == await first.get_json()
        assert await _total(client) == 1
        # The same key for another document, once the answer is gone: refused.
        await asyncio.sleep(1.2)
        other = await client.post("/books", json={"title": "y"}, headers=headers)
        assert other.status_code == 409
        assert "Idempotency-Key" in (await other.get_json())["_error"]["message"]
        assert await _total(client) == 1


async def test_a_write_whose_client_hangs_up_still_finishes_and_is_kept(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that gave up waiting retries: the first attempt must have been
    carried through, so the retry gets its answer rather than a second write."""
    storage = get_storage(app)
    insert = storage.insert_once
    inside = asyncio.Event()

    async def slow_insert(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        await asyncio.sleep(0.3)
        return await insert(*args, **kwargs)

    monkeypatch.setattr(storage, "insert_once", slow_insert)
    credentials = bearer(await token_for(app, "editor"))
    client = client_with(app, credentials)
    headers = {**keyed(), **credentials, "Content-Type": "application/json"}
    async with app.test_client().request("/books", method="POST", headers=headers) as hung_up:
        await hung_up.send(b'{"title": "Dune"}')
        await hung_up.send_complete()
        await asyncio.wait_for(inside.wait(), 10)  # the handler is inside the write
        await hung_up.disconnect()
    retry = await client.post("/books", json={"title": "Dune"}, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await _total(client) == 1


# --- a worker that dies between the write and keeping its answer -------------------------


@asynccontextmanager
async def answers_lost(app: Quart) -> AsyncIterator[None]:
    """Inside: ``app`` does its writes but never keeps their answers, as a
    worker killed between the two would (its claim on the key stays until
    ``lock_ttl``)."""
    state = app.extensions[IDEMPOTENCY_KEY].state
    keep = state.set

    async def dropped(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith("idem:"):
            return True
        return await keep(key, *args, **kwargs)

    state.set = dropped
    try:
        yield
    finally:
        state.set = keep


async def test_a_claim_sent_twice_by_the_redis_client_is_still_the_requests_own(
    app: Quart, client: Client
) -> None:
    # The Cluster client sends a command again when its reply is lost; the
    # first SET NX stored the claim, so the second one finds it.
    state = app.extensions[IDEMPOTENCY_KEY].state
    claim = state.set_or_get

    async def sent_twice(key: str, value: bytes, *, ttl: float) -> bytes | None:
        await claim(key, value, ttl=ttl)
        again: bytes | None = await claim(key, value, ttl=ttl)
        return again

    state.set_or_get = sent_twice
    try:
        first = await client.post("/books", json={"title": "Twice"}, headers=keyed())
    finally:
        state.set_or_get = claim
    assert first.status_code == 201, await first.get_data(as_text=True)
    assert await _total(client, '?where={"title":"Twice"}') == 1


@pytest.fixture
async def instances(settings_factory: SettingsFactory) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two instances whose claims on a key lapse after a second."""
    settings = settings_factory(
        idempotency={"lock_ttl": 1}, resources=counted_resources(item_methods=["GET", "PATCH"])
    )
    async with two_served(settings) as apps:
        yield apps


async def _after_the_claim_lapses() -> None:
    await asyncio.sleep(1.2)


async def test_a_post_whose_answer_was_lost_is_not_done_twice(
    instances: tuple[Quart, Quart],
) -> None:
    user = str(ObjectId())
    dying, other = [await editor_client(app, user_id=user) for app in instances]
    headers = keyed()
    async with answers_lost(instances[0]):
        lost = await dying.post("/books", json={"title": "Once"}, headers=headers)
    assert lost.status_code == 201
    # Meanwhile the key is still claimed: the retry is asked to wait.
    waiting = await other.post("/books", json={"title": "Once"}, headers=headers)
    assert waiting.status_code == 409
    await _after_the_claim_lapses()

    retry = await other.post("/books", json={"title": "Once"}, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await retry.get_json() == await lost.get_json()
    for name in ("Location", "ETag"):
        assert retry.headers[name] == lost.headers[name]
    assert await _total(other, '?where={"title":"Once"}') == 1
    # Its answer is kept now: the next retry is a plain replay.
    again = await dying.post("/books", json={"title": "Once"}, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.get_json() == await lost.get_json()


async def test_a_bulk_post_whose_answer_was_lost_is_not_done_twice(
    instances: tuple[Quart, Quart],
) -> None:
    user = str(ObjectId())
    dying, other = [await editor_client(app, user_id=user) for app in instances]
    headers, books = keyed(), [{"title": "Bulk", "year": year} for year in (1, 2, 3)]
    async with answers_lost(instances[0]):
        lost = await dying.post("/books", json=books, headers=headers)
    assert lost.status_code == 201
    await _after_the_claim_lapses()
    retry = await other.post("/books", json=books, headers=headers)
    assert retry.status_code == 201
    assert await retry.get_json() == await lost.get_json()
    assert await _total(other, '?where={"title":"Bulk"}') == 3


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_an_item_write_whose_answer_was_lost_is_not_done_twice(
    instances: tuple[Quart, Quart], method: str
) -> None:
    user = str(ObjectId())
    dying, other = [await editor_client(app, user_id=user) for app in instances]
    ack = await create(other, "books", {"title": "Dune", "year": 1})
    path, headers = f"/books/{ack['_id']}", {**keyed(), **if_match(ack["_etag"])}
    body = {"year": 2} if method == "PATCH" else {"title": "Dune", "year": 2}
    async with answers_lost(instances[0]):
        lost = await dying.open(path, method=method, json=body, headers=headers)
    assert lost.status_code == 200
    await _after_the_claim_lapses()

    retry = await other.open(path, method=method, json=body, headers=headers)
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["ETag"] == lost.headers["ETag"]
    assert await retry.get_json() == await lost.get_json()
    stored = await (await other.get(path)).get_json()
    assert stored["year"] == 2
    assert stored["_etag"] == (await lost.get_json())["_etag"]


async def test_an_item_write_redone_after_another_write_is_refused_not_applied(
    instances: tuple[Quart, Quart],
) -> None:
    user = str(ObjectId())
    dying, other = [await editor_client(app, user_id=user) for app in instances]
    ack = await create(other, "books", {"title": "Dune", "year": 1})
    path, headers = f"/books/{ack['_id']}", {**keyed(), **if_match(ack["_etag"])}
    async with answers_lost(instances[0]):
        lost = await dying.patch(path, json={"year": 2}, headers=headers)
    later = await other.patch(path, json={"year": 3}, headers=if_match(lost.headers["ETag"]))
    assert later.status_code == 200
    await _after_the_claim_lapses()

    retry = await other.patch(path, json={"year": 2}, headers=headers)
    assert retry.status_code == 412
    assert (await (await other.get(path)).get_json())["year"] == 3


async def test_an_operator_update_whose_answer_was_lost_counts_once(
    instances: tuple[Quart, Quart],
) -> None:
    user = str(ObjectId())
    dying, other = [await editor_client(app, user_id=user) for app in instances]
    created = await create(other, "counters", {"name": "c", "hits": 0})
    path = f"/counters/{created['_id']}"
    headers = {**keyed(), **if_match(created["_etag"]), **OPERATORS}
    body = json.dumps({"$inc": {"hits": 1}})
    async with answers_lost(instances[0]):
        lost = await dying.patch(path, data=body, headers=headers)
    assert lost.status_code == 200
    await _after_the_claim_lapses()
    retry = await other.patch(path, data=body, headers=headers)
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert (await (await other.get(path)).get_json())["hits"] == 1


async def test_an_operator_update_with_a_key_needs_if_match(
    instances: tuple[Quart, Quart],
) -> None:
    client = await editor_client(instances[0])
    created = await create(client, "counters", {"name": "c", "hits": 0})
    path = f"/counters/{created['_id']}"
    body = json.dumps({"$inc": {"hits": 1}})
    response = await client.patch(path, data=body, headers={**keyed(), **OPERATORS})
    assert response.status_code == 428
    assert "If-Match" in (await response.get_json())["_error"]["message"]
    assert (await (await client.get(path)).get_json())["hits"] == 0
    unkeyed = await client.patch(path, data=body, headers=OPERATORS)
    assert unkeyed.status_code == 200


async def test_put_and_delete_with_a_key_replay_their_first_answer(client: Client) -> None:
    ack = await create(client, "books", {"title": "Dune", "year": 1})
    path = f"/books/{ack['_id']}"
    put_headers = {**keyed(), **if_match(ack["_etag"])}
    first = await client.put(path, json={"title": "Dune", "year": 9}, headers=put_headers)
    again = await client.put(path, json={"title": "Dune", "year": 9}, headers=put_headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.get_json() == await first.get_json()

    delete_headers = {**keyed(), **if_match(first.headers["ETag"].strip('"'))}
    deleted = await client.delete(path, headers=delete_headers)
    redone = await client.delete(path, headers=delete_headers)
    assert (deleted.status_code, redone.status_code) == (204, 204)
    assert redone.headers["Idempotent-Replayed"] == "true"
    assert (await client.get(path)).status_code == 404
