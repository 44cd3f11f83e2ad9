"""The lean path: resources' reads and writes, anonymous or not, answered by
the policies and views without Quart, exactly as the full path answers them;
and whatever needs Quart's request (a developer's request hook, an event hook
that takes Eve's request, a CORS request, an event stream) taking the full path."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart, Response

from shoal import shoal_hooks
from shoal.app import create_app
from shoal.resources import get_resources
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, editor_client, token_for
from tests.utils.settings import example_resources

#: Headers that differ between any two answers.
_PER_ANSWER = {"x-request-id", "date"}
_ID = re.compile(rb"[0-9a-f]{24}")
_ETAG = re.compile(rb"[0-9a-f]{40}")
_DATE = re.compile(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT")


class Counted:
    """An app, and how many requests reached Quart (the full path)."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.full = 0
        handle = app.handle_request

        async def counted(request: Any) -> Any:
            self.full += 1
            return await handle(request)

        app.handle_request = counted  # type: ignore[method-assign]


@pytest.fixture
async def counted(settings_factory: SettingsFactory) -> AsyncIterator[Counted]:
    resources = example_resources()
    resources["books"]["atomic_updates"] = True
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        yield Counted(app)


def _normal(text: bytes) -> bytes:
    """An answer with what differs between two runs (ids, ETags, dates) masked."""
    return _DATE.sub(b"<date>", _ID.sub(b"<id>", _ETAG.sub(b"<etag>", text)))


async def _scenario(app: Quart) -> list[tuple[int, dict[str, str], bytes]]:
    """Reads and writes of every kind, anonymous and signed in, errors too."""
    editor = await editor_client(app)
    anonymous = app.test_client()
    answers: list[Response] = []
    created = await editor.post("/books", json={"title": "Dune", "year": 1965})
    answers.append(created)
    book = await created.get_json()
    path, etag = f"/books/{book['_id']}", book["_etag"]
    answers += [
        await anonymous.get(path),
        await anonymous.head(path),
        await anonymous.get(path, headers={"If-None-Match": f'"{etag}"'}),
        await anonymous.get("/books?sort=-year&max_results=5"),
        await editor.get(path),  # a public read by a signed-in caller
        await anonymous.get("/books/0123456789abcdef01234567"),  # 404
        await anonymous.get("/books/not-an-id"),  # 404
        await anonymous.get('/books?where={"$where": "1"}'),  # 400
        await anonymous.post("/books", json={"title": "x"}),  # 401
        await editor.post("/books", json={"year": "not a year"}),  # 422
        await editor.patch(path, json={"year": 1966}),  # 428
        await editor.patch(path, json={"year": 1966}, headers={"If-Match": '"stale"'}),  # 412
    ]
    patched = await editor.patch(path, json={"year": 1966}, headers={"If-Match": f'"{etag}"'})
    answers.append(patched)
    etag = (await patched.get_json())["_etag"]
    answers.append(
        await editor.patch(
            path,
            data='{"$inc": {"year": 1}}',
            headers={"Content-Type": "application/vnd.shoal.update+json"},
        )
    )
    etag = (await answers[-1].get_json())["_etag"]
    replaced = await editor.put(
        path,
        json={"title": "Dune", "year": 1965},
        headers={"If-Match": f'"{etag}"', "Prefer": "return=representation"},
    )
    answers.append(replaced)
    etag = (await replaced.get_json())["_etag"]
    answers.append(await editor.delete(path, headers={"If-Match": f'"{etag}"'}))
    answers.append(await anonymous.get(path))  # 404 now
    normal = []
    for response in answers:
        headers = {
            name.lower(): _normal(str(value).encode()).decode()
            for name, value in response.headers.items()
            if name.lower() not in _PER_ANSWER
        }
        body = await response.get_data(as_text=False)
        normal.append((response.status_code, headers, _normal(body)))
    return normal


