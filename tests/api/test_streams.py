"""Change streams over Server-Sent Events, over HTTP: events, filters, access,
resuming with Last-Event-ID on another instance, limits and shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.auth.users import UserAdmin
from shoal.http.lifecycle import get_lifecycle
from shoal.resources.changes import EXTENSION_KEY as FEEDS_KEY
from shoal.resources.changes import ChangeFeeds
from shoal.storage import ChangeStreamsUnsupported, get_storage
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, editor_client, token_for
from tests.utils.engines import DatabaseServer
from tests.utils.instances import two_served
from tests.utils.live import live_example
from tests.utils.settings import example_resources, make_settings
from tests.utils.streams import listening

NOTES = {
    "schema": {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string"}, "owner": {"type": "string"}},
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH", "DELETE"],
    "allowed_roles": ["editor", "reader"],
    "auth_field": "owner",
    "streams": True,
}


def streamed_resources() -> dict[str, Any]:
    resources = example_resources()
    resources["books"]["streams"] = True
    resources["notes"] = NOTES
    return resources


@pytest.fixture
def stream_settings(settings_factory: SettingsFactory) -> Any:
    return settings_factory(resources=streamed_resources(), streams={"heartbeat": 0.2})


@pytest.fixture
async def app(stream_settings: Any) -> AsyncIterator[Quart]:
    application = create_app(stream_settings)
    async with application.test_app():
        yield application


async def _post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 201, await response.get_data()
    created: dict[str, Any] = await response.get_json()
    return created


# -- events ------------------------------------------------------------------


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_writes_arrive_as_events_rendered_as_reads_are(app: Quart) -> None:
    editor = await editor_client(app)
    async with listening(app.test_client(), "/books/_stream") as stream:
        created = await _post(editor, "/books", {"title": "Dune", "year": 1965})
        patched = await editor.patch(
            f"/books/{created['_id']}",
            json={"year": 1966},
            headers={"If-Match": created["_etag"]},
        )
        assert patched.status_code == 200
        etag = (await patched.get_json())["_etag"]
        deleted = await editor.delete(f"/books/{created['_id']}", headers={"If-Match": etag})
        assert deleted.status_code == 204
        insert, change, delete = await stream.wait_for(3)

    assert insert.name == "insert"
    assert insert.data["operation"] == "insert"
    assert insert.data["_id"] == created["_id"]
    assert insert.data["document"]["title"] == "Dune"
    assert insert.data["document"]["_etag"] == created["_etag"]
    assert insert.data["document"]["_links"]["self"]["href"] == f"books/{created['_id']}"
    # Dates as reads render them (RFC 1123), whatever form the engine's event has.
    assert insert.data["document"]["_created"] == created["_created"]
    assert insert.data["document"]["_updated"] == created["_updated"]
    # Shoal's PATCH replaces the document (MongoDB: "replace"; some engines
    # report it as an update): either way the event carries the new document.
    assert change.name in {"replace", "update"}
    assert change.data["document"]["year"] == 1966
    assert change.data["document"]["_etag"] == etag
    assert delete.name == "delete"
    assert delete.data == {"operation": "delete", "_id": created["_id"]}
    assert len({insert.id, change.id, delete.id}) == 3
    assert all(event.id for event in (insert, change, delete))


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_an_idle_stream_is_an_uncompressed_event_stream_with_heartbeats(
    app: Quart,
) -> None:
    headers = {"Accept-Encoding": "gzip, br"}
    async with listening(app.test_client(), "/books/_stream", headers) as stream:
        # A heartbeat every 0.2 s, each passed on as it is sent (not held in a buffer).
        await stream.wait_for_comments(2)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-store"
    assert "content-encoding" not in stream.headers
    assert stream.events == []


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_one_documents_stream_sees_only_that_document(app: Quart) -> None:
    editor = await editor_client(app)
    mine = await _post(editor, "/books", {"title": "Mine"})
    async with listening(app.test_client(), f"/books/{mine['_id']}/_stream") as stream:
        await _post(editor, "/books", {"title": "Other"})
        response = await editor.patch(
            f"/books/{mine['_id']}", json={"year": 2000}, headers={"If-Match": mine["_etag"]}
        )
        etag = (await response.get_json())["_etag"]
        await editor.delete(f"/books/{mine['_id']}", headers={"If-Match": etag})
        events = await stream.wait_for(2)
    assert [event.data["_id"] for event in events] == [mine["_id"], mine["_id"]]
    assert events[1].name == "delete"


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_where_filters_events(app: Quart) -> None:
    editor = await editor_client(app)
    where = json.dumps({"year": {"$gte": 2000}})
    async with listening(app.test_client(), f"/books/_stream?where={where}") as stream:
        await _post(editor, "/books", {"title": "Old", "year": 1950})
        await _post(editor, "/books", {"title": "New", "year": 2020})
        created = await _post(editor, "/books", {"title": "Gone", "year": 2021})
        await editor.delete(f"/books/{created['_id']}", headers={"If-Match": created["_etag"]})
        await _post(editor, "/books", {"title": "Last", "year": 2022})
        events = await stream.wait_for(3)
        await asyncio.sleep(0.3)
    titles = [event.data["document"]["title"] for event in events]
    assert titles == ["New", "Gone", "Last"]
    # A delete carries no document to match: a filtered stream does not get it.
    assert [event.name for event in stream.events] == ["insert", "insert", "insert"]


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_owners_see_only_their_own_documents(app: Quart) -> None:
    alice = client_with(app, bearer(await token_for(app, "editor", name="alice")))
    bob = client_with(app, bearer(await token_for(app, "editor", name="bob")))
    async with (
        listening(alice, "/notes/_stream") as alices,
        listening(bob, "/notes/_stream") as bobs,
    ):
        await _post(alice, "/notes", {"text": "alice's"})
        await _post(bob, "/notes", {"text": "bob's"})
        [seen_by_alice] = await alices.wait_for(1)
        [seen_by_bob] = await bobs.wait_for(1)
        await asyncio.sleep(0.3)
    assert seen_by_alice.data["document"]["text"] == "alice's"
    assert seen_by_bob.data["document"]["text"] == "bob's"
    assert len(alices.events) == len(bobs.events) == 1


async def test_access_rules_apply_to_streams(app: Quart) -> None:
    anonymous = app.test_client()
    refused = await anonymous.get("/notes/_stream")
    assert refused.status_code == 401
    stranger = client_with(app, bearer(await token_for(app, "visitor")))
    assert (await stranger.get("/notes/_stream")).status_code == 403
    editor = await editor_client(app)
    note = await _post(editor, "/notes", {"text": "private"})
    other = client_with(app, bearer(await token_for(app, "editor", name="other")))
    assert (await other.get(f"/notes/{note['_id']}/_stream")).status_code == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('{"$where": "1"}', "$where"),
        ('{"location": {"$near": [0, 0]}}', "$near"),
        ("{not json", "where is not valid JSON"),
        # Operators Shoal cannot match on an event itself.
        ('{"year": {"$mod": [0, 0]}}', "$mod"),
        ('{"year": {"$mod": [2]}}', "$mod"),
    ],
)
async def test_bad_filters_are_refused(app: Quart, query: str, message: str) -> None:
    response = await app.test_client().get("/books/_stream", query_string={"where": query})
    assert response.status_code == 400
    assert message in (await response.get_json())["_error"]["message"]


async def test_a_resource_without_streams_has_no_stream(app: Quart) -> None:
    response = await app.test_client().get("/authors/_stream")
    assert response.status_code == 404


async def test_a_malformed_last_event_id_is_refused(app: Quart) -> None:
    for bad in ("{not ejson", "é" * 3, "x" * 2000):
        response = await app.test_client().get("/books/_stream", headers={"Last-Event-ID": bad})
        assert response.status_code == 400, bad


# -- resuming ------------------------------------------------------------------


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_a_reconnect_to_another_instance_misses_nothing(stream_settings: Any) -> None:
    async with two_served(stream_settings) as (first, second):
        editor = await editor_client(first)
        async with listening(first.test_client(), "/books/_stream") as before:
            await _post(editor, "/books", {"title": "one"})
            [seen] = await before.wait_for(1)
        # Disconnected: these are written while nobody listens.
        for title in ("two", "three", "four"):
            await _post(editor, "/books", {"title": title})
        headers = {"Last-Event-ID": seen.id or ""}
        async with listening(second.test_client(), "/books/_stream", headers) as after:
            await _post(await editor_client(second), "/books", {"title": "five"})
            events = await after.wait_for(4)
            await asyncio.sleep(0.3)
    assert [event.data["document"]["title"] for event in events] == [
        "two",
        "three",
        "four",
        "five",
    ]
    assert len(after.events) == 4  # nothing twice


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_a_subscriber_on_one_instance_sees_writes_made_on_another(
    stream_settings: Any,
) -> None:
    async with two_served(stream_settings) as (first, second):
        writer = await editor_client(second)
        async with listening(first.test_client(), "/books/_stream") as stream:
            await _post(writer, "/books", {"title": "from the other side"})
            [event] = await stream.wait_for(1)
    assert event.data["document"]["title"] == "from the other side"


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_a_reconnect_to_the_same_worker_replays_from_memory(app: Quart) -> None:
    editor = await editor_client(app)
    async with listening(app.test_client(), "/books/_stream") as keep_open:
        async with listening(app.test_client(), "/books/_stream") as first:
            await _post(editor, "/books", {"title": "a"})
            [seen] = await first.wait_for(1)
        await _post(editor, "/books", {"title": "b"})
        await keep_open.wait_for(2)
        headers = {"Last-Event-ID": seen.id or ""}
        async with listening(app.test_client(), "/books/_stream", headers) as again:
            await _post(editor, "/books", {"title": "c"})
            events = await again.wait_for(2)
            await asyncio.sleep(0.3)
    assert [event.data["document"]["title"] for event in events] == ["b", "c"]
    assert len(again.events) == 2


# -- limits and shutdown ---------------------------------------------------------


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_streams_beyond_the_workers_limit_get_503(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(resources=streamed_resources(), streams={"max_per_worker": 2})
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        async with listening(client, "/books/_stream"), listening(client, "/books/_stream"):
            refused = await client.get("/books/_stream")
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
        # Both closed: room again.
        await asyncio.sleep(0.1)
        feeds: ChangeFeeds = app.extensions[FEEDS_KEY]
        assert feeds.open == 0


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_draining_ends_every_stream_cleanly(app: Quart) -> None:
    async with listening(app.test_client(), "/books/_stream") as stream:
        await get_lifecycle(app).drain()
        [end] = await stream.wait_for(1)
        refused = await app.test_client().get("/books/_stream")
    assert end.name == "end"
    assert "shutting down" in end.data["message"]
    assert refused.status_code == 503
    ready = await app.test_client().get("/readyz")
    assert ready.status_code == 503


# -- failures ------------------------------------------------------------------


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_a_stream_survives_a_database_restart_by_resuming(
    own_database: DatabaseServer, redis_url: str
) -> None:
    store = own_database
    settings = make_settings(
        store.uri, redis_url, resources=streamed_resources(), streams={"heartbeat": 0.2}
    )
    app = create_app(settings)
    async with app.test_app():
        editor = await editor_client(app)
        async with listening(app.test_client(), "/books/_stream") as stream:
            await _post(editor, "/books", {"title": "before"})
            await stream.wait_for(1)
            store.kill()
            await asyncio.sleep(1.0)  # the feed fails and waits to resume
            store.start()
            await _post(editor, "/books", {"title": "after"})
            events = await stream.wait_for(2, timeout=30)
    assert [event.data["document"]["title"] for event in events] == ["before", "after"]
    assert all(event.name == "insert" for event in stream.events)  # never ended


# -- many subscribers, one real worker ---------------------------------------------

SUBSCRIBERS = 500


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def _open_stream(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /books/_stream HTTP/1.1\r\nHost: shoal\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return reader, writer


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_500_subscribers_on_one_worker_share_one_stream_in_bounded_memory(
    tmp_path: Path, mongodb_uri: str, redis_url: str
) -> None:
    with live_example(tmp_path, mongodb_uri, redis_url, resources=streamed_resources()) as server:
        [worker] = [
            child for child in server.process.children() if "resource_tracker" not in child.cmdline
        ]
        port = int(server.url.rsplit(":", 1)[1])
        idle = _rss_kib(worker.pid)
        connections = []
        try:
            for _ in range(SUBSCRIBERS // 50):  # in batches, as clients arrive
                connections += await asyncio.gather(*(_open_stream(port) for _ in range(50)))
            async with httpx.AsyncClient(base_url=server.url) as http:
                headers = bearer(server.token("editor"))
                posted = await http.post("/books", json={"title": "to everyone"}, headers=headers)
            assert posted.status_code == 201
            arrived = await asyncio.gather(
                *(
                    asyncio.wait_for(reader.readuntil(b"event: insert"), 60)
                    for reader, _ in connections
                )
            )
            assert len(arrived) == SUBSCRIBERS
            grown = _rss_kib(worker.pid) - idle
        finally:
            for _, writer in connections:
                writer.close()
    # One shared change stream and a small queue per subscriber: well under
    # 100 KiB each (a change stream per client would hold a cursor and a
    # connection each).
    print(f"worker RSS grew {grown} KiB for {SUBSCRIBERS} subscribers")
    assert grown < SUBSCRIBERS * 100, f"{grown} KiB for {SUBSCRIBERS} subscribers"


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_open_streams_do_not_hold_admission_slots(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(
        resources=streamed_resources(), admission={"max_in_flight": 1, "queue_timeout": 0.5}
    )
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        async with listening(client, "/books/_stream"), listening(client, "/books/_stream"):
            assert (await client.get("/books")).status_code == 200


# -- credentials that end while a stream is open ------------------------------------


@pytest.mark.engine_gap(ferretdb="change_streams")
@pytest.mark.parametrize("how", ["disable", "logout"])
async def test_a_stream_ends_when_its_credentials_are_revoked(app: Quart, how: str) -> None:
    """A real user's open stream: once the user is disabled (or logs out), the
    stream ends, and later writes are not sent to it."""
    auth = get_auth(app)
    await auth.accounts.create_user("watcher", "a long enough password", ["editor"])
    client = app.test_client()
    login = await client.post(
        "/auth/login", json={"username": "watcher", "password": "a long enough password"}
    )
    headers = bearer((await login.get_json())["access_token"])
    editor = await editor_client(app)
    async with listening(app.test_client(), "/books/_stream", headers) as stream:
        await _post(editor, "/books", {"title": "before"})
        (first,) = await stream.wait_for(1)
        assert first.data["document"]["title"] == "before"
        if how == "disable":
            await UserAdmin(auth.accounts, auth.store).disable("watcher")
        else:
            assert (await client.post("/auth/logout", headers=headers)).status_code == 204
        _, ended = await stream.wait_for(2)
        assert ended.name == "end"
        assert "revoked" in ended.data["message"]
        await _post(editor, "/books", {"title": "after"})
        await asyncio.sleep(0.5)
        assert [event.name for event in stream.events] == ["insert", "end"]


async def test_a_database_without_change_streams_answers_501(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a standalone MongoDB (or a server without change streams) answers.
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ChangeStreamsUnsupported("the database has no change streams")

    monkeypatch.setattr(get_storage(app), "watch", refuse)
    for _ in range(2):  # asked once, remembered
        response = await app.test_client().get("/books/_stream")
        assert response.status_code == 501
        body = await response.get_json()
        assert "change streams" in body["_error"]["message"]


@pytest.mark.engine_gap(ferretdb="change_streams")
async def test_a_stream_shows_only_its_resources_documents_and_soft_deletes_as_deletes(
    settings_factory: SettingsFactory,
) -> None:
    resources = streamed_resources()
    shelf = {
        "schema": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "kind": {"type": "string"}},
        },
        "datasource": {"source": "shelf", "filter": {"kind": "novel"}},
        "resource_methods": ["GET", "POST"],
        "item_methods": ["GET", "DELETE"],
        "public_methods": ["GET", "POST"],
        "public_item_methods": ["GET", "DELETE"],
        "soft_delete": True,
        "streams": True,
    }
    everything = {
        **shelf,
        "datasource": {"source": "shelf"},
        "soft_delete": False,
        "streams": False,
    }
    resources.update(novels=shelf, shelf=everything)
    app = create_app(settings_factory(resources=resources, streams={"heartbeat": 0.2}))
    async with app.test_app():
        client = app.test_client()
        async with listening(client, "/novels/_stream") as stream:
            other = await client.post("/shelf", json={"title": "an atlas", "kind": "atlas"})
            assert other.status_code == 201
            novel = await _post(client, "/novels", {"title": "Dune"})
            gone = await client.delete(
                f"/novels/{novel['_id']}", headers={"If-Match": novel["_etag"]}
            )
            assert gone.status_code == 204
            insert, delete = await stream.wait_for(2)
            await asyncio.sleep(0.3)
    assert insert.name == "insert"
    assert insert.data["document"]["title"] == "Dune"
    assert delete.name == "delete"
    assert delete.data == {"operation": "delete", "_id": novel["_id"]}
    assert len(stream.events) == 2  # the atlas is not a novel
