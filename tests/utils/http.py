"""Small helpers that make HTTP tests read as the scenario they check."""

from __future__ import annotations

from typing import Any

from quart.typing import TestClientProtocol as Client

JSON = {"Content-Type": "application/json"}


async def create(client: Client, resource: str, document: Any) -> dict[str, Any]:
    """POST one document and return the acknowledgement (asserting 201)."""
    response = await client.post(f"/{resource}", json=document)
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 201, body
    return body


async def fetch(client: Client, resource: str, item_id: str) -> dict[str, Any]:
    response = await client.get(f"/{resource}/{item_id}")
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, body
    return body


def if_match(etag: str) -> dict[str, str]:
    return {"If-Match": f'"{etag}"'}
