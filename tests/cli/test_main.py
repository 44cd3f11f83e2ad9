"""The `shoal` command as an operator meets it: the real console script, run as a
subprocess with no SHOAL_* variables but the ones a test sets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import shoal
from shoal.cli.serve import HYPERCORN_DEFAULTS, is_loopback_bind
from shoal.config import ENV_OVERRIDES
from shoal.system import free_port
from tests.utils.processes import processes_mentioning, run_shoal, wait_until
from tests.utils.servers import wait_for_port
from tests.utils.settings import EXAMPLE_CONFIG, ROOT, TEST_SECRET, example_resources

GOOD_SECRET = TEST_SECRET
assert len(GOOD_SECRET) >= 32


def _write(directory: Path, text: str, name: str = "shoal.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _problem_lines(stderr: str) -> list[str]:
    """The indented "key: message" lines of a ConfigError."""
    return [line.strip() for line in stderr.splitlines() if line.startswith("  ")]


# --- check-config ----------------------------------------------------------------------


def test_check_config_accepts_the_example(repo_root: Path, tmp_path: Path) -> None:
    relative = EXAMPLE_CONFIG.relative_to(repo_root)
    result = run_shoal(["check-config", str(relative)], cwd=repo_root)

    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    for name in example_resources():
        assert name in result.stdout
    assert result.stderr == ""


BAD_CONFIGS = {
    "typo in a top-level key": (
        "environment: development\nresorces: {}\n",
        "resorces",
        "unknown key; did you mean resources?",
    ),
    "typo in a resource's key": (
        "environment: development\n"
        "resources:\n"
        "  books:\n"
        "    schema: {type: object}\n"
        "    pagination_limt: 10\n",
        "resources.books.pagination_limt",
        "unknown key; did you mean pagination_limit?",
    ),
    "a type JSON Schema does not have": (
        "environment: development\n"
        "resources:\n"
        "  books:\n"
        "    schema: {type: object, properties: {title: {type: strng}}}\n",
        "resources.books.schema: properties/title/type",
        "strng is not a JSON Schema type; did you mean string? The types are array, "
        "boolean, integer, null, number, object, string.",
    ),
    "pagination_limit of 0": (
        "environment: development\n"
        "resources:\n"
        "  books:\n"
        "    schema: {type: object}\n"
        "    pagination_limit: 0\n",
        "resources.books.pagination_limit",
        "greater than 0",
    ),
    "a string where a number goes": (
        "environment: development\nmax_body_bytes: lots\n",
        "max_body_bytes",
        "integer",
    ),
    "a list where a section goes": (
        "environment: development\nmongodb: [a, b]\n",
        "mongodb",
        "dictionary",
    ),
    "mongodb.uri with a bad scheme": (
        "environment: development\nmongodb: {uri: 'http://db.example:27017'}\n",
        "mongodb.uri",
        "mongodb://",
    ),
    "not YAML": (
        "resources: {books: [unclosed\n  : : :\n",
        "shoal.yaml:2:3: not valid YAML",
        "expected ',' or ']', but got ':' (while parsing a flow sequence that starts "
        "at line 1, column 20)",
    ),
    "a misspelt rules key": (
        "environment: development\n"
        "resources:\n"
        "  orders:\n"
        "    schema: {type: object}\n"
        "    rules: {roles: [{name: clerk, aply_when: {}}]}\n",
        "resources.orders.rules.roles.0.aply_when",
        "unknown key; did you mean apply_when?",
    ),
    "App Services' custom_data in a rule": (
        "environment: development\n"
        "resources:\n"
        "  orders:\n"
        "    schema: {type: object}\n"
        "    rules: {roles: [{name: c, document_filters: {read: {r: '%%user.custom_data.r'}}}]}\n",
        "resources.orders.rules.roles.0.document_filters.read",
        "write %%user.data.r",
    ),
    "a list at the top level": (
        "- environment\n- development\n",
        "(top level)",
        "mapping",
    ),
}


@pytest.mark.parametrize(
    ("text", "key", "problem"), list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS)
)
def test_check_config_rejects_a_bad_config_naming_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = _write(tmp_path, text)
    result = run_shoal(["check-config", str(path)], cwd=tmp_path)

    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr, "the message names the file"
    lines = _problem_lines(result.stderr)
    assert any(key in line and problem in line for line in lines), result.stderr


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    result = run_shoal(["check-config", str(missing)], cwd=tmp_path)

    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "No such file" in result.stderr
    assert "Traceback" not in result.stderr


# --- JSON Schema keywords ----------------------------------------------------------------

#: The issue's schema: three misspelt keywords that JSON Schema alone would ignore.
MISSPELT_SCHEMA = """\
environment: development
resources:
  books:
    schema:
      type: object
      requird: [title]
      properties:
        title: {type: string, maxLenght: 10}
        year: {type: integer, minimun: 0}
    resource_methods: [GET, POST]
    public_methods: [GET, POST]
