"""Media fields against Eve 2.3.1: the same Eve settings served by Eve and by
Shoal (``shoal from-eve``'s translation), the same files uploaded to both as
``multipart/form-data``, and what an Eve client sees compared step by step:
statuses, envelopes, and the bytes read back (inline, in base64, Eve's default).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.cli.eve import translate
from tests.api.test_media import form
from tests.conftest import SettingsFactory
from tests.utils.compat import Recording, Reply, differences, eve_app

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(4_000)

EVE_SETTINGS: dict[str, Any] = {
    "DOMAIN": {
        "photos": {
            "schema": {
                "title": {"type": "string", "required": True},
                "image": {"type": "media"},
            },
            "resource_methods": ["GET", "POST"],
            "item_methods": ["GET"],
        }
    },
    "RESOURCE_METHODS": ["GET", "POST"],
    "ITEM_METHODS": ["GET"],
}
Files = dict[str, tuple[str, str, bytes]]


@pytest.fixture
def eve(mongodb_uri: str) -> Iterator[Flask]:
    with eve_app(mongodb_uri, EVE_SETTINGS) as app:
        yield app


@pytest.fixture
async def shoal(settings_factory: SettingsFactory) -> AsyncIterator[Client]:
    """Shoal serving the translation (every method public: the Eve app has no
    auth class)."""
    resources = translate(EVE_SETTINGS).config["resources"]
    for resource in resources.values():
        resource["public_methods"] = resource["resource_methods"]
        resource["public_item_methods"] = resource["item_methods"]
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        yield app.test_client()


def _eve_post(client: FlaskClient, fields: dict[str, str], files: Files) -> Reply:
    data: dict[str, Any] = dict(fields)
    for name, (filename, content_type, content) in files.items():
        data[name] = (io.BytesIO(content), filename, content_type)
    response = client.post("/photos", data=data, content_type="multipart/form-data")
    return Reply(response.status_code, _lower(response.headers.items()), response.get_json())


def _eve_get(client: FlaskClient, path: str) -> Reply:
    response = client.get(path)
    return Reply(response.status_code, _lower(response.headers.items()), response.get_json())


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


async def _shoal_post(client: Client, fields: dict[str, str], files: Files) -> Reply:
    response = await client.post("/photos", **form(fields=fields, files=files))
    return Reply(response.status_code, _lower(response.headers.items()), await response.get_json())


async def _shoal_get(client: Client, path: str) -> Reply:
    response = await client.get(path)
    return Reply(response.status_code, _lower(response.headers.items()), await response.get_json())


def _bytes_of(body: Any) -> bytes | None:
    image = body.get("image") if isinstance(body, dict) else None
    return base64.b64decode(image) if isinstance(image, str) else None


async def test_uploads_and_reads_answer_as_eve(eve: Flask, shoal: Client) -> None:
    eve_client = eve.test_client()
    seen = {"Eve": Recording("Eve"), "Shoal": Recording("Shoal")}
    read_back: dict[str, list[bytes | None]] = {"Eve": [], "Shoal": []}

    async def post(server: str, fields: dict[str, str], files: Files) -> Reply:
        if server == "Eve":
            return await asyncio.to_thread(_eve_post, eve_client, fields, files)
        return await _shoal_post(shoal, fields, files)

    async def get(server: str, path: str) -> Reply:
        if server == "Eve":
            return await asyncio.to_thread(_eve_get, eve_client, path)
        return await _shoal_get(shoal, path)

    for server, recording in seen.items():
        step = recording.record
        created = step(
            "upload a photo",
            await post(server, {"title": "dunes"}, {"image": ("d.png", "image/png", PNG)}),
            headers=("Location",),
        )
        item = step("read it", await get(server, f"/photos/{created.body['_id']}"))
        read_back[server].append(_bytes_of(item.body))
        step(
            "upload another",
            await post(server, {"title": "sea"}, {"image": ("s.jpg", "image/jpeg", JPEG)}),
        )
        listed = step("list them", await get(server, "/photos"))
        read_back[server] += [_bytes_of(entry) for entry in listed.body["_items"]]
        step(
            "upload without the required title",
            await post(server, {}, {"image": ("x.png", "image/png", PNG)}),
        )

    assert seen["Eve"].statuses() == [
        ("upload a photo", 201),
        ("read it", 200),
        ("upload another", 201),
        ("list them", 200),
        ("upload without the required title", 422),
    ], "Eve itself answered the scenario unexpectedly"
    assert read_back["Eve"] == read_back["Shoal"] == [PNG, PNG, JPEG]
    diff = differences(seen["Eve"], seen["Shoal"])
    assert not diff, "an Eve client sees Shoal answer differently from Eve:\n" + "\n".join(diff)
