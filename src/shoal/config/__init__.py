"""Typed configuration: a YAML file, then ``SHOAL_*`` environment overrides.

Everything is validated once, at start-up. Every error names the key that is
wrong and says what is wrong with it::

    >>> load_settings("shoal.yaml")           # doctest: +SKIP
    ConfigError: shoal.yaml is not a valid Shoal config:
      resources.books.pagination_limit: Input should be greater than 0

One module per concern, each validator beside its fields: ``services``
(MongoDB, Redis, metrics, the instance), ``auth``, ``server`` (how requests
are answered), ``resources``, ``dataapi``, ``settings`` (the whole, and the
checks across sections) and ``loading``. The names below are the package's
public ones.
"""

from .auth import HMAC_KEY_BYTES, SECRET_KEY_PLACEHOLDER, AuthSettings
from .base import ConfigError
from .dataapi import (
    DataApiCollectionSettings,
    DataApiDatabaseSettings,
    DataApiSettings,
    DataApiSourceSettings,
)
from .loading import ENV_OVERRIDES, SETTINGS_KEY, get_settings, load_settings, read_config_file
from .media import MediaField, MediaSettings, is_media, media_fields
from .resources import (
    EVE_REGEX_URL,
    AdditionalLookupSettings,
    AggregationOptions,
    AggregationSettings,
    DatasourceSettings,
    HttpMethod,
    ResourceSettings,
    parse_sort_text,
)
from .server import (
    AdmissionSettings,
    CompressionSettings,
    CorsSettings,
    DocsSettings,
    GlobalRateLimitSettings,
    IdempotencySettings,
    RateLimitSettings,
    SecurityHeaderSettings,
    ServerSettings,
    SlowClientSettings,
    StreamSettings,
    parse_rate,
)
from .services import (
    InstanceSettings,
    MetricsSettings,
    MongoDBSettings,
    RedisSettings,
    TracingSettings,
    split_bind,
)
from .settings import RESERVED_NAMES, Settings

__all__ = [
    "ENV_OVERRIDES",
    "EVE_REGEX_URL",
    "HMAC_KEY_BYTES",
    "RESERVED_NAMES",
    "SECRET_KEY_PLACEHOLDER",
    "SETTINGS_KEY",
    "AdditionalLookupSettings",
    "AdmissionSettings",
    "AggregationOptions",
    "AggregationSettings",
    "AuthSettings",
    "CompressionSettings",
    "ConfigError",
    "CorsSettings",
    "DataApiCollectionSettings",
    "DataApiDatabaseSettings",
    "DataApiSettings",
    "DataApiSourceSettings",
    "DatasourceSettings",
    "DocsSettings",
    "GlobalRateLimitSettings",
    "HttpMethod",
    "IdempotencySettings",
    "InstanceSettings",
    "MediaField",
    "MediaSettings",
    "MetricsSettings",
    "MongoDBSettings",
    "RateLimitSettings",
    "RedisSettings",
    "ResourceSettings",
    "SecurityHeaderSettings",
    "ServerSettings",
    "Settings",
    "SlowClientSettings",
    "StreamSettings",
    "TracingSettings",
    "get_settings",
    "is_media",
    "load_settings",
    "media_fields",
    "parse_rate",
    "parse_sort_text",
    "read_config_file",
    "split_bind",
]
