"""Shared fixtures: real Redis, the MongoDB stand-in, apps and clients.

``SHOAL_TEST_MONGODB_URI`` runs the suite against a real MongoDB (tests marked
``real_mongodb`` run there as ordinary tests; on the stand-in they are expected
to fail, strictly, so a stand-in that gains the feature is noticed).
``SHOAL_TEST_REDIS_URL`` points the suite at another Redis.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import Settings
from tests.utils.auth import editor_client
from tests.utils.instances import two_served
from tests.utils.servers import EmbeddedStore, RedisServer
from tests.utils.settings import make_settings

REAL_MONGODB_URI = os.environ.get("SHOAL_TEST_MONGODB_URI")

#: Fixtures kept in tests/utils for any test to use: ``redis_cluster_url``.
pytest_plugins = ["tests.utils.cluster"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REAL_MONGODB_URI:
        return
    for item in items:
        marker = item.get_closest_marker("real_mongodb")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(
                pytest.mark.xfail(
                    strict=True, reason=f"needs a real MongoDB (the stand-in lacks it): {reason}"
                )
            )


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB for the session: a real one if configured, else the stand-in."""
    if REAL_MONGODB_URI:
        yield REAL_MONGODB_URI
        return
    with EmbeddedStore(tmp_path_factory.mktemp("mongodb")) as store:
        yield store.uri


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("SHOAL_TEST_REDIS_URL"):
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_factory(mongodb_uri: str, redis_url: str) -> SettingsFactory:
    """Build test settings; keyword arguments override top-level config keys."""

    def build(**overrides: Any) -> Settings:
        overrides.setdefault("redis", {"url": redis_url})
        return make_settings(mongodb_uri, redis_url, **overrides)

    return build


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Quart]:
    """A served app (before_serving has run) on real Redis and the stand-in."""
    application = create_app(settings)
    async with application.test_app():
        yield application


@pytest.fixture
async def two_instances(settings: Settings) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two apps ('instances') on one database and one Redis."""
    async with two_served(settings) as apps:
        yield apps


@pytest.fixture
async def client(app: Quart) -> Client:
    """A client authenticated as an editor, the example config's writing role."""
    return await editor_client(app)


@pytest.fixture
def anonymous(app: Quart) -> Client:
    """A client with no credentials."""
    return app.test_client()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
