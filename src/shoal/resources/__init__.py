"""Resources: collections declared in the config, and what each REST verb does
to their documents."""

from .access import UNRESTRICTED, Access
from .endpoints import (
    BLUEPRINT,
    STREAM_SEGMENT,
    collection_endpoint,
    collection_rule,
    item_endpoint,
    item_rule,
    lookup_endpoint,
    resource_endpoints,
    stream_endpoint,
)
from .hooks import Hooks, shoal_hooks
from .registry import EXTENSION_KEY, Resources, build_resources, get_resources, readers
from .service import Page, Resource, ResourceService, SoftDeleted

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
    "SoftDeleted",
    "build_resources",
    "collection_endpoint",
    "collection_rule",
    "get_resources",
    "item_endpoint",
    "item_rule",
    "lookup_endpoint",
    "readers",
    "resource_endpoints",
    "shoal_hooks",
    "stream_endpoint",
]
