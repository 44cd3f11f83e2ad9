"""Resources: collections declared in the config, and what each REST verb does
to their documents."""

from .access import UNRESTRICTED, Access
from .endpoints import (
    BLUEPRINT,
    STREAM_SEGMENT,
    collection_endpoint,
    item_endpoint,
    stream_endpoint,
)
from .registry import EXTENSION_KEY, Resources, get_resources
from .service import Page, Resource, ResourceService

__all__ = [
    "BLUEPRINT",
    "EXTENSION_KEY",
    "STREAM_SEGMENT",
    "UNRESTRICTED",
    "Access",
    "Page",
    "Resource",
    "ResourceService",
    "Resources",
    "collection_endpoint",
    "get_resources",
    "item_endpoint",
    "stream_endpoint",
]
