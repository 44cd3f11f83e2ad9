"""The hand-written peer (``peer.py``) on Quart::

    BENCH_PEER_MONGO_URI=mongodb://127.0.0.1:27017/bench \
        hypercorn --config hypercorn.toml benchmarks.apps.peer_quart:app
"""

from __future__ import annotations

from quart import Quart, Response, request

from .peer import Store

app = Quart(__name__)
store = Store()
app.before_serving(store.open)
app.after_serving(store.close)


def _answer(status: int, body: bytes, etag: str) -> Response:
    response = Response(body, status=status, content_type="application/json")
    if etag:
        response.headers["ETag"] = f'"{etag}"'
    return response


@app.get("/")
async def ready() -> Response:
    """What the harness polls until the app serves."""
    return _answer(200, b"{}", "")


@app.get("/items/<item_id>")
async def get_item(item_id: str) -> Response:
    return _answer(*await store.get(item_id, request.headers.get("If-None-Match")))


@app.post("/items")
async def create_item() -> Response:
    body: bytes = await request.get_data(as_text=False)  # type: ignore[assignment]
    return _answer(*await store.create(body))
