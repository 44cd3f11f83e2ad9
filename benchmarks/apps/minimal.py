"""The stack's ceiling: the smallest Quart app that answers a small JSON object.

Served by hypercorn with Shoal's ``hypercorn.toml`` (same worker class, backlog
and keep-alive), so the difference to Shoal is Shoal's own work per request::

    hypercorn --config hypercorn.toml benchmarks.apps.minimal:app
"""

from __future__ import annotations

from quart import Quart

app = Quart(__name__)


@app.get("/")
async def hello() -> dict[str, object]:
    return {"_status": "OK", "hello": "world", "n": 1}
