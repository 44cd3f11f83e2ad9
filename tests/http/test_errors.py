"""Every error leaves Shoal as JSON: `{"_status": "ERR", "_error": {"code", "message"}}`.

Tests go through the app's test client; a few add their own routes to an app
(as a developer extending Shoal would) to provoke errors Shoal must render.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart, request
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.errors import ApiError
from tests.conftest import SettingsFactory

SECRET_DETAIL = "db password is hunter2"
MAX_BODY = 1024


class TeapotError(ApiError):
    status = 418


@pytest.fixture
async def extended_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    """A Shoal app with a developer's own routes added, as create_app's docs show."""
    application = create_app(settings_factory(max_body_bytes=MAX_BODY))

    @application.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError(SECRET_DETAIL)

    @application.get("/teapot")
    async def teapot() -> dict[str, str]:
        raise TeapotError(
            "I am a teapot",
            issues={"spout": "missing", "handle": "cracked"},
            headers={"X-Pot": "earl-grey"},
        )

    @application.post("/echo")
    async def echo() -> dict[str, int]:
        body = await request.get_data()
        return {"received": len(body)}

    async with application.test_app():
        yield application


@pytest.fixture
def extended(extended_app: Quart) -> Client:
    return extended_app.test_client()


def _assert_error_shape(body: Any, status: int) -> dict[str, Any]:
    assert isinstance(body, dict)
    assert body["_status"] == "ERR"
    error = body["_error"]
    assert isinstance(error, dict)
    assert error["code"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


async def test_unknown_url_is_a_json_404(anonymous: Client) -> None:
    response = await anonymous.get("/no/such/thing")

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    body = await response.get_json()
    _assert_error_shape(body, 404)
    assert set(body) == {"_status", "_error"}
    assert set(body["_error"]) == {"code", "message"}


async def test_wrong_method_is_a_json_405_with_allow(anonymous: Client) -> None:
    response = await anonymous.delete("/healthz")

    assert response.status_code == 405
    assert response.mimetype == "application/json"
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert "GET" in allowed
    assert "DELETE" not in allowed
    _assert_error_shape(await response.get_json(), 405)


async def test_body_over_max_body_bytes_is_a_json_413(extended: Client) -> None:
    small = await extended.post("/echo", data=b"x" * MAX_BODY)
    assert small.status_code == 200
    assert await small.get_json() == {"received": MAX_BODY}

    response = await extended.post("/echo", data=b"x" * (MAX_BODY + 1))

    assert response.status_code == 413
    assert response.mimetype == "application/json"
    _assert_error_shape(await response.get_json(), 413)


async def test_unexpected_exception_is_a_500_with_the_request_id(
    extended: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await extended.get("/boom")

    assert response.status_code == 500
    assert response.mimetype == "application/json"
    text = await response.get_data(as_text=True)
    assert "Traceback" not in text
    assert SECRET_DETAIL not in text
    assert "RuntimeError" not in text
    error = _assert_error_shape(await response.get_json(), 500)
    request_id = response.headers["X-Request-ID"]
    assert request_id
    assert error["request_id"] == request_id

    logged = [record for record in caplog.records if record.exc_info is not None]
    assert logged, "the exception is logged"
    record = logged[0]
    assert record.levelno >= logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert SECRET_DETAIL in caplog.text
    assert "Traceback" in caplog.text
    assert "raise RuntimeError" in caplog.text


async def test_api_error_subclass_renders_status_message_headers_and_issues(
    extended: Client,
) -> None:
    response = await extended.get("/teapot")

    assert response.status_code == 418
    assert response.mimetype == "application/json"
    assert response.headers["X-Pot"] == "earl-grey"
    body = await response.get_json()
    error = _assert_error_shape(body, 418)
    assert error["message"] == "I am a teapot"
    assert body["_issues"] == {"spout": "missing", "handle": "cracked"}


async def test_api_error_without_issues_has_no_issues_key(
    settings_factory: SettingsFactory,
) -> None:
    application = create_app(settings_factory())

    @application.get("/gone")
    async def gone() -> dict[str, str]:
        raise ApiError("it left", status=410)

    async with application.test_app():
        response = await application.test_client().get("/gone")

    assert response.status_code == 410
    body = await response.get_json()
    assert body == {"_status": "ERR", "_error": {"code": 410, "message": "it left"}}
