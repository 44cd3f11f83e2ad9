"""X-Shoal-Instance, over HTTP: which instance answered, when it is turned on."""

from __future__ import annotations

import socket

import pytest
from quart import Quart
from werkzeug.datastructures import Headers

from shoal.app import create_app
from shoal.config import ConfigError, load_settings
from tests.conftest import SettingsFactory
from tests.utils.settings import make_settings


async def _answer_headers(app: Quart, path: str) -> Headers:
    async with app.test_app():
        response = await app.test_client().get(path)
    return response.headers


async def test_on_in_development_naming_the_host(settings_factory: SettingsFactory) -> None:
    app = create_app(settings_factory(environment="development"))
    headers = await _answer_headers(app, "/healthz")
    assert headers["X-Shoal-Instance"] == socket.gethostname()


async def test_off_by_default_outside_development(settings_factory: SettingsFactory) -> None:
    for environment in ("test", "production"):
        app = create_app(settings_factory(environment=environment))
        assert "X-Shoal-Instance" not in await _answer_headers(app, "/healthz")


async def test_the_configured_name_on_every_answer_errors_included(
    settings_factory: SettingsFactory,
) -> None:
    app = create_app(settings_factory(instance={"name": "api-2", "header": True}))
    for path in ("/healthz", "/books", "/nowhere", "/books/not-an-id"):
        headers = await _answer_headers(app, path)
        assert headers["X-Shoal-Instance"] == "api-2", path


async def test_off_when_configured_off_even_in_development(
    settings_factory: SettingsFactory,
) -> None:
    app = create_app(settings_factory(environment="development", instance={"header": False}))
    assert "X-Shoal-Instance" not in await _answer_headers(app, "/healthz")


def test_the_name_comes_from_shoal_instance_name(mongodb_uri: str) -> None:
    settings = load_settings({"environment": "development"}, env={"SHOAL_INSTANCE_NAME": "web-7"})
    assert settings.instance_name == "web-7"
    assert make_settings(mongodb_uri, None).instance_name == socket.gethostname()


@pytest.mark.parametrize("name", ["", "has space", "a\r\nSet-Cookie: x", "-leading", "x" * 129])
def test_a_name_that_is_no_header_value_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"instance\.name"):
        load_settings({"environment": "development", "instance": {"name": name}}, env={})
