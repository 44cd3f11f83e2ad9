"""Settings for tests: the example resources, a fresh database and key prefix."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from quart import Quart

from shoal.config import Settings, get_settings, load_settings, read_config_file
from shoal.resources.documents import document_etag, etag_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "bookstore" / "shoal.yaml"
TEST_SECRET = "test-secret-key-0123456789abcdef"


def example_resources() -> dict[str, Any]:
    resources: dict[str, Any] = read_config_file(EXAMPLE_CONFIG)["resources"]
    return resources


def make_settings(mongodb_uri: str, redis_url: str | None, **overrides: Any) -> Settings:
    """A valid test config; each call gets its own database and key prefix."""
    unique = uuid.uuid4().hex[:12]
    raw: dict[str, Any] = {
        "environment": "test",
        "secret_key": TEST_SECRET,
        "mongodb": {"uri": mongodb_uri, "database": f"test_{unique}"},
        "redis": {"url": redis_url, "key_prefix": f"test:{unique}:"},
        "resources": example_resources(),
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return load_settings(raw, env={})


def write_config(directory: Path, *, mongodb: dict[str, Any], **overrides: Any) -> Path:
    """A config file with the example resources, as a user would write it."""
    raw: dict[str, Any] = {
        "environment": "test",
        "secret_key": TEST_SECRET,
        "mongodb": mongodb,
        "resources": example_resources(),
        **overrides,
    }
    path = directory / "shoal.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def content_etag(source: Quart | Settings | Path, document: Mapping[str, Any]) -> str:
    """The ETag Shoal gives ``document``'s content under the secret of an app,
    its settings or a config file (ETags are keyed: documents.etag_key)."""
    if isinstance(source, Quart):
        settings: Settings = get_settings(source)
    elif isinstance(source, Settings):
        settings = source
    else:
        settings = load_settings(source)
    return document_etag(document, etag_key(settings.secret_key.get_secret_value()))
