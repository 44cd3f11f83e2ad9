"""Loading the config: a YAML file, then SHOAL_* environment overrides, validated once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shoal.config import SECRET_KEY_PLACEHOLDER, ConfigError, Settings, load_settings
from tests.utils.settings import EXAMPLE_CONFIG, TEST_SECRET

BOOKS: dict[str, Any] = {"schema": {"type": "object"}}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _problems(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, env=env or {})
    return caught.value.problems


# --- environment overrides -------------------------------------------------------------


def test_env_overrides_replace_file_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "shoal.yaml",
        "environment: production\n"
        "secret_key: from-the-file-0123456789\n"
        "mongodb: {uri: 'mongodb://file-host:27017', database: filedb}\n"
        "redis: {url: 'redis://file-host:6379/0', key_prefix: 'app:'}\n",
    )
    env = {
        "SHOAL_MONGODB_URI": "mongodb://env-host:27018/?replicaSet=rs0",
        "SHOAL_MONGODB_DATABASE": "envdb",
        "SHOAL_REDIS_URL": "redis://env-host:6380/1",
        "SHOAL_SECRET_KEY": "from-the-environment-0123456789ab",
    }

    settings = load_settings(path, env=env)

    assert settings.mongodb.uri == "mongodb://env-host:27018/?replicaSet=rs0"
    assert settings.mongodb.database == "envdb"
    assert settings.redis.url == "redis://env-host:6380/1"
    assert settings.secret_key.get_secret_value() == "from-the-environment-0123456789ab"
    # What the environment does not name stays as the file says.
    assert settings.redis.key_prefix == "app:"
    assert settings.environment == "production"


def test_env_overrides_fill_sections_the_file_lacks(tmp_path: Path) -> None:
    path = _write(tmp_path / "shoal.yaml", "environment: development\n")
    env = {
        "SHOAL_MONGODB_URI": "mongodb://db:27017",
        "SHOAL_REDIS_URL": "redis+sentinel://s1:26379/main",
    }

    settings = load_settings(path, env=env)

    assert settings.mongodb.uri == "mongodb://db:27017"
    assert settings.mongodb.database == "shoal"
    assert settings.redis.url == "redis+sentinel://s1:26379/main"


def test_empty_env_variables_are_ignored(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "shoal.yaml",
        "environment: development\nmongodb: {uri: 'mongodb://file-host:27017'}\n",
    )

    settings = load_settings(path, env={"SHOAL_MONGODB_URI": "", "SHOAL_REDIS_URL": ""})

    assert settings.mongodb.uri == "mongodb://file-host:27017"
    assert settings.redis.url is None


def test_shoal_config_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "conf" / "api.yaml", "environment: development\nlog_level: DEBUG\n")

    settings = load_settings(env={"SHOAL_CONFIG": str(path)})

    assert settings.log_level == "DEBUG"
    assert settings.source == path.resolve()


def test_an_explicit_file_beats_shoal_config(tmp_path: Path) -> None:
    named = _write(tmp_path / "named.yaml", "environment: development\nlog_level: DEBUG\n")
    explicit = _write(tmp_path / "explicit.yaml", "environment: development\nlog_level: ERROR\n")

    settings = load_settings(explicit, env={"SHOAL_CONFIG": str(named)})

    assert settings.log_level == "ERROR"


def test_shoal_config_pointing_nowhere_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SHOAL_CONFIG": str(missing)})
    assert str(missing) in str(caught.value)


def test_without_any_file_the_defaults_and_env_apply() -> None:
    settings = load_settings(env={"SHOAL_SECRET_KEY": TEST_SECRET})

    assert settings.source is None
    assert settings.environment == "production"
    assert settings.mongodb.uri is None
    assert settings.resources == {}


def test_env_overrides_are_validated_like_the_file() -> None:
    problems = _problems({"environment": "development"}, env={"SHOAL_MONGODB_DATABASE": "a.b"})
    assert any(line.startswith("mongodb.database:") for line in problems), problems


def test_the_os_environment_is_read_when_no_env_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "shoal.yaml", "environment: production\n")
    monkeypatch.setenv("SHOAL_SECRET_KEY", TEST_SECRET)

    settings = load_settings(path)

    assert settings.secret_key.get_secret_value() == TEST_SECRET


# --- error messages -----------------------------------------------------------------------


def test_every_problem_is_one_dotted_key_line() -> None:
    problems = _problems(
        {
            "environment": "development",
            "max_body_bytes": 0,
            "log_level": "LOUD",
            "mongodb": {"database": "shoal", "max_pool_size": "many"},
            "resources": {"books": {**BOOKS, "pagination_limit": 0}},
        }
    )

    keys = {line.split(": ", 1)[0] for line in problems}
    assert keys == {
        "max_body_bytes",
        "log_level",
        "mongodb.max_pool_size",
        "resources.books.pagination_limit",
    }, problems
    for line in problems:
        _key, _, message = line.partition(": ")
        assert message, line
        assert "\n" not in line


def test_the_message_names_the_file_and_lists_the_problems(tmp_path: Path) -> None:
    path = _write(tmp_path / "shoal.yaml", "environment: development\nlog_levle: DEBUG\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})

    error = caught.value
    assert error.source == str(path.resolve())
    assert error.problems == ["log_levle: unknown key; did you mean log_level?"]
    assert str(error).splitlines() == [
        f"{path.resolve()} is not a valid Shoal config:",
        "  log_levle: unknown key; did you mean log_level?",
    ]


def test_an_unknown_key_with_no_near_one_lists_the_keys_of_its_section() -> None:
    problems = _problems({"environment": "development", "redis": {"colour": "red"}})
    assert problems == [
        "redis.colour: unknown key; this section takes key_prefix, socket_timeout, url"
    ]


def test_unknown_keys_in_a_resource_are_refused() -> None:
    problems = _problems(
        {"environment": "development", "resources": {"books": {**BOOKS, "pagnation_limit": 5}}}
    )
    assert problems == [
        "resources.books.pagnation_limit: unknown key; did you mean pagination_limit?"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("mongodb", "uri", "http://db:27017"), ("redis", "url", "http://cache:6379")],
)
def test_a_bad_url_scheme_names_the_dotted_key(section: str, key: str, value: str) -> None:
    problems = _problems({"environment": "development", section: {key: value}})

    assert len(problems) == 1
    assert problems[0].startswith(f"{section}.{key}: "), problems


@pytest.mark.parametrize(
    "name", ["healthz", "readyz", "docs", "auth", "action", "metrics", "bad name", "-x"]
)
def test_reserved_or_odd_resource_names_are_refused(name: str) -> None:
    problems = _problems({"environment": "development", "resources": {name: BOOKS}})

    assert len(problems) == 1
    assert problems[0].startswith("resources: ")
    assert repr(name) in problems[0]


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path / "shoal.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.problems == ["(top level): must be a mapping of config keys"]


# --- data_dir -----------------------------------------------------------------------------


def test_data_dir_is_dot_shoal_beside_the_config(tmp_path: Path) -> None:
    path = _write(tmp_path / "deploy" / "shoal.yaml", "environment: development\n")

    settings = load_settings(path, env={})

    assert settings.data_dir == tmp_path / "deploy" / ".shoal"


def test_data_dir_of_a_relative_path_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "conf" / "shoal.yaml", "environment: development\n")
    monkeypatch.chdir(tmp_path)

    settings = load_settings("conf/shoal.yaml", env={})
    monkeypatch.chdir(tmp_path / "conf")

    assert settings.data_dir == tmp_path / "conf" / ".shoal"
    assert settings.data_dir.is_absolute()


def test_data_dir_of_the_example() -> None:
    settings = load_settings(EXAMPLE_CONFIG, env={})
    assert settings.data_dir == EXAMPLE_CONFIG.parent / ".shoal"


# --- secret_key -----------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["production", "test"])
def test_a_short_secret_is_refused_outside_development(environment: str) -> None:
    problems = _problems({"environment": environment, "secret_key": "x" * 31})

    assert len(problems) == 1
    assert "secret_key" in problems[0]
    assert "32" in problems[0]


@pytest.mark.parametrize("environment", ["production", "test"])
def test_the_placeholder_is_refused_outside_development(environment: str) -> None:
    problems = _problems({"environment": environment})

    assert len(problems) == 1
    assert "secret_key" in problems[0]
    assert "SHOAL_SECRET_KEY" in problems[0]


def test_thirty_two_characters_are_enough() -> None:
    settings = load_settings({"environment": "production", "secret_key": "x" * 32}, env={})
    assert settings.secret_key.get_secret_value() == "x" * 32


def test_development_allows_the_placeholder_but_not_a_short_secret() -> None:
    # The placeholder never signs anything: a generated secret does (tests/auth/test_signing.py).
    default = load_settings({"environment": "development"}, env={})
    assert default.secret_key.get_secret_value() == SECRET_KEY_PLACEHOLDER
    problems = _problems({"environment": "development", "secret_key": "dev"})
    assert problems == [
        "secret_key: must be at least 32 bytes with HS256; "
        "or leave it out in development to have one generated"
    ]


@pytest.mark.parametrize(("algorithm", "needed"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_the_secret_is_at_least_as_long_as_the_hash(algorithm: str, needed: int) -> None:
    raw = {"environment": "production", "auth": {"algorithm": algorithm}}
    problems = _problems({**raw, "secret_key": "x" * (needed - 1)})
    assert problems == [f"secret_key: must be at least {needed} bytes with {algorithm}"]
    settings = load_settings({**raw, "secret_key": "x" * needed}, env={})
    assert settings.auth.algorithm == algorithm


def test_a_weak_rsa_key_file_is_refused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    private = tmp_path / "private.pem"
    public = tmp_path / "public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "not-a-key.pem").write_text("hello")
    auth = {"algorithm": "RS256", "private_key_file": str(private), "public_key_file": str(public)}
    problems = _problems({"environment": "production", "secret_key": TEST_SECRET, "auth": auth})
    assert len(problems) == 1
    assert "private_key_file: The RSA key is 1024 bits long" in problems[0]
    auth["private_key_file"] = str(tmp_path / "not-a-key.pem")
    problems = _problems({"environment": "production", "secret_key": TEST_SECRET, "auth": auth})
    assert "is not a PEM key for RS256" in problems[0]


def test_key_file_algorithms_without_cryptography_say_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jwt

    def missing(name: str) -> object:  # what PyJWT does when cryptography is absent
        raise NotImplementedError(f"Algorithm '{name}' could not be found")

    monkeypatch.setattr(jwt, "get_algorithm_by_name", missing)
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----")
    auth = {"algorithm": "ES256", "private_key_file": str(key), "public_key_file": str(key)}
    problems = _problems({"environment": "production", "secret_key": TEST_SECRET, "auth": auth})
    assert problems == [
        "auth: algorithm ES256 needs the cryptography package: pip install 'shoal[keys]' "
        "(HS256, HS384 and HS512 do not)"
    ]


def test_production_is_the_default_environment() -> None:
    problems = _problems({})
    assert any("secret_key" in line for line in problems), problems


def test_the_secret_does_not_leak_into_reprs() -> None:
    settings = load_settings({"environment": "production", "secret_key": TEST_SECRET}, env={})

    assert TEST_SECRET not in repr(settings)
    assert TEST_SECRET not in str(settings)
    assert TEST_SECRET not in settings.model_dump_json()


def test_settings_are_frozen() -> None:
    settings = load_settings({"environment": "development"}, env={})
    assert isinstance(settings, Settings)
    with pytest.raises(ValueError, match="frozen"):
        settings.max_body_bytes = 5


def test_trusted_proxies_from_the_environment() -> None:
    settings = load_settings(
        {"environment": "development"}, env={"SHOAL_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}
    )
    assert [str(network) for network in settings.trusted_proxies] == ["10.0.0.0/8", "::1/128"]


def test_a_bad_trusted_proxy_is_named() -> None:
    problems = _problems({"environment": "development", "trusted_proxies": ["10.0.0.1", "nope"]})
    assert problems == ["trusted_proxies: 'nope' is not an IP address or CIDR range"]


# --- data_api ----------------------------------------------------------------------------


def _data_api(collections: dict[str, Any], database: str = "shoal") -> dict[str, Any]:
    return {
        "environment": "development",
        "data_api": {
            "enabled": True,
            "data_sources": {
                "mongodb-atlas": {"databases": {database: {"collections": collections}}}
            },
        },
    }


def test_the_data_api_is_off_and_serves_nothing_by_default() -> None:
    settings = load_settings({"environment": "development"}, env={})
    assert settings.data_api.enabled is False
    assert settings.data_api.data_sources == {}


def test_a_served_collection_needs_a_role() -> None:
    problems = _problems(_data_api({"tasks": {}}))
    assert problems == [
        "data_api.data_sources.mongodb-atlas.databases.shoal.collections.tasks: "
        "gives no role any access: set roles, read_roles or write_roles"
    ]


def test_read_and_write_roles_replace_roles() -> None:
    settings = load_settings(
        _data_api({"tasks": {"roles": ["editor"], "read_roles": ["viewer", "editor"]}}), env={}
    )
    rules = settings.data_api.data_sources["mongodb-atlas"].databases["shoal"].collections["tasks"]
    assert rules.reader_roles == {"viewer", "editor"}
    assert rules.writer_roles == {"editor"}


@pytest.mark.parametrize("collection", ["shoal_users", "shoal_apikeys"])
def test_shoals_accounts_are_never_served(collection: str) -> None:
    problems = _problems(_data_api({collection: {"roles": ["admin"]}}))
    assert len(problems) == 1
    assert problems[0].startswith("data_api: data_sources.mongodb-atlas.databases.shoal.")
    assert "never served" in problems[0]


def test_the_accounts_of_an_aliased_database_are_never_served_either() -> None:
    raw = _data_api({"shoal_users": {"roles": ["admin"]}}, database="app")
    raw["data_api"]["data_sources"]["mongodb-atlas"]["databases"]["app"]["name"] = "shoal"
    assert "never served" in _problems(raw)[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("databases", {"bad.name": {}}),
        ("databases", {"ok": {"collections": {"$x": {"roles": ["a"]}}}}),
    ],
)
def test_names_mongodb_refuses_are_refused(key: str, value: Any) -> None:
    raw = {"environment": "development", "data_api": {"data_sources": {"s": {key: value}}}}
    problems = _problems(raw)
    assert len(problems) == 1
    assert problems[0].startswith("data_api.data_sources.s.databases"), problems


def test_the_hosted_prefix_takes_the_path_of_a_resource_named_app() -> None:
    raw = {
        "environment": "development",
        "resources": {"app": BOOKS},
        "data_api": {"enabled": True, "app_id": "data-abcde"},
    }
    assert _problems(raw) == ["data_api: app_id serves /app/...: rename the resource named app"]


def test_eves_cerberus_types_get_a_hint() -> None:
    schema = {"type": "object", "properties": {"at": {"type": "datetime"}}}
    problems = _problems({"environment": "development", "resources": {"e": {"schema": schema}}})
    assert problems == [
        "resources.e.schema: at: type datetime is Eve's (Cerberus); in JSON Schema write "
        "type: string, format: date-time"
    ]


# --- Eve's resource settings -----------------------------------------------------------


def _resource_problems(resources: dict[str, Any]) -> list[str]:
    return _problems({"environment": "development", "resources": resources})


def test_config_errors_name_the_dotted_key() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert _resource_problems({"x": {"schema": schema, "id_field": "b"}}) == [
        "resources.x: id_field: 'b' is not a property of the schema"
    ]
    assert _resource_problems({"x": {"schema": schema, "url": "x/<b>/y"}}) == [
        "resources.x: url: <b> must be a property of the schema (the parent's id it holds)"
    ]
    problems = _resource_problems(
        {"x": {"schema": schema, "datasource": {"source": "x", "sort": 1}}}
    )
    assert problems == ["resources.x.datasource.sort: unknown key; did you mean source?"]
    problems = _resource_problems(
        {"x": {"schema": schema, "datasource": {"projection": {"a": 1, "b": 0}}}}
    )
    assert problems == [
        "resources.x.datasource.projection: cannot mix inclusion (1) and exclusion (0)"
    ]
    assert _resource_problems({"x": {"schema": schema}, "y": {"schema": schema, "url": "x"}}) == [
        "resources.y.url: 'x' is the same path as x's"
    ]


def test_a_string_datasource_is_the_collection() -> None:
    schema = {"type": "object"}
    settings = load_settings(
        {"environment": "development", "resources": {"x": {"schema": schema, "datasource": "y"}}},
        env={},
    )
    assert settings.resources["x"].datasource.source == "y"


# --- metrics and Redis keys -----------------------------------------------------------

DEV: dict[str, Any] = {"environment": "development"}


def test_metrics_are_off_unless_a_bind_or_a_token_is_set() -> None:
    assert not load_settings(DEV, env={}).metrics.enabled
    env = {"SHOAL_METRICS_BIND": "[::]:9464", "SHOAL_METRICS_TOKEN": "t" * 16}
    metrics = load_settings(DEV, env=env).metrics
    assert metrics.enabled
    assert metrics.bind == "[::]:9464"
    assert metrics.token is not None
    assert metrics.token.get_secret_value() == "t" * 16
    assert "t" * 16 not in repr(metrics)


@pytest.mark.parametrize("bind", ["9464", "localhost", ":9464", "0.0.0.0:0", "host:70000"])
def test_a_metrics_bind_must_be_host_and_port(bind: str) -> None:
    assert _problems({**DEV, "metrics": {"bind": bind}}) == [
        f"metrics.bind: {bind!r} is not HOST:PORT (e.g. 0.0.0.0:9464, [::]:9464)"
    ]


def test_a_short_metrics_token_is_refused() -> None:
    assert _problems({**DEV, "metrics": {"token": "short"}}) == [
        "metrics.token: must be at least 16 characters"
    ]


@pytest.mark.parametrize("prefix", ["{app}:", "app{", "app}:"])
def test_a_key_prefix_with_a_hash_tag_is_refused(prefix: str) -> None:
    assert _problems({**DEV, "redis": {"key_prefix": prefix}}) == [
        "redis.key_prefix: must not contain { or }: Redis Cluster would take them for a hash tag"
    ]