"""
MISSPELT_PROBLEMS = [
    "resources.books.schema: requird: not a JSON Schema 2020-12 keyword; did you mean required?",
    "resources.books.schema: properties/title/maxLenght: not a JSON Schema 2020-12 keyword; "
    "did you mean maxLength?",
    "resources.books.schema: properties/year/minimun: not a JSON Schema 2020-12 keyword; "
    "did you mean minimum?",
]


def test_check_config_refuses_misspelt_schema_keywords_naming_the_one_meant(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, MISSPELT_SCHEMA)
    result = run_shoal(["check-config", str(path)], cwd=tmp_path)

    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert _problem_lines(result.stderr) == MISSPELT_PROBLEMS


def test_serve_refuses_misspelt_schema_keywords_before_anything_starts(tmp_path: Path) -> None:
    path = _write(tmp_path, MISSPELT_SCHEMA)
    port = free_port()
    result = run_shoal(
        ["serve", "--config", str(path), "--bind", f"127.0.0.1:{port}"], cwd=tmp_path, timeout=30
    )

    assert result.returncode == 2, result
    assert "Shoal is serving" not in result.stdout
    assert "Traceback" not in result.stderr
    assert _problem_lines(result.stderr) == MISSPELT_PROBLEMS
    assert not (tmp_path / ".shoal").exists(), "the embedded store was started anyway"
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.3)


#: A misspelt keyword in each place JSON Schema 2020-12 holds a schema.
NESTED_TYPOS = {
    "items": (
        {"properties": {"tags": {"type": "array", "items": {"maxLenght": 3}}}},
        "properties/tags/items/maxLenght",
        "maxLength",
    ),
    "prefixItems": (
        {"properties": {"pair": {"prefixItems": [{}, {"minimun": 0}]}}},
        "properties/pair/prefixItems/1/minimun",
        "minimum",
    ),
    "contains": (
        {"properties": {"tags": {"contains": {"enm": ["a"]}}}},
        "properties/tags/contains/enm",
        "enum",
    ),
    "properties of properties": (
        {"properties": {"author": {"type": "object", "properties": {"name": {"patern": "^a"}}}}},
        "properties/author/properties/name/patern",
        "pattern",
    ),
    "additionalProperties": (
        {"properties": {"labels": {"additionalProperties": {"minLenght": 1}}}},
        "properties/labels/additionalProperties/minLenght",
        "minLength",
    ),
    "patternProperties": (
        {"properties": {"labels": {"patternProperties": {"^x": {"typ": "string"}}}}},
        "properties/labels/patternProperties/^x/typ",
        "type",
    ),
    "propertyNames": (
        {"properties": {"labels": {"propertyNames": {"maxLenght": 8}}}},
        "properties/labels/propertyNames/maxLenght",
        "maxLength",
    ),
    "$defs": (
        {"$defs": {"name": {"maxLenght": 3}}, "properties": {"a": {"$ref": "#/$defs/name"}}},
        "$defs/name/maxLenght",
        "maxLength",
    ),
    "allOf": (
        {"properties": {"n": {"allOf": [{"maximun": 3}]}}},
        "properties/n/allOf/0/maximun",
        "maximum",
    ),
    "anyOf": (
        {"properties": {"n": {"anyOf": [{"type": "integer"}, {"minimun": 0}]}}},
        "properties/n/anyOf/1/minimun",
        "minimum",
    ),
    "oneOf": (
        {"properties": {"n": {"oneOf": [{"multipleOff": 2}]}}},
        "properties/n/oneOf/0/multipleOff",
        "multipleOf",
    ),
    "not": (
        {"properties": {"n": {"not": {"constt": 3}}}},
        "properties/n/not/constt",
        "const",
    ),
    "if, then, else": (
        {"properties": {"n": {"if": {"type": "integer"}, "then": {"minimun": 0}}}},
        "properties/n/then/minimun",
        "minimum",
    ),
    "dependentSchemas": (
        {"dependentSchemas": {"a": {"requird": ["b"]}}},
        "dependentSchemas/a/requird",
        "required",
    ),
    "unevaluatedProperties": (
        {"properties": {"m": {"unevaluatedProperties": {"maxLenght": 2}}}},
        "properties/m/unevaluatedProperties/maxLenght",
        "maxLength",
    ),
    "an older draft's keyword": ({"definitions": {}}, "definitions", "$defs"),
}


@pytest.mark.parametrize(
    ("schema", "where", "meant"), list(NESTED_TYPOS.values()), ids=list(NESTED_TYPOS)
)
def test_misspelt_keywords_are_found_in_nested_schemas(
    tmp_path: Path, schema: dict[str, Any], where: str, meant: str
) -> None:
    config = {
        "environment": "development",
        "resources": {"things": {"schema": {"type": "object", **schema}}},
    }
    path = _write(tmp_path, yaml.safe_dump(config))
    result = run_shoal(["check-config", str(path)], cwd=tmp_path)

    assert result.returncode == 2, result
    assert _problem_lines(result.stderr) == [
        f"resources.things.schema: {where}: not a JSON Schema 2020-12 keyword; "
        f"did you mean {meant}?"
    ]


def test_a_keyword_with_no_near_one_asks_for_an_x_prefix(tmp_path: Path) -> None:
    config = "environment: development\nresources:\n  things:\n    schema:\n"
    config += "      type: object\n      widget: textarea\n"
    result = run_shoal(["check-config", str(_write(tmp_path, config))], cwd=tmp_path)

    assert result.returncode == 2, result
    assert _problem_lines(result.stderr) == [
        "resources.things.schema: widget: not a JSON Schema 2020-12 keyword, nor Shoal's; "
        "name an annotation of your own x-widget"
    ]


def test_a_misspelt_keyword_in_an_aggregation_variable_is_refused(tmp_path: Path) -> None:
    config = {
        "environment": "development",
        "resources": {
            "books": {"schema": {"type": "object"}},
            "by_year": {
                "schema": {"type": "object"},
                "datasource": {
                    "source": "books",
                    "aggregation": {
                        "pipeline": [{"$match": {"year": "$year"}}],
                        "variables": {"$year": {"type": "integer", "minimun": 0}},
                    },
                },
            },
        },
    }
    path = _write(tmp_path, yaml.safe_dump(config))
    result = run_shoal(["check-config", str(path)], cwd=tmp_path)

    assert result.returncode == 2, result
    assert _problem_lines(result.stderr) == [
        "resources.by_year.datasource.aggregation: variables.$year: minimun: not a JSON "
        "Schema 2020-12 keyword; did you mean minimum?"
    ]


#: Every kind of keyword a schema may hold besides the validation ones.
ANNOTATED_SCHEMA = """\
environment: development
resources:
  authors:
    schema: {type: object, properties: {name: {type: string}}}
  books:
    schema:
      $comment: the keywords Shoal accepts besides the usual ones
      type: object
      x-ui: {order: [title, author], maxLenght: not a keyword here}
      properties:
        title:
          type: string
          maxLength: 200
          title: Title
          description: The book's title.
          examples: [Dune]
          deprecated: false
          x-widget: {kind: textarea, minimun: 1}
        author:
          type: string
          format: objectid
          data_relation: {resource: authors, embeddable: true}
        created_by: {type: string, readOnly: true}
        secret: {type: string, writeOnly: true}
        cover: {type: string, contentEncoding: base64, contentMediaType: image/png}
        shape:
          default: {maxLenght: values are data, not schemas}
          enum: [{requird: 1}, {maxLenght: 2}]
          const: {requird: 1}
