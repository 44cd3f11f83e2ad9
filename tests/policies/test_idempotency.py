"""Idempotency-Key, over HTTP: one write per key, replays, conflicts, bad keys."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from bson import ObjectId
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.storage import get_storage
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, editor_client, token_for
from tests.utils.http import create, if_match


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
    for app in two_instances:  # a slow write keeps the first request in progress
        storage = get_storage(app)
        insert = storage.insert_many

        async def slow_insert(*args: Any, _insert: Any = insert, **kwargs: Any) -> Any:
            await asyncio.sleep(0.3)
            return await _insert(*args, **kwargs)

        monkeypatch.setattr(storage, "insert_many", slow_insert)
    user = str(ObjectId())
    clients = [await editor_client(app, user_id=user) for app in two_instances]
    headers = keyed()
    responses = await asyncio.gather(
        *(clients[n % 2].post("/books", json={"title": "Once"}, headers=headers) for n in range(20))
    )
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


async def test_stored_answers_expire(settings_factory: SettingsFactory) -> None:
    settings: Any = settings_factory(idempotency={"ttl": 1})
    app = create_app(settings)
    async with app.test_app():
        client = await editor_client(app)
        headers = keyed()
        await client.post("/books", json={"title": "x"}, headers=headers)
        await asyncio.sleep(1.2)
        again = await client.post("/books", json={"title": "x"}, headers=headers)
        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again.headers
        assert await _total(client) == 2


async def test_a_write_whose_client_hangs_up_still_finishes_and_is_kept(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that gave up waiting retries: the first attempt must have been
    carried through, so the retry gets its answer rather than a second write."""
    storage = get_storage(app)
    insert = storage.insert_many

    async def slow_insert(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)
        return await insert(*args, **kwargs)

    monkeypatch.setattr(storage, "insert_many", slow_insert)
    credentials = bearer(await token_for(app, "editor"))
    client = client_with(app, credentials)
    headers = {**keyed(), **credentials, "Content-Type": "application/json"}
    async with app.test_client().request("/books", method="POST", headers=headers) as hung_up:
        await hung_up.send(b'{"title": "Dune"}')
        await hung_up.send_complete()
        await asyncio.sleep(0.05)  # the handler is inside the slow insert now
        await hung_up.disconnect()
    retry = await client.post("/books", json={"title": "Dune"}, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await _total(client) == 1
