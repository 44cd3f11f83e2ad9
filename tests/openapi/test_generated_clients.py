"""Typed clients generated from the OpenAPI document, used against a real
`shoal serve` on the bookstore example: a Python client from
openapi-python-client, and TypeScript types from openapi-typescript with
openapi-fetch, compiled with ``tsc --strict``.

Each does what ``clients/bookstore.py`` and ``clients/bookstore.ts`` say: sign
in, create (one book, then three at once), read, list with ``where``, ``sort``
and pages, PATCH with ``If-Match``, delete, and read the typed error answers
(401, 412, 404, and 422 with its issues). Both must see the same answers.

The generators come from the registries: openapi-python-client is one of the
test extras, the npm packages are installed into a temporary folder. An install
or a generator that fails, warns or types the scenario wrong fails the test;
the generated code never leaves the temporary folder.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils.live import LiveServer, live_example
from tests.utils.npm import node, npm_install
from tests.utils.processes import run_shoal
from tests.utils.settings import write_config

#: The scenarios, one per client.
CLIENTS = Path(__file__).with_name("clients")
#: What the TypeScript client is made with, pinned (typescript 5: openapi-typescript's peer).
NPM_PACKAGES = (
    "openapi-typescript@7.13.0",
    "openapi-fetch@0.17.0",
    "typescript@5.9.3",
    "@types/node@20",
)
#: The editor both clients sign in as (a real user, made with `shoal users create`).
EDITOR = ("client-editor", "a long enough client password")

#: What both clients must see.
EXPECTED: dict[str, Any] = {
    "wrong_password": {"status": 401, "code": 401},
    "token_type": "Bearer",
    "created": {"status": 201, "location": True},
    "bulk": ["OK", "OK", "OK"],
    "invalid_create": {"status": 422, "issues": ["title", "year"]},
    "read": {"title": "Dune {tag}", "year": 1965, "in_stock": False, "etag_header": True},
    # where={"tags": tag}, sort=-year, three a page
    "pages": [
        {"years": [1979, 1969, 1965], "total": 4, "next": True},
        {"years": [1961], "total": 4, "next": False},
    ],
    "patched": {"status": 200, "etag_changed": True},
    # the PATCH named the year only: in_stock is still what it was
    "after_patch": {"year": 1966, "in_stock": False},
    "stale": {"status": 412, "code": 412},
    "invalid_patch": {"status": 422, "code": 422, "issues": ["year"]},
    "deleted": 204,
    "missing": {"status": 404, "code": 404},
}


def expected(tag: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(json.dumps(EXPECTED))
    answer["read"]["title"] = answer["read"]["title"].format(tag=tag)
    return answer


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str
) -> Iterator[LiveServer]:
    with live_example(tmp_path_factory.mktemp("clients"), mongodb_uri, redis_url) as server:
        server.create_user(*EDITOR, "editor")
        yield server


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The document `shoal openapi` prints for the example's resources (it
    connects to nothing: the clients are made once, whatever the engine)."""
    folder = tmp_path_factory.mktemp("document")
    config = write_config(folder, mongodb={"database": "clients"})
    printed = run_shoal(["openapi", "--config", str(config)], cwd=folder)
    assert printed.returncode == 0, printed.stderr
    path = folder / "openapi.json"
    path.write_text(printed.stdout, encoding="utf-8")
    return path


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a generator or a compiler; its output, or the test fails with it."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return output


@pytest.fixture(scope="module")
def python_client(document: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the generated package ``bookstore_client`` and the scenario,
    which type-checks against it."""
    folder = tmp_path_factory.mktemp("python-client")
    tools = Path(sys.executable).parent
    generator = tools / "openapi-python-client"
    assert generator.is_file(), "openapi-python-client is not installed (the test extras)"
    # On PATH: the generator formats what it writes with ruff.
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    generate = [str(generator), "generate", "--path", str(document), "--meta", "none"]
    output = run([*generate, "--output-path", str(folder / "bookstore_client")], folder, env)
    # A warning names a part of the document the generator left out.
    assert "WARNING" not in output, output
    assert "Unable to" not in output, output

    shutil.copy(CLIENTS / "bookstore.py", folder / "bookstore.py")
    # The scenario type-checks against the generated client (whose own code is
    # the generator's business: --follow-imports=silent).
    mypy = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent"]
    cache = ["--cache-dir", str(folder / ".mypy_cache")]
    run([*mypy, *cache, "bookstore.py"], folder, {**env, "MYPYPATH": str(folder)})
    return folder


def test_the_python_client(live: LiveServer, python_client: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    sys.path.insert(0, str(python_client))
    try:
        scenario: Any = importlib.import_module("bookstore")
        seen = scenario.run(live.url, *EDITOR, tag)
    finally:
        sys.path.remove(str(python_client))
        generated = {"bookstore", "bookstore_client"}
        for name in [name for name in sys.modules if name.split(".")[0] in generated]:
            del sys.modules[name]
    assert seen == expected(tag)


@pytest.fixture(scope="module")
def npm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return npm_install(tmp_path_factory.mktemp("npm-clients"), NPM_PACKAGES)


@pytest.fixture(scope="module")
def typescript_client(document: Path, npm_dir: Path) -> Path:
    """The folder where the scenario is compiled (``bookstore.js``) against the
    generated types, with ``tsc --strict``."""
    tools = npm_dir / "node_modules"
    # A field with a default is one a client may leave out (Shoal fills it in);
    # openapi-typescript would otherwise make it required.
    types = ["--output", "schema.d.ts", "--default-non-nullable", "false"]
    run(
        [node(), str(tools / "openapi-typescript" / "bin" / "cli.js"), str(document), *types],
        npm_dir,
    )
    shutil.copy(CLIENTS / "bookstore.ts", npm_dir / "bookstore.ts")
    (npm_dir / "package.json").write_text('{"type": "module"}\n', encoding="utf-8")
    options = ["--strict", "--target", "es2022", "--lib", "es2022,dom", "--types", "node"]
    options += ["--module", "nodenext", "--moduleResolution", "nodenext"]
    run([node(), str(tools / "typescript" / "bin" / "tsc"), *options, "bookstore.ts"], npm_dir)
    return npm_dir


def test_the_typescript_client(live: LiveServer, typescript_client: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    output = run([node(), "bookstore.js", live.url, *EDITOR, tag], typescript_client)
    assert json.loads(output) == expected(tag)
