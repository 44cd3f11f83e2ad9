"""Loading the config: a YAML file (or a mapping), then ``SHOAL_*`` environment
overrides, validated once; every problem names its key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from ..hints import unknown_key, yaml_problem
from .base import ConfigError
from .settings import Settings

if TYPE_CHECKING:  # Quart only for types: the CLI commands run without it
    from quart import Quart

#: ``SHOAL_*`` variables and the config key each one overrides.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "SHOAL_MONGODB_URI": ("mongodb", "uri"),
    "SHOAL_MONGODB_DATABASE": ("mongodb", "database"),
    "SHOAL_REDIS_URL": ("redis", "url"),
    "SHOAL_SECRET_KEY": ("secret_key",),
    "SHOAL_ENVIRONMENT": ("environment",),
    "SHOAL_TRUSTED_PROXIES": ("trusted_proxies",),
    "SHOAL_INSTANCE_NAME": ("instance", "name"),
    "SHOAL_METRICS_BIND": ("metrics", "bind"),
    "SHOAL_METRICS_TOKEN": ("metrics", "token"),
    "SHOAL_TRACING_ENABLED": ("tracing", "enabled"),
}


def _format_location(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        location = _format_location(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = unknown_key(Settings, item["loc"])
        if not item["loc"] and message.startswith("resources."):
            problems.append(message)  # a check across resources names its own key
        else:
            # One line per problem (a schema's check may find several).
            problems.extend(f"{location}: {line}" for line in message.splitlines())
    return problems


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(raw)
    for variable, path in ENV_OVERRIDES.items():
        value = env.get(variable)
        if value is None or value == "":
            continue
        node = merged
        for key in path[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, Mapping) else {}
            node = node[key]
        node[path[-1]] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file; a missing or malformed file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror}"]) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [yaml_problem(error, path)]) from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["(top level): must be a mapping of config keys"])
    return data


def load_settings(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from a file path or a mapping, then env overrides.

    ``source`` None means the file named by ``SHOAL_CONFIG``, or no file at all.
    """
    env = os.environ if env is None else env
    path: Path | None = None
    if source is None and env.get("SHOAL_CONFIG"):
        source = env["SHOAL_CONFIG"]
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        path = Path(source).resolve()
        raw = read_config_file(path)
    raw = _apply_env(raw, env)
    tracing = raw.get("tracing")
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" and (
        tracing is None or isinstance(tracing, Mapping)
    ):
        # OpenTelemetry's own off switch holds over the config.
        raw["tracing"] = {**(tracing or {}), "enabled": False}
    label = str(path) if path is not None else "the config"
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(label, _problems(error)) from error
    return settings.model_copy(update={"source": path})


#: Where an app keeps its settings (``app.extensions``).
SETTINGS_KEY = "shoal.settings"


def get_settings(app: Quart) -> Settings:
    """The settings an app was built with."""
    settings: Settings = app.extensions[SETTINGS_KEY]
    return settings