async def test_reads_and_writes_take_the_lean_path_and_answer_as_the_full_path(
    settings_factory: SettingsFactory,
) -> None:
    resources = example_resources()
    resources["books"]["atomic_updates"] = True
    lean_app = create_app(settings_factory(resources=resources))
    full_app = create_app(settings_factory(resources=resources))

    @full_app.before_request
    async def nothing() -> None:
        """A developer's request hook: every request takes the full path."""

    async with lean_app.test_app(), full_app.test_app():
        lean, full = Counted(lean_app), Counted(full_app)
        lean_answers = await _scenario(lean_app)
        full_answers = await _scenario(full_app)
    assert lean.full == 0  # none built a Quart request
    assert full.full == len(full_answers)  # every one did
    assert [status for status, _, _ in lean_answers] == [
        201, 200, 200, 304, 200, 200, 404, 404, 400, 401, 422, 428, 412, 200, 200, 200, 204, 404,
    ]  # fmt: skip
    for index, (lean_answer, full_answer) in enumerate(
        zip(lean_answers, full_answers, strict=True)
    ):
        assert lean_answer == full_answer, index


async def test_a_developers_request_hook_runs_on_a_public_item_read(counted: Counted) -> None:
    app = counted.app
    editor = await editor_client(app)
    book = await (await editor.post("/books", json={"title": "Dune"})).get_json()

    @app.before_request
    async def closed() -> Response:
        return Response('{"closed": true}', status=503, content_type="application/json")

    response = await app.test_client().get(f"/books/{book['_id']}")
    assert response.status_code == 503
    assert await response.get_json() == {"closed": True}


async def test_an_event_hook_that_takes_eves_request_takes_the_full_path(
    counted: Counted,
) -> None:
    app = counted.app
    seen: list[str] = []

    @shoal_hooks(app).on_pre_GET("books")
    async def pre(request: Any, lookup: dict[str, Any]) -> None:
        seen.append(request.path)

    @shoal_hooks(app).on_fetched_item("books")
    async def fetched(item: dict[str, Any]) -> None:
        seen.append(item["title"])

    editor = await editor_client(app)
    book = await (await editor.post("/books", json={"title": "Dune"})).get_json()
    counted.full = 0
    assert (await app.test_client().get(f"/books/{book['_id']}")).status_code == 200
    assert counted.full == 1
    assert seen == [f"/books/{book['_id']}", "Dune"]
    # Authors have no such hook: their reads stay lean.
    assert (await app.test_client().get("/authors")).status_code == 200
    assert counted.full == 1


async def test_cors_requests_and_streams_take_the_full_path(
    settings_factory: SettingsFactory,
) -> None:
    resources = example_resources()
    resources["books"]["streams"] = True
    app = create_app(
        settings_factory(resources=resources, cors={"allow_origins": ["https://app.example"]})
    )
    async with app.test_app():
        counted = Counted(app)
        client = app.test_client()
        plain = await client.get("/books")
        assert counted.full == 0
        assert "Access-Control-Allow-Origin" not in plain.headers
        cross = await client.get("/books", headers={"Origin": "https://app.example"})
        assert counted.full == 1
        assert cross.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert (await client.get("/books", query_string={"where": "{"})).status_code == 400
        assert counted.full == 1


async def test_a_method_a_route_does_not_serve_is_quarts_405(counted: Counted) -> None:
    response = await counted.app.test_client().put("/books", json={})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert counted.full == 1


async def test_an_unexpected_error_on_the_lean_path_is_a_json_500_with_the_request_id(
    counted: Counted, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = counted.app
    service = get_resources(app).services["books"]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the storage broke")

    monkeypatch.setattr(service, "find", broken)
    response = await app.test_client().get("/books")
    assert counted.full == 0
    assert response.status_code == 500
    body = await response.get_json()
    assert body["_error"]["request_id"] == response.headers["X-Request-ID"]
    assert "the storage broke" not in await response.get_data(as_text=True)
    assert "the storage broke" in caplog.text


async def test_an_authenticated_write_and_an_api_key_read_stay_lean(counted: Counted) -> None:
    app = counted.app
    reader = client_with(app, bearer(await token_for(app, "reader")))
    editor = await editor_client(app)
    created = await editor.post("/books", json={"title": "Dune"})
    assert created.status_code == 201
    assert (await reader.get("/books")).status_code == 200
    assert counted.full == 0
