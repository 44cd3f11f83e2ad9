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

import shutil
import sys
from pathlib import Path

import pytest

from shoal.system import free_port
from tests.utils.doctour import ADDRESS, Tour, check, steps_of
from tests.utils.doctour import run as run_tour
from tests.utils.engines import DatabaseServer
from tests.utils.processes import shoal_command
from tests.utils.servers import RedisServer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


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