"""


def test_standard_shoal_and_x_keywords_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, ANNOTATED_SCHEMA)
    result = run_shoal(["check-config", str(path)], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("OK (2 resources: authors, books)\n")


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*/shoal.yaml")), ids=str)
def test_every_example_config_passes(tmp_path: Path, example: Path) -> None:
    result = run_shoal(
        ["check-config", str(example)], cwd=tmp_path, env={"SHOAL_SECRET_KEY": GOOD_SECRET}
    )
    assert result.returncode == 0, result.stderr


def test_production_with_the_placeholder_secret_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "environment: production\n")
    result = run_shoal(["check-config", str(path)], cwd=tmp_path)

    assert result.returncode == 2
    assert "secret_key" in result.stderr
    assert "SHOAL_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_shoal_secret_key_in_the_environment_makes_it_valid(tmp_path: Path) -> None:
    path = _write(tmp_path, "environment: production\n")
    result = run_shoal(
        ["check-config", str(path)], cwd=tmp_path, env={"SHOAL_SECRET_KEY": GOOD_SECRET}
    )

    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_a_short_shoal_secret_key_is_still_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "environment: production\n")
    result = run_shoal(
        ["check-config", str(path)], cwd=tmp_path, env={"SHOAL_SECRET_KEY": "too-short"}
    )

    assert result.returncode == 2
    assert "secret_key" in result.stderr
    assert "32" in result.stderr


# --- serve refusals ---------------------------------------------------------------------


def test_serve_with_two_workers_needs_redis(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "shoal.yaml")
    port = free_port()
    result = run_shoal(
        ["serve", "--config", "shoal.yaml", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=tmp_path,
        timeout=20,
    )

    assert result.returncode != 0
    assert "Shoal is serving" not in result.stdout
    assert "Redis" in result.stderr
    assert "SHOAL_REDIS_URL" in result.stderr or "redis.url" in result.stderr
    assert "--workers" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started, and nothing is left behind.
    assert not (tmp_path / ".shoal").exists(), "the embedded store was started anyway"
    assert not processes_mentioning(str(tmp_path))
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.3)


def test_serve_in_production_without_mongodb_uri_is_refused(tmp_path: Path) -> None:
    config = _write(tmp_path, f"environment: production\nsecret_key: {GOOD_SECRET}\n")
    port = free_port()
    result = run_shoal(
        ["serve", "--config", str(config), "--bind", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        timeout=20,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "embedded store" in result.stderr
    assert "development" in result.stderr
    assert "SHOAL_MONGODB_URI" in result.stderr or "mongodb.uri" in result.stderr
    assert not (tmp_path / ".shoal").exists()
    assert wait_until(lambda: not processes_mentioning(str(tmp_path)), 5)


@pytest.mark.parametrize("bind", ["0.0.0.0", "[::]"])  # noqa: S104 - refused before binding
def test_a_development_server_on_a_public_address_is_refused(tmp_path: Path, bind: str) -> None:
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "shoal.yaml")
    port = free_port()
    result = run_shoal(
        ["serve", "--config", "shoal.yaml", "--bind", f"{bind}:{port}"], cwd=tmp_path, timeout=20
    )
    assert result.returncode == 2
    assert f"{bind}:{port} can be reached from other machines" in result.stderr
    assert "--allow-non-loopback" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".shoal").exists(), "the embedded store was started anyway"


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1:8000", True),
        ("127.0.0.5:8000", True),
        ("[::1]:8000", True),
        ("localhost:8000", True),
        ("unix:/run/shoal.sock", True),
        ("0.0.0.0:8000", False),
        ("[::]:8000", False),
        ("192.0.2.10:8000", False),
    ],
)
def test_which_binds_stay_on_this_machine(bind: str, loopback: bool) -> None:
    """What --allow-non-loopback is needed for (tests never listen on a public
    address, so the flag's effect is checked here)."""
    assert is_loopback_bind(bind) is loopback


def test_serve_with_an_invalid_config_is_refused(tmp_path: Path) -> None:
    config = _write(tmp_path, "environment: development\nresorces: {}\n")
    result = run_shoal(
        ["serve", "--config", str(config), "--bind", f"127.0.0.1:{free_port()}"],
        cwd=tmp_path,
        timeout=20,
    )

    assert result.returncode == 2
    assert "resorces" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".shoal").exists()


