"""What a team writes instead of adopting Shoal: the item GET and POST of
``benchmarks/shoal.yaml``'s ``items``, by hand, on PyMongo's async client.

The same work per request as Shoal's for these two routes, and nothing more:
the JSON Schema checked by jsonschema-rs, ``_created``, ``_updated`` and an
``_etag`` stamped on insert, dates written as RFC 1123 and ``_id`` as its hex
string with orjson, an ``ETag`` header and ``If-None-Match`` (304) on reads, a
404 for an id that names nothing (and ``GET /`` for the harness to poll). No
auth, limits, cache, hooks or links.
``peer_starlette.py`` and ``peer_quart.py`` serve it with each framework::

    BENCH_PEER_MONGO_URI=mongodb://127.0.0.1:27017/bench \
        hypercorn --config hypercorn.toml benchmarks.apps.peer_starlette:app
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import yaml
from bson import ObjectId
from pymongo import AsyncMongoClient

CONFIG = Path(__file__).resolve().parents[1] / "shoal.yaml"
SCHEMA: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["resources"]["items"][
    "schema"
]
VALIDATOR = jsonschema_rs.validator_for({**SCHEMA, "additionalProperties": False})


def _default(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return format_datetime(value.astimezone(UTC), usegmt=True)
    raise TypeError(type(value).__name__)


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def etag_of(content: dict[str, Any]) -> str:
    encoded = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha1(encoded, usedforsecurity=False).hexdigest()


class Store:
    """One client per worker, opened at start-up."""

    def __init__(self) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] | None = None

    async def open(self) -> None:
        uri = os.environ["BENCH_PEER_MONGO_URI"]
        self.client = AsyncMongoClient(uri)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    @property
    def items(self) -> Any:
        assert self.client is not None
        return self.client.get_default_database()["items"]

    async def get(self, item_id: str, if_none_match: str | None) -> tuple[int, bytes, str]:
        """(status, body, etag) of an item read."""
        if not ObjectId.is_valid(item_id):
            return 404, b'{"error":"not found"}', ""
        document = await self.items.find_one({"_id": ObjectId(item_id)})
        if document is None:
            return 404, b'{"error":"not found"}', ""
        etag = document.get("_etag", "")
        if if_none_match is not None and if_none_match.strip('"') == etag:
            return 304, b"", etag
        return 200, dumps(document), etag

    async def create(self, body: bytes) -> tuple[int, bytes, str]:
        """(status, body, etag) of an insert."""
        try:
            content = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, b'{"error":"not JSON"}', ""
        if not isinstance(content, dict) or not VALIDATOR.is_valid(content):
            return 422, b'{"error":"invalid"}', ""
        moment = datetime.now(UTC).replace(microsecond=0)
        etag = etag_of(content)
        document = {**content, "_created": moment, "_updated": moment, "_etag": etag}
        result = await self.items.insert_one(document)
        answer = {
            "_id": result.inserted_id,
            "_created": moment,
            "_updated": moment,
            "_etag": etag,
            "_status": "OK",
        }
        return 201, dumps(answer), etag
