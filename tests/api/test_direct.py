"""Direct reads: a public item GET answered without Quart gives exactly what
the full path gives, and anything it does not cover takes the full path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart, request

from shoal import shoal_hooks
from shoal.api.direct import DirectReads
from shoal.app import create_app
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, editor_client, token_for
from tests.utils.settings import example_resources

#: Headers that differ between any two answers.
_PER_ANSWER = {"x-request-id", "date"}


@pytest.fixture
async def apps(settings_factory: SettingsFactory) -> AsyncIterator[tuple[Quart, list[str]]]:
    """An app, and the requests that reached Quart's view machinery."""
    app = create_app(settings_factory())
    reached: list[str] = []

    @app.before_request
    async def note() -> None:
        reached.append(f"{request.method} {request.full_path}")

    async with app.test_app():
        yield app, reached


async def _answer(app: Quart, path: str, headers: dict[str, str] | None = None) -> Any:
    response = await app.test_client().get(path, headers=headers or {})
    kept = {k.lower(): v for k, v in response.headers.items() if k.lower() not in _PER_ANSWER}
    return response.status_code, kept, await response.get_data()


async def test_a_public_item_read_skips_quart_and_answers_the_same(
    apps: tuple[Quart, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, reached = apps
    editor = await editor_client(app)
    created = await (await editor.post("/books", json={"title": "Dune", "year": 1965})).get_json()
    path = f"/books/{created['_id']}"
    reached.clear()
    direct = [
        await _answer(app, path),
        await _answer(app, path, {"If-None-Match": f'"{created["_etag"]}"'}),
        await _answer(app, path, {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
    ]
    assert reached == []  # none of them built a Quart request
    # The same requests, with the direct path declining every one:

    async def decline(self: DirectReads, scope: Any, send: Any) -> bool:
        return False

    monkeypatch.setattr(DirectReads, "_answer", decline)
    full = [
        await _answer(app, path),
        await _answer(app, path, {"If-None-Match": f'"{created["_etag"]}"'}),
        await _answer(app, path, {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
    ]
    assert len(reached) == 3
    assert direct == full
    assert [status for status, _, _ in direct] == [200, 304, 304]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ('/books/{id}?projection={{"title":1}}', {}, 200),  # a query string
        ("/books/{id}", {"Authorization": "Bearer not-a-token"}, 401),  # credentials
        ("/books/0123456789abcdef01234567", {}, 404),  # no such book
        ("/books/not-an-id", {}, 404),  # not an id
        ("/authors/{id}", {"Origin": "https://elsewhere.example"}, 404),  # not an author
    ],
)
async def test_what_direct_reads_do_not_cover_takes_the_full_path(
    apps: tuple[Quart, list[str]], path: str, headers: dict[str, str], status: int
) -> None:
    app, reached = apps
    editor = await editor_client(app)
    created = await (await editor.post("/books", json={"title": "Dune"})).get_json()
    reached.clear()
    response = await app.test_client().get(path.format(id=created["_id"]), headers=headers)
    assert len(reached) == 1
    assert response.status_code == status


async def test_resources_with_a_cache_or_read_limits_are_read_in_full(
    settings_factory: SettingsFactory,
) -> None:
    resources = example_resources()
    resources["books"]["cache_ttl"] = 30
    resources["authors"]["rate_limits"] = {"read": "100/minute"}
    app = create_app(settings_factory(resources=resources))
    assert not [layer for layer in _stack(app) if isinstance(layer, DirectReads)]
    plain = create_app(settings_factory())
    [direct] = [layer for layer in _stack(plain) if isinstance(layer, DirectReads)]
    assert set(direct.services) == {"books", "authors"}


async def test_a_read_hook_sends_the_read_through_the_full_path(
    apps: tuple[Quart, list[str]],
) -> None:
    app, reached = apps
    seen: list[str] = []

    @shoal_hooks(app).on_fetched_item("books")
    async def fetched(item: dict[str, Any]) -> None:
        seen.append(item["title"])

    editor = await editor_client(app)
    created = await (await editor.post("/books", json={"title": "Dune"})).get_json()
    reached.clear()
    assert (await app.test_client().get(f"/books/{created['_id']}")).status_code == 200
    assert len(reached) == 1
    assert seen == ["Dune"]


def _stack(app: Quart) -> list[Any]:
    layers, layer = [], app.asgi_app
    while hasattr(layer, "app"):
        layers.append(layer)
        layer = layer.app
    return layers


async def test_an_authenticated_read_of_a_public_item_is_the_full_path(
    apps: tuple[Quart, list[str]],
) -> None:
    app, reached = apps
    editor = await editor_client(app)
    created = await (await editor.post("/books", json={"title": "Dune"})).get_json()
    reader = bearer(await token_for(app, "reader"))
    reached.clear()
    response = await app.test_client().get(f"/books/{created['_id']}", headers=reader)
    assert response.status_code == 200
    assert len(reached) == 1
