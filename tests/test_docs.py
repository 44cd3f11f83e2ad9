"""The tutorial and the how-to guides, run as a reader runs them
(``tests.utils.doctour``): each page's marked commands, in a copy of the
checkout, print what the page says they print.

The copy holds what the pages use: the examples, ``scripts/serve-example``
(with a ``scripts/bootstrap`` that installs nothing: the test's environment is
installed already), ``hypercorn.toml`` listening on a free port, and
``.venv/bin`` with the installed ``shoal`` and ``hypercorn``. Where a page has
the reader use their own MongoDB and Redis (``mongodb://localhost:27017/``,
``redis://localhost:6379/0``), the run uses a database and a Redis of the
test's own.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.system import free_port
from tests.utils.doctour import ADDRESS, Step, Tour, check, steps_of
from tests.utils.doctour import run as run_tour
from tests.utils.engines import DatabaseServer
from tests.utils.processes import ServeProcess, run_shoal, shoal_command
from tests.utils.servers import RedisServer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DATA_API_ACTIONS = [
    "insertOne", "insertMany", "findOne", "find", "updateOne", "updateMany",
    "replaceOne", "deleteOne", "deleteMany", "aggregate",
]  # fmt: skip


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory that looks like the checkout to a reader of the docs."""
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "examples", root / "examples")
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "serve-example", root / "scripts")
    bootstrap = root / "scripts" / "bootstrap"
    bootstrap.write_text("#!/usr/bin/env bash\n# The test's environment is installed.\n")
    bootstrap.chmod(0o755)
    (root / ".venv" / "bin").mkdir(parents=True)
    for name in ("shoal", "hypercorn"):
        (root / ".venv" / "bin" / name).symlink_to(Path(shoal_command()).with_name(name))
    (root / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "scratch").mkdir()
    return root


def _listen_on(root: Path) -> str:
    """A free loopback address, in the copy's hypercorn.toml too."""
    address = f"127.0.0.1:{free_port()}"
    toml = (ROOT / "hypercorn.toml").read_text(encoding="utf-8")
    assert f'bind = ["{ADDRESS}"]' in toml
    (root / "hypercorn.toml").write_text(toml.replace(ADDRESS, address), encoding="utf-8")
    return address


def _run_page(tour: Tour, root: Path) -> None:
    """Run the page and report every step that did not print what it says."""
    outputs = run_tour(tour, root, root.parent / "scratch")
    wrong = []
    for step, printed in zip(tour.steps, outputs, strict=True):
        try:
            check(step, printed)
        except AssertionError as error:
            wrong.append(str(error))
    assert not wrong, "\n\n---\n".join(wrong)


def test_the_tutorial_prints_what_it_says(
    checkout: Path, own_database: DatabaseServer, tmp_path: Path
) -> None:
    """docs/tutorials/getting-started.md, from `scripts/serve-example` to an app
    of one's own on "a real MongoDB and Redis" (the test's database and Redis)."""
    steps = steps_of((DOCS / "tutorials" / "getting-started.md").read_text(encoding="utf-8"))
    assert len(steps) >= 40, "the tutorial's blocks were not found"
    assert sum(step.block is not None for step in steps) >= 25
    redis = RedisServer(tmp_path / "redis").start()
    try:
        tour = Tour(
            steps,
            address=_listen_on(checkout),
            replacements={
                "mongodb://localhost:27017/": own_database.uri,
                "redis://localhost:6379/0": redis.url,
            },
            passwords={"editor1": "editor-pass-1", "viewer": "reader-pass-1", "me": "my-todo-pass"},
        )
        _run_page(tour, checkout)
    finally:
        redis.stop()


def test_the_data_api_how_to_prints_what_it_says(checkout: Path) -> None:
    """docs/how-to/migrate-from-atlas-data-api.md: its config, as written, serves
    every action's example, in order."""
    page = (DOCS / "how-to" / "migrate-from-atlas-data-api.md").read_text(encoding="utf-8")
    steps = steps_of(page)
    assert [step.file[0] for step in steps if step.file] == ["atlas/shoal.yaml"]
    actions = re.findall(r"\$BASE/action/(\w+)", "\n".join(step.text for step in steps))
    assert sorted(actions) == sorted(DATA_API_ACTIONS), "an action without a run example"
    assert all(step.promised for step in steps if "/action/" in step.text)
    _run_page(Tour(steps, address=_listen_on(checkout)), checkout)


