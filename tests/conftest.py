"""Shared fixtures: real Redis, a MongoDB engine, apps and clients.

Tests that touch MongoDB (through ``mongodb_uri``, directly or through
``settings``, ``app``, ``client``...) run once per selected engine, named in
their id (``test_x[standin]``, ``test_x[documentdb]``); the others run once.
``--engines standin,documentdb`` or ``SHOAL_TEST_ENGINES`` selects the engines
(``standin``, ``ferretdb``, ``documentdb``, ``mongodb``); the default is the
stand-in, or a real MongoDB when ``SHOAL_TEST_MONGODB_URI`` is set
(``tests/utils/engines.py``). ``SHOAL_TEST_REDIS_URL`` points the suite at
another Redis.

A test of MongoDB behaviour an engine lacks is a strict expected failure on
that engine only, so an engine that gains the behaviour is noticed:

- ``@pytest.mark.real_mongodb(reason=...)``: the stand-in lacks it (pinned in
  ``tests/storage/test_standin_gaps.py``);
- ``@pytest.mark.engine_gap(ferretdb=NAME, documentdb=NAME)``: FerretDB or
  DocumentDB lacks it, NAME being one of that engine's gaps in
  ``tests/utils/gaps.py`` (pinned in ``tests/storage/test_ferretdb_gaps.py`` and
  ``tests/storage/test_documentdb_gaps.py``); a tuple of names when the test
  meets one gap after another (the first hides the next).

On a real MongoDB every test is an ordinary test.

A test whose outcome holds on some engines only (and on the others is neither
a pass nor a strict failure) says so with
``@pytest.mark.engines(<engine>, ..., reason=...)``: it is not run on the
others, and their ids are deselected.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import Settings
from tests.utils.auth import editor_client
from tests.utils.engines import (
    ENGINES,
    MONGODB_URI_VARIABLE,
    DatabaseServer,
    database_server,
    selected_engines,
    startable_engines,
)
from tests.utils.gaps import ENGINE_GAPS
from tests.utils.instances import two_served
from tests.utils.servers import RedisServer
from tests.utils.settings import make_settings

#: Fixtures kept in tests/utils for any test to use: ``redis_cluster_url``.
pytest_plugins = ["tests.utils.cluster"]


ENGINES_KEY = pytest.StashKey[list[str]]()

#: A fixture that starts a database of the test's engine for that test alone.
OWN_DATABASE = "own_database"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engines",
        default=None,
        metavar="NAMES",
        help="MongoDB engines for the tests that touch the database, comma-separated: "
        "standin, ferretdb, documentdb, mongodb (needs SHOAL_TEST_MONGODB_URI). Default: "
        "SHOAL_TEST_ENGINES, else mongodb when SHOAL_TEST_MONGODB_URI is set, else standin.",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[ENGINES_KEY] = selected_engines(config.getoption("--engines"), os.environ)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    config.pluginmanager.register(EngineOrder(), "shoal-engine-order")
    # A suite started in the background by a shell without job control (``cmd
    # &`` in a script) inherits SIGINT ignored, and so would every process it
    # starts: the tests that press Ctrl-C need it to reach them.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: An engine's name as a test's id shows it: ``[standin]``, ``[documentdb-redis-flap]``.
ENGINE_IN_ID = re.compile(r"[\[-](" + "|".join(ENGINES) + r")(?=[\]-])")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n`` (pytest-xdist, decision 0029), each module's tests on one
    engine go to one process, in their order, as they run in one process: a
    module's fixtures and the state its tests build up in order (a module's
    Data API examples replayed one after the other) stay whole. The groups are
    handed out in the suite's order (``EngineOrder``), not largest first as
    xdist would: an engine still being built is needed last."""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    config.option.loadscopereorder = False

    class ModuleAndEngine(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            found = ENGINE_IN_ID.search(nodeid)
            return f"{module}@{found.group(1) if found else ''}"

    return ModuleAndEngine(config, log)


class EngineOrder:
    """Runs the tests that touch no database first, then each engine's tests in
    the order the engines were selected: an engine that ``scripts/test`` is
    still building in the background gets the most time to finish. Within each
    group the order is pytest's own (its fixture grouping is kept)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        engines: list[str] = config.stash[ENGINES_KEY]

        def rank(item: pytest.Item) -> int:
            engine = _engine_of(item)
            return 0 if engine is None else 1 + engines.index(engine)

        items.sort(key=rank)


def pytest_report_header(config: pytest.Config) -> str:
    engines: list[str] = config.stash[ENGINES_KEY]
    return f"MongoDB engines: {', '.join(engines)}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" not in metafunc.fixturenames:
        return
    engines = metafunc.config.stash[ENGINES_KEY]
    if OWN_DATABASE in metafunc.fixturenames:
        engines = startable_engines(engines)
    metafunc.parametrize("engine", engines, indirect=True, scope="session")


def _engine_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    engine = callspec.params.get("engine") if callspec is not None else None
    return engine if isinstance(engine, str) else None


def _gap_reason(item: pytest.Item, engine: str | None) -> str | None:
    """Why ``item`` is expected to fail on ``engine``, if it is; checks every
    ``engine_gap`` mark names a known engine and gap."""
    reason = None
    for marker in item.iter_markers("engine_gap"):
        if marker.args or not marker.kwargs:
            raise pytest.UsageError(f"{item.nodeid}: use engine_gap(<engine>=<gap name>)")
        for gap_engine, value in marker.kwargs.items():
            names = [value] if isinstance(value, str) else list(value)
            gaps = ENGINE_GAPS.get(gap_engine, {})
            unknown = [name for name in names if name not in gaps]
            if unknown or not names:
                raise pytest.UsageError(
                    f"{item.nodeid}: engine_gap({gap_engine}={value!r}) names no gap in "
                    "tests/utils/gaps.py"
                )
            if gap_engine == engine:
                reason = f"{engine} lacks it: " + "; then ".join(
                    f"{name}: {gaps[name]}" for name in names
                )
    if engine == "standin":
        standin_mark = item.get_closest_marker("real_mongodb")
        if standin_mark is not None:
            why = standin_mark.kwargs.get("reason") or (
                standin_mark.args[0] if standin_mark.args else ""
            )
            reason = f"needs a real MongoDB (the stand-in lacks it): {why}"
    return reason


def _runs_on(item: pytest.Item, engine: str | None) -> bool:
    """Whether ``item`` runs on ``engine``: every engine, unless an ``engines``
    mark names the only ones its outcome holds on."""
    marker = item.get_closest_marker("engines")
    if marker is None:
        return True
    unknown = [name for name in marker.args if name not in ENGINES]
    if not marker.args or unknown or not marker.kwargs.get("reason"):
        raise pytest.UsageError(f"{item.nodeid}: use engines(<engine>, ..., reason=...)")
    if engine is None:
        raise pytest.UsageError(f"{item.nodeid} is marked engines(...) but touches no database")
    return engine in marker.args


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        engine = _engine_of(item)
        if not _runs_on(item, engine):
            deselected.append(item)
            continue
        kept.append(item)
        marked = item.get_closest_marker("real_mongodb") or item.get_closest_marker("engine_gap")
        if engine is None and marked is not None:
            raise pytest.UsageError(
                f"{item.nodeid} is marked as an engine's gap but touches no database "
                "(use the mongodb_uri fixture, or own_database for a server of its own)"
            )
        reason = _gap_reason(item, engine)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> str:
    """The MongoDB engine this test runs on: standin, ferretdb, documentdb or mongodb."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def mongodb_uri(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's MongoDB on this test's engine."""
    if engine == "mongodb":
        yield os.environ[MONGODB_URI_VARIABLE]
        return
    with database_server(engine, tmp_path_factory.mktemp(engine)) as server:
        yield server.uri


@pytest.fixture
def own_database(engine: str, tmp_path: Path) -> Iterator[DatabaseServer]:
    """A running database of this test's engine for this test alone, which it
    may kill and start again (with only a real MongoDB selected: the stand-in)."""
    server = database_server(engine, tmp_path / f"own-{engine}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis for this test alone, which it may stop, flush, or cut clients of."""
    server = RedisServer(tmp_path / "own-redis").start()
    try:
        yield server
    finally:
        server.stop()


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
    """A served app (before_serving has run) on real Redis and this test's engine."""
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
