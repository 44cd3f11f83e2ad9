"""The Data API in tests: a config that serves some collections, API keys made
by the app's own accounts, and a client that speaks JSON or EJSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS, RELAXED_JSON_OPTIONS
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.auth import get_auth

SOURCE = "mongodb-atlas"
APP_ID = "data-abcde"
EJSON = "application/ejson"


def data_api_config(database: str, **collections: dict[str, Any]) -> dict[str, Any]:
    """``data_api`` serving ``collections`` of ``database`` under ``SOURCE``."""
    return {
        "enabled": True,
        "app_id": APP_ID,
        "data_sources": {SOURCE: {"databases": {database: {"collections": collections}}}},
    }


async def api_key(app: Quart, *roles: str, name: str = "key") -> str:
    """A real Shoal API key with ``roles``, stored by the app's accounts."""
    key, _ = await get_auth(app).accounts.create_api_key(name, list(roles))
    return key


@dataclass
class Reply:
    status: int
    content_type: str
    text: str
    headers: Any

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def ejson(self) -> Any:
        """The body read as Extended JSON (BSON values)."""
        return json_util.loads(self.text)


class DataApiClient:
    """Calls ``/action/<action>`` on one namespace, as a Data API client would."""

    def __init__(
        self,
        client: Client,
        database: str,
        collection: str,
        *,
        headers: dict[str, str] | None = None,
        base: str = "",
    ) -> None:
        self.client = client
        self.database = database
        self.collection = collection
        self.headers = headers or {}
        self.base = base

    def namespace(self, collection: str | None = None) -> dict[str, Any]:
        return {
            "dataSource": SOURCE,
            "database": self.database,
            "collection": collection or self.collection,
        }

    async def raw(
        self,
        action: str,
        body: bytes | str,
        *,
        headers: dict[str, str] | None = None,
        method: str = "POST",
    ) -> Reply:
        data = body.encode() if isinstance(body, str) else body
        client: Any = self.client  # the protocol's open() wants json=, which this sends none of
        response = await client.open(
            f"{self.base}/action/{action}",
            method=method,
            data=data,
            headers={**self.headers, **(headers or {})},
        )
        text = await response.get_data(as_text=True)
        return Reply(response.status_code, response.mimetype or "", text, response.headers)

    async def call(
        self,
        action: str,
        fields: dict[str, Any] | None = None,
        *,
        ejson: bool = False,
        canonical: bool = False,
        collection: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """POST an action; ``ejson``: send EJSON and ask for it back."""
        body = {**self.namespace(collection), **(fields or {})}
        if ejson:
            options = CANONICAL_JSON_OPTIONS if canonical else RELAXED_JSON_OPTIONS
            text = json_util.dumps(body, json_options=options)
            wire = {"Content-Type": EJSON, "Accept": EJSON}
        else:
            text = json_util.dumps(body, json_options=RELAXED_JSON_OPTIONS)
            wire = {"Content-Type": "application/json", "Accept": "application/json"}
        return await self.raw(action, text, headers={**wire, **(headers or {})})
