"""The Atlas Data API v1 drop-in: ``POST /action/<action>`` (see ``service.DataApi``)."""

from .endpoints import BLUEPRINT, Route, action_endpoints, hosted_prefix, routes
from .formats import EJSON_MEDIA_TYPE, JSON_MEDIA_TYPE, read_body, render_ejson, render_json
from .requests import (
    ACTIONS,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Action,
    ActionRequest,
    Namespace,
    parse_request,
    unknown_action,
)
from .service import EXTENSION_KEY, DataApi, Result

__all__ = [
    "ACTIONS",
    "BLUEPRINT",
    "DEFAULT_LIMIT",
    "EJSON_MEDIA_TYPE",
    "EXTENSION_KEY",
    "JSON_MEDIA_TYPE",
    "MAX_LIMIT",
    "Action",
    "ActionRequest",
    "DataApi",
    "Namespace",
    "Result",
    "Route",
    "action_endpoints",
    "hosted_prefix",
    "parse_request",
    "read_body",
    "render_ejson",
    "render_json",
    "routes",
    "unknown_action",
]
