"""The app's JSON provider: MongoDB's types in Eve's format, on the wire."""

from __future__ import annotations

import dataclasses
import decimal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from pydantic import BaseModel
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from tests.conftest import SettingsFactory

OID = ObjectId("6743a2f0c1d2e3f4a5b6c7d8")


class Price(BaseModel):
    amount: int
    currency: str


@dataclasses.dataclass
class Shelf:
    row: int
    label: str


@pytest.fixture
async def encoding_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    application = create_app(settings_factory())

    @application.get("/values")
    async def values() -> dict[str, Any]:
        return {
            "oid": OID,
            "aware": datetime(2026, 11, 24, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            "utc": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
            "naive": datetime(2026, 11, 24, 10, 0),
            "decimal128": Decimal128("1.10"),
            "decimal": decimal.Decimal("19.990"),
            "big_decimal": decimal.Decimal("12345678901234567890.123456789"),
            "nested": {"ids": [OID], "when": [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)]},
            "tags": {"a"},
        }

    @application.get("/model-inside")
    async def model_inside() -> dict[str, Any]:
        return {"price": Price(amount=3, currency="EUR"), "shelf": Shelf(row=2, label="B")}

    @application.get("/model")
    async def model() -> Any:  # a model, which quart-schema turns into JSON
        return Price(amount=7, currency="USD")

    async with application.test_app():
        yield application


@pytest.fixture
def encoding_client(encoding_app: Quart) -> Client:
    return encoding_app.test_client()


async def test_mongodb_types_render_as_eve_does(encoding_client: Client) -> None:
    response = await encoding_client.get("/values")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = await response.get_json()
    assert body["oid"] == "6743a2f0c1d2e3f4a5b6c7d8"
    assert body["aware"] == "Tue, 24 Nov 2026 10:00:00 GMT"
    assert body["utc"] == "Tue, 24 Nov 2026 10:00:00 GMT"
    assert body["naive"] == "Tue, 24 Nov 2026 10:00:00 GMT", "a naive datetime is UTC"
    assert body["decimal128"] == "1.10"
    assert body["decimal"] == "19.990"
    assert body["big_decimal"] == "12345678901234567890.123456789"
    assert body["nested"] == {
        "ids": ["6743a2f0c1d2e3f4a5b6c7d8"],
        "when": ["Fri, 02 Jan 2026 03:04:05 GMT"],
    }
    assert body["tags"] == ["a"]


async def test_raw_body_keeps_decimal_strings_exact(encoding_client: Client) -> None:
    raw = await (await encoding_client.get("/values")).get_data(as_text=True)

    assert '"decimal128":"1.10"' in raw
    assert "1.1," not in raw


async def test_models_inside_a_response_fall_back_to_quart_schema(
    encoding_client: Client,
) -> None:
    response = await encoding_client.get("/model-inside")

    assert response.status_code == 200
    assert await response.get_json() == {
        "price": {"amount": 3, "currency": "EUR"},
        "shelf": {"row": 2, "label": "B"},
    }


async def test_a_model_returned_from_a_route_is_json(encoding_client: Client) -> None:
    response = await encoding_client.get("/model")

    assert response.status_code == 200
    assert await response.get_json() == {"amount": 7, "currency": "USD"}


async def test_request_bodies_are_parsed_by_the_provider(encoding_app: Quart) -> None:
    provider = encoding_app.json
    assert provider.loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert provider.loads(provider.dumps({"oid": OID})) == {"oid": str(OID)}


async def test_an_unserializable_value_is_a_json_500(settings_factory: SettingsFactory) -> None:
    application = create_app(settings_factory())

    @application.get("/odd")
    async def odd() -> dict[str, Any]:
        return {"value": object()}

    async with application.test_app():
        response = await application.test_client().get("/odd")

    assert response.status_code == 500
    body = await response.get_json()
    assert body["_status"] == "ERR"
    assert body["_error"]["code"] == 500
