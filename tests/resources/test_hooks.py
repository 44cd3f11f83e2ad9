"""Event hooks, through HTTP: what each event receives, what a hook may
change, how it refuses a request, and that "after" hooks cannot undo a write."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from quart import Quart, Request, abort
from quart.typing import TestClientProtocol as Client

from shoal import shoal_hooks
from shoal.config import Settings
from shoal.errors import Conflict, Forbidden
from shoal.resources import Hooks
from tests.conftest import SettingsFactory
from tests.utils.http import create, fetch, if_match

ALL = {
    "resource_methods": ["GET", "POST", "DELETE"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "public_methods": ["GET", "POST", "DELETE"],
    "public_item_methods": ["GET", "PATCH", "PUT", "DELETE"],
}
BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "slug": {"type": "string"},
        "locked": {"type": "boolean"},
        "hidden": {"type": "boolean"},
    },
}


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    counts = {
        "schema": {"type": "object"},
        "datasource": {
            "source": "books",
            "aggregation": {"pipeline": [{"$group": {"_id": "$title", "n": {"$sum": 1}}}]},
        },
        "public_methods": ["GET"],
    }
    return settings_factory(
        resources={
            "books": {"schema": BOOK, **ALL},
            "notes": {"schema": BOOK, **ALL},
            "shelves": {
                "schema": BOOK,
                **ALL,
                "resource_methods": ["GET", "POST", "PATCH", "DELETE"],
                "public_methods": ["GET", "POST", "PATCH", "DELETE"],
                "bulk_writes": True,
            },
            "counts": counts,
        }
    )


@pytest.fixture
def hooks(app: Quart) -> Hooks:
    return shoal_hooks(app)


@pytest.fixture
def anonymous(app: Quart) -> Client:
    return app.test_client()


async def test_insert_hooks_change_documents_before_they_are_written(
    hooks: Hooks, anonymous: Client
) -> None:
    seen: list[Any] = []

    @hooks.on_insert("books")
    async def slug(documents: list[dict[str, Any]]) -> None:
        for document in documents:
            document["slug"] = document["title"].lower().replace(" ", "-")

    @hooks.on_inserted("books")
    def remember(documents: list[dict[str, Any]]) -> None:  # a plain function works too
        seen.extend(str(document["_id"]) for document in documents)

    ack = await create(anonymous, "books", {"title": "Left Hand"})
    item = await fetch(anonymous, "books", ack["_id"])
    assert item["slug"] == "left-hand"
    assert item["_etag"] == ack["_etag"]  # the ETag covers what the hook added
    assert seen == [ack["_id"]]
    # Other resources are not concerned.
    note = await create(anonymous, "notes", {"title": "X Y"})
    assert "slug" not in await fetch(anonymous, "notes", note["_id"])


async def test_generic_hooks_get_the_resource_first_and_run_first(
    hooks: Hooks, anonymous: Client
) -> None:
    calls: list[tuple[str, ...]] = []

    @hooks.on_inserted()
    def generic(resource: str, documents: list[dict[str, Any]]) -> None:
        calls.append(("generic", resource))

    @hooks.on("on_inserted_books")  # Eve's name
    def own(documents: list[dict[str, Any]]) -> None:
        calls.append(("own",))

    await create(anonymous, "books", {"title": "a"})
    await create(anonymous, "notes", {"title": "b"})
    assert calls == [("generic", "books"), ("own",), ("generic", "notes")]


async def test_a_before_hook_refuses_and_nothing_is_written(
    hooks: Hooks, anonymous: Client
) -> None:
    @hooks.on_insert("books")
    def no_secrets(documents: list[dict[str, Any]]) -> None:
        if any(document["title"] == "secret" for document in documents):
            raise Forbidden("no secret books")

    response = await anonymous.post("/books", json=[{"title": "ok"}, {"title": "secret"}])
    assert response.status_code == 403
    assert (await response.get_json())["_error"] == {"code": 403, "message": "no secret books"}
    assert (await (await anonymous.get("/books")).get_json())["_items"] == []


async def test_quart_abort_works_as_in_eve(hooks: Hooks, anonymous: Client) -> None:
    @hooks.on_pre_POST("books")
    def closed(request: Request) -> None:
        abort(409, "the shop is closed")

    response = await anonymous.post("/books", json={"title": "a"})
    assert response.status_code == 409
    assert (await response.get_json())["_error"]["message"] == "the shop is closed"


async def test_update_hooks(hooks: Hooks, anonymous: Client) -> None:
    @hooks.on_update("books")
    async def guard(updates: dict[str, Any], original: dict[str, Any]) -> None:
        if original.get("locked"):
            raise Conflict("the book is locked")
        if "title" in updates:
            updates["slug"] = updates["title"].lower()

    updated: list[tuple[Any, Any]] = []
    hooks.on_updated("books")(lambda updates, original: updated.append((updates, original)))

    ack = await create(anonymous, "books", {"title": "a"})
    response = await anonymous.patch(
        f"/books/{ack['_id']}", json={"title": "B"}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 200
    item = await fetch(anonymous, "books", ack["_id"])
    assert item["slug"] == "b"
    assert item["_etag"] == (await response.get_json())["_etag"]
    assert updated[0][0] == {"title": "B", "slug": "b"}
    assert updated[0][1]["title"] == "a"

    locked = await create(anonymous, "books", {"title": "c", "locked": True})
    response = await anonymous.patch(
        f"/books/{locked['_id']}", json={"title": "d"}, headers=if_match(locked["_etag"])
    )
    assert response.status_code == 409
    assert (await fetch(anonymous, "books", locked["_id"]))["title"] == "c"


async def test_replace_hooks(hooks: Hooks, anonymous: Client) -> None:
    seen: list[str] = []

    @hooks.on_replace("books")
    def keep_slug(document: dict[str, Any], original: dict[str, Any]) -> None:
        document["slug"] = original.get("slug", "none")

    hooks.on_replaced("books")(lambda document, original: seen.append(document["title"]))
    ack = await create(anonymous, "books", {"title": "a", "slug": "first"})
    response = await anonymous.put(
        f"/books/{ack['_id']}", json={"title": "b"}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 200
    assert (await fetch(anonymous, "books", ack["_id"]))["slug"] == "first"
    assert seen == ["b"]


async def test_delete_hooks(hooks: Hooks, anonymous: Client) -> None:
    deleted: list[str] = []

    @hooks.on_delete_item("books")
    def refuse_locked(original: dict[str, Any]) -> None:
        if original.get("locked"):
            raise Forbidden("locked")

    hooks.on_deleted_item("books")(lambda original: deleted.append(original["title"]))
    locked = await create(anonymous, "books", {"title": "l", "locked": True})
    response = await anonymous.delete(f"/books/{locked['_id']}", headers=if_match(locked["_etag"]))
    assert response.status_code == 403
    assert (await anonymous.get(f"/books/{locked['_id']}")).status_code == 200
    free = await create(anonymous, "books", {"title": "f"})
    response = await anonymous.delete(f"/books/{free['_id']}", headers=if_match(free["_etag"]))
    assert response.status_code == 204
    assert deleted == ["f"]

    events: list[str] = []
    hooks.on_delete_resource("notes")(lambda: events.append("delete"))
    hooks.on_deleted_resource("notes")(lambda: events.append("deleted"))
    assert (await anonymous.delete("/notes")).status_code == 204
    assert events == ["delete", "deleted"]


async def test_writes_by_filter_are_refused_where_they_would_skip_hooks(
    hooks: Hooks, anonymous: Client
) -> None:
    locked = await create(anonymous, "shelves", {"title": "A", "locked": True})
    where = '?where={"title": "A"}'
    # Without hooks, a write by filter is allowed.
    assert (await anonymous.patch(f"/shelves{where}", json={"hidden": True})).status_code == 200

    @hooks.on_update("shelves")
    def keep_locked(updates: dict[str, Any], original: dict[str, Any]) -> None:
        if original.get("locked"):
            raise Conflict("locked")

    response = await anonymous.patch(f"/shelves{where}", json={"hidden": False})
    assert response.status_code == 400
    assert "on_update" in (await response.get_json())["_error"]["message"]
    assert (await fetch(anonymous, "shelves", locked["_id"]))["hidden"] is True

    hooks.on_deleted_resource("shelves")(lambda: None)
    response = await anonymous.delete(f"/shelves{where}")
    assert response.status_code == 400
    assert "on_deleted_resource" in (await response.get_json())["_error"]["message"]
    await fetch(anonymous, "shelves", locked["_id"])  # still there


async def test_a_lookup_hook_filters_every_read_and_write(hooks: Hooks, anonymous: Client) -> None:
    @hooks.on_pre_GET("books")
    async def visible(request: Request, lookup: dict[str, Any]) -> None:
        if request.args.get("all") != "yes":
            lookup["hidden"] = {"$ne": True}

    @hooks.on_pre_PATCH("books")
    def not_hidden(request: Request, lookup: dict[str, Any]) -> None:
        lookup["hidden"] = False

    shown = await create(anonymous, "books", {"title": "shown", "hidden": False})
    hidden = await create(anonymous, "books", {"title": "hidden", "hidden": True})
    body = await (await anonymous.get("/books")).get_json()
    assert [item["title"] for item in body["_items"]] == ["shown"]
    assert (await anonymous.get(f"/books/{hidden['_id']}")).status_code == 404
    assert (await anonymous.get(f"/books/{hidden['_id']}?all=yes")).status_code == 200
    response = await anonymous.patch(
        f"/books/{hidden['_id']}", json={"title": "x"}, headers=if_match(hidden["_etag"])
    )
    assert response.status_code == 404
    response = await anonymous.patch(
        f"/books/{shown['_id']}", json={"title": "y"}, headers=if_match(shown["_etag"])
    )
    assert response.status_code == 200


async def test_fetched_hooks_change_what_is_sent(hooks: Hooks, anonymous: Client) -> None:
    @hooks.on_fetched_resource("books")
    def mark(response: dict[str, Any]) -> None:
        response["_hooked"] = True
        for item in response["_items"]:
            item.pop("slug", None)

    @hooks.on_fetched_item("books")
    async def shout(document: dict[str, Any]) -> None:
        document["title"] = document["title"].upper()

    ack = await create(anonymous, "books", {"title": "quiet", "slug": "q"})
    body = await (await anonymous.get("/books")).get_json()
    assert body["_hooked"] is True
    assert "slug" not in body["_items"][0]
    assert (await fetch(anonymous, "books", ack["_id"]))["title"] == "QUIET"


@pytest.mark.engine_gap(ferretdb="facet")
async def test_aggregation_hooks(hooks: Hooks, anonymous: Client) -> None:
    @hooks.before_aggregation("counts")
    def only_a(pipeline: list[dict[str, Any]]) -> None:
        pipeline.insert(0, {"$match": {"title": "a"}})

    @hooks.after_aggregation("counts")
    def double(documents: list[dict[str, Any]]) -> None:
        for document in documents:
            document["n"] *= 2

    await create(anonymous, "books", {"title": "a"})
    await create(anonymous, "books", {"title": "b"})
    body = await (await anonymous.get("/counts")).get_json()
    assert body["_items"] == [{"_id": "a", "n": 2}]


async def test_an_after_hook_cannot_undo_the_write(
    hooks: Hooks, anonymous: Client, caplog: pytest.LogCaptureFixture
) -> None:
    @hooks.on_inserted("books")
    def broken(documents: list[dict[str, Any]]) -> None:
        raise RuntimeError("the mail server is down")

    with caplog.at_level(logging.ERROR, logger="shoal.hooks"):
        response = await anonymous.post("/books", json={"title": "a"})
    # Eve answers 500 although the document is stored.
    assert response.status_code == 201
    assert "on_inserted" in caplog.text
    assert len((await (await anonymous.get("/books")).get_json())["_items"]) == 1


async def test_a_failing_before_hook_is_a_500_with_a_request_id(
    hooks: Hooks, anonymous: Client
) -> None:
    @hooks.on_update("books")
    def broken(updates: dict[str, Any], original: dict[str, Any]) -> None:
        raise ValueError("a bug")

    ack = await create(anonymous, "books", {"title": "a"})
    response = await anonymous.patch(
        f"/books/{ack['_id']}", json={"title": "b"}, headers=if_match(ack["_etag"])
    )
    assert response.status_code == 500
    assert "request_id" in (await response.get_json())["_error"]
    assert (await fetch(anonymous, "books", ack["_id"]))["title"] == "a"


async def test_post_hooks_see_the_answer(hooks: Hooks, anonymous: Client) -> None:
    statuses: list[int] = []
    hooks.on_post_POST("books")(lambda request, response: statuses.append(response.status_code))
    await create(anonymous, "books", {"title": "a"})
    assert statuses == [201]


def test_misspelt_names_and_unknown_resources_are_errors(hooks: Hooks) -> None:
    # Eve accepts app.on_fetch_item += f, which never runs.
    with pytest.raises(ValueError, match="not an event"):
        hooks.on("on_fetch_item")
    with pytest.raises(ValueError, match="no resource named 'bokks'"):
        hooks.on_insert("bokks")
    with pytest.raises(ValueError, match="no resource named 'bokks'"):
        hooks.on("on_insert_bokks")
    with pytest.raises(AttributeError):
        hooks.on_fetch_item_books  # noqa: B018
    assert callable(hooks.on_insert_books)
