"""Resources: collections declared in the config, and what each REST verb does
to their documents."""

from .access import UNRESTRICTED, Access
from .endpoints import BLUEPRINT, STREAM_SEGMENT
from .hooks import Hooks, shoal_hooks
from .model import Page, Resource, SoftDeleted
from .registry import EXTENSION_KEY, Resources, build_resources, get_resources, readers
from .routes import Route, RouteTable
from .service import ResourceService

__all__ = [
    "BLUEPRINT",
    "EXTENSION_KEY",
    "STREAM_SEGMENT",
    "UNRESTRICTED",
    "Access",
    "Hooks",
    "Page",
    "Resource",
    "ResourceService",
    "Resources",
    "Route",
    "RouteTable",
    "SoftDeleted",
    "build_resources",
    "get_resources",
    "readers",
    "shoal_hooks",
]