# --- usage --------------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    result = run_shoal(["--version"], cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.strip() == f"shoal {shoal.__version__}"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_serve_with_a_bad_worker_count_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = run_shoal(["serve", "--workers", value], cwd=tmp_path, timeout=20)

    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "--workers" in result.stderr
    assert not (tmp_path / ".shoal").exists()


def test_no_command_is_a_usage_error_that_lists_the_commands(tmp_path: Path) -> None:
    result = run_shoal([], cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: shoal ")
    commands = re.findall(r"^    ([a-z-]+)", result.stderr, re.M)
    assert commands == [
        "serve", "users", "apikeys", "check-config", "openapi", "from-eve", "import", "media"
    ]  # fmt: skip
    assert "run the API server" in result.stderr


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        (
            "users",
            [
                "create",
                "list",
                "disable",
                "enable",
                "delete",
                "set-roles",
                "set-data",
                "set-password",
            ],
        ),
        ("apikeys", ["create", "list", "revoke"]),
    ],
)
def test_a_command_with_no_action_lists_its_actions(
    tmp_path: Path, command: str, actions: list[str]
) -> None:
    result = run_shoal([command], cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: shoal {command} ")
    assert re.findall(r"^    ([a-z-]+)", result.stderr, re.M) == actions


def test_serve_help_describes_the_options_their_defaults_and_the_environment(
    tmp_path: Path,
) -> None:
    result = run_shoal(["serve", "--help"], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "Run the API server" in text
    bind, workers = HYPERCORN_DEFAULTS["bind"][0], HYPERCORN_DEFAULTS["workers"]
    assert (
        f"--bind HOST:PORT the address to listen on (default: hypercorn.toml's bind, else {bind})"
        in text
    )
    assert (
        f"--workers N worker processes (default: hypercorn.toml's workers, else {workers})" in text
    )
    assert "--config FILE the config file (YAML); default: $SHOAL_CONFIG" in text
    for variable in [*ENV_OVERRIDES, "SHOAL_CONFIG", "SHOAL_HYPERCORN_CONFIG"]:
        assert re.search(rf"^  {variable} +\S", result.stdout, re.M), variable
    listed = set(re.findall(r"^  (SHOAL_[A-Z_]+) ", result.stdout, re.M))
    assert listed == {*ENV_OVERRIDES, "SHOAL_CONFIG", "SHOAL_HYPERCORN_CONFIG"}


@pytest.mark.parametrize(
    "args",
    [
        ["serve"],
        ["serve", "--bind", "127.0.0.1:8000"],
        ["users", "list"],
        ["apikeys", "create", "--role", "editor"],
        ["openapi"],
        ["import", "books", "books.jsonl"],
    ],
    ids=" ".join,
)
def test_a_command_without_a_config_says_none_was_given(tmp_path: Path, args: list[str]) -> None:
    """Not the placeholder secret key, nor anything else a default config says."""
    result = run_shoal(args, cwd=tmp_path)

    command = " ".join(arg for arg in args[:2] if not arg.startswith("-"))
    if args[0] in ("serve", "openapi", "import"):
        command = args[0]
    assert result.returncode == 2
    assert result.stderr == (
        f"shoal {command}: no config file given: pass --config FILE or set SHOAL_CONFIG "
        "(docs/tutorials/getting-started.md writes one)\n"
    )
    assert not (tmp_path / ".shoal").exists()


def test_shoal_config_in_the_environment_is_a_config_given(tmp_path: Path) -> None:
    path = _write(tmp_path, "environment: development\n")
    result = run_shoal(["openapi"], cwd=tmp_path, env={"SHOAL_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr


def test_a_mistyped_option_of_serve_shows_serves_usage(tmp_path: Path) -> None:
    result = run_shoal(["serve", "--bnd", "127.0.0.1:9000"], cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: shoal serve [-h] [--config FILE] [--bind HOST:PORT]")
    assert result.stderr.splitlines()[-1] == (
        "shoal serve: error: unrecognized arguments: --bnd (did you mean --bind?) 127.0.0.1:9000"
    )


def test_a_mistyped_option_of_an_action_shows_its_usage(tmp_path: Path) -> None:
    result = run_shoal(["users", "create", "ann", "--role", "x", "--pasword-stdin"], cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: shoal users create ")
    assert "--pasword-stdin (did you mean --password-stdin?)" in result.stderr


@pytest.mark.parametrize(
    ("bind", "example"),
    [("9307", "127.0.0.1:9307"), ("localhost", "127.0.0.1:8000"), ("127.0.0.1:", "127.0.0.1:8000")],
)
def test_serve_asks_for_host_and_port(tmp_path: Path, bind: str, example: str) -> None:
    """A bare port is not taken for a host name (that reaches other machines)."""
    result = run_shoal(["serve", "--config", "x.yaml", "--bind", bind], cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: shoal serve ")
    assert result.stderr.splitlines()[-1] == (
        f"shoal serve: error: argument --bind: {bind!r} is not HOST:PORT; for instance "
        f"--bind {example} (this machine only), [::1]:PORT for IPv6, or unix:PATH"
    )
    assert "other machines can reach" not in result.stderr.splitlines()[-1]


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"{statement}; import sys; print('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def test_the_command_loads_no_server_stack_before_a_command_needs_it() -> None:
    loaded = _modules_loaded_by("import shoal.cli")
    heavy = {"quart", "pymongo", "redis", "shoal.app", "shoal.auth", "shoal.policies.cache"}
    assert loaded.isdisjoint(heavy)


def test_shoal_import_runs_without_the_http_stack() -> None:
    loaded = _modules_loaded_by("import shoal.cli.importer")
    assert {"pymongo", "shoal.resources"} <= loaded  # what the import needs is there
    assert loaded.isdisjoint({"quart", "shoal.policies", "shoal.http", "shoal.auth"})


@pytest.mark.parametrize(
    ("module", "problem"),
    [
        ("", "cannot import"),  # no such module
        ("def register(app):\n    pass\n", "has no function"),  # wrong function name
        ("def setup(app):\n    raise RuntimeError('boom')\n", "failed"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "openapi"])
def test_hooks_that_do_not_load_are_a_config_error_before_anything_starts(
    tmp_path: Path, module: str, problem: str, command: str
) -> None:
    config = EXAMPLE_CONFIG.read_text(encoding="utf-8") + "\nhooks: ['mine:setup']\n"
    (tmp_path / "shoal.yaml").write_text(config, encoding="utf-8")
    if module:
        (tmp_path / "mine.py").write_text(module, encoding="utf-8")
    port = free_port()
    arguments = {
        "serve": ["serve", "--config", "shoal.yaml", "--bind", f"127.0.0.1:{port}"],
        "openapi": ["openapi", "--config", "shoal.yaml"],
    }[command]
    result = run_shoal(arguments, cwd=tmp_path, timeout=30)

    assert result.returncode == 2, result.stderr
    assert "hooks" in result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr
    assert "Shoal is serving" not in result.stdout
    assert not processes_mentioning(str(tmp_path))