async def test_the_how_tos_data_api_block_on_the_tutorials_config_is_refused_as_it_says(
    mongodb_uri: str, tmp_path: Path
) -> None:
    """What the how-to says of its `data_api` block added to the tutorial's
    `todo/shoal.yaml`: the collection is served, but `insertOne` of the
    example's document breaks the resource's schema (400)."""
    tutorial = steps_of((DOCS / "tutorials" / "getting-started.md").read_text(encoding="utf-8"))
    how_to = steps_of(
        (DOCS / "how-to" / "migrate-from-atlas-data-api.md").read_text(encoding="utf-8")
    )
    todo = yaml.safe_load(
        next(s.file[1] for s in tutorial if s.file and s.file[0] == "todo/shoal.yaml")
    )
    atlas = yaml.safe_load(next(s.file[1] for s in how_to if s.file))
    # A database of the test's own, that the Data API's "todo" stands for.
    database = f"todo_{uuid.uuid4().hex[:8]}"
    config = {
        **todo,
        "data_api": atlas["data_api"],
        "mongodb": {"uri": mongodb_uri, "database": database},
    }
    config["data_api"]["data_sources"]["mongodb-atlas"]["databases"]["todo"]["name"] = database
    path = tmp_path / "shoal.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    app = create_app(path)
    async with app.test_app():
        key, _ = await get_auth(app).accounts.create_api_key("data-api", ["editor"])
        client = app.test_client()
        namespace = {"dataSource": "mongodb-atlas", "database": "todo", "collection": "tasks"}
        response = await client.post(
            "/action/insertOne",
            json={**namespace, "document": {"status": "open", "text": "Do the dishes"}},
            headers={"apiKey": key},
        )
        body = await response.get_json()
        assert response.status_code == 400, body
        assert body["error_code"] == "SchemaValidationFailedWrite"
        assert "title" in body["error"]
        response = await client.post(
            "/action/insertOne",
            json={**namespace, "document": {"title": "Do the dishes"}},
            headers={"apiKey": key},
        )
        assert response.status_code == 201, await response.get_json()


def _page(name: str) -> list[Step]:
    return steps_of((DOCS / "how-to" / name).read_text(encoding="utf-8"))


def test_the_eve_how_to_prints_what_it_says(checkout: Path) -> None:
    steps = _page("migrate-from-eve.md")
    assert any("from-eve" in step.text for step in steps)
    _run_page(Tour(steps, address=_listen_on(checkout)), checkout)


def test_the_hooks_how_to_serves_its_example(checkout: Path) -> None:
    steps = _page("hooks.md")
    assert [step.server for step in steps].count(True) == 1
    _run_page(Tour(steps, address=_listen_on(checkout)), checkout)


def _served_page(
    steps: list[Step], root: Path, config: dict[str, Any], env: dict[str, str] | None = None
) -> None:
    """Run a page's blocks against `shoal serve` on ``config`` (``shoal.yaml`` at
    the root of the copy, also ``$SHOAL_CONFIG``), as a reader with a server running."""
    (root / "shoal.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    server = ServeProcess(root, config="shoal.yaml", bind=f"127.0.0.1:{free_port()}", env=env)
    try:
        server.start()
        server.wait_ready()
        tour_env = {**(env or {}), "SHOAL_CONFIG": "shoal.yaml"}
        tour = Tour(steps, address=server.bind, passwords={"ops": "an ops password"})
        outputs = run_tour(tour, root, root.parent / "scratch", env=tour_env)
    finally:
        server.cleanup()
    wrong = []
    for step, printed in zip(steps, outputs, strict=True):
        try:
            check(step, printed)
        except AssertionError as error:
            wrong.append(str(error))
    assert not wrong, "\n\n---\n".join(wrong)


def _bookstore() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "examples/bookstore/shoal.yaml").read_text())
    return config


def test_the_auth_how_tos_commands_run(checkout: Path) -> None:
    steps = _page("auth.md")
    assert sum("shoal users" in step.text or "shoal apikeys" in step.text for step in steps) >= 12
    env = {"EDITOR_PASSWORD": "an editor's password", "NEW_PASSWORD": "a brand new password"}
    _served_page(steps, checkout, _bookstore(), env)


def test_the_api_docs_how_tos_commands_run(checkout: Path) -> None:
    _served_page(_page("api-docs.md"), checkout, _bookstore())
    served = json.loads((checkout / "served.json").read_text())
    built = json.loads((checkout / "openapi.json").read_text())
    assert served["paths"].keys() == built["paths"].keys()


def test_the_caching_how_tos_commands_run(checkout: Path, mongodb_uri: str) -> None:
    config = _bookstore()
    config["resources"]["books"]["cache_ttl"] = 30
    key = _api_key(checkout, config)
    _served_page(_page("caching-and-limits.md"), checkout, config, {"KEY": key})


def _api_key(root: Path, config: dict[str, Any]) -> str:
    """A key of the reader's (role editor) for the config at the root of the copy."""
    (root / "shoal.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run_shoal(
        ["apikeys", "create", "--role", "editor", "--config", "shoal.yaml"], cwd=root
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_operations_how_tos_commands_run(
    checkout: Path, mongodb_uri: str, redis_url: str
) -> None:
    env = {
        "SHOAL_MONGODB_URI": mongodb_uri,
        "SHOAL_MONGODB_DATABASE": f"operations_{uuid.uuid4().hex[:8]}",
        "SHOAL_REDIS_URL": redis_url,
        "SHOAL_METRICS_TOKEN": "a-long-random-token",
    }
    config = {**_bookstore(), "redis": {"key_prefix": f"ops{uuid.uuid4().hex[:8]}:"}}
    _served_page(_page("operations.md"), checkout, config, env)
