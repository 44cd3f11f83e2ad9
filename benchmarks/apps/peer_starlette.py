"""The hand-written peer (``peer.py``) on Starlette::

    BENCH_PEER_MONGO_URI=mongodb://127.0.0.1:27017/bench \
        hypercorn --config hypercorn.toml benchmarks.apps.peer_starlette:app
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .peer import Store

store = Store()


def _answer(status: int, body: bytes, etag: str) -> Response:
    headers = {"ETag": f'"{etag}"'} if etag else {}
    media = "application/json" if body else None
    return Response(body, status_code=status, headers=headers, media_type=media)


async def ready(_: Request) -> Response:
    """What the harness polls until the app serves."""
    return Response(b"{}", media_type="application/json")


async def get_item(request: Request) -> Response:
    answer = await store.get(request.path_params["item_id"], request.headers.get("if-none-match"))
    return _answer(*answer)


async def create_item(request: Request) -> Response:
    return _answer(*await store.create(await request.body()))


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    await store.open()
    yield
    await store.close()


app = Starlette(
    routes=[
        Route("/", ready, methods=["GET"]),
        Route("/items", create_item, methods=["POST"]),
        Route("/items/{item_id}", get_item, methods=["GET"]),
    ],
    lifespan=lifespan,
)
