"""The names and URL rules of the routes that serve resources
(``request.endpoint``, ``request.url_rule``), which the policies in front of
the views look up."""

from __future__ import annotations

#: The blueprint that serves every resource (api/resources.py).
BLUEPRINT = "resources"


def collection_rule(path: str) -> str:
    """The URL rule of a resource served at ``path`` (``Resource.path``): the
    route template its requests are labelled with in the metrics."""
    return f"/{path}"


def item_rule(path: str) -> str:
    """The URL rule of one item of a resource served at ``path``."""
    return f"/{path}/<item_id>"


def collection_endpoint(name: str, *, qualified: bool = True) -> str:
    """The endpoint of ``/<name>`` (``request.endpoint``; unqualified: inside
    the blueprint)."""
    return f"{BLUEPRINT}.{name}:collection" if qualified else f"{name}:collection"


def item_endpoint(name: str, *, qualified: bool = True) -> str:
    """The endpoint of ``/<name>/<id>``."""
    return f"{BLUEPRINT}.{name}:item" if qualified else f"{name}:item"


def lookup_endpoint(name: str, *, qualified: bool = True) -> str:
    """The endpoint of ``/<name>/by-<field>/<value>`` (``additional_lookup``)."""
    return f"{BLUEPRINT}.{name}:lookup" if qualified else f"{name}:lookup"


def resource_endpoints(name: str) -> tuple[str, ...]:
    """Every endpoint that serves documents of the resource ``name`` (qualified)."""
    return (collection_endpoint(name), item_endpoint(name), lookup_endpoint(name))


#: The last segment of a stream's path: ``/<name>/_stream``, ``/<name>/<id>/_stream``.
STREAM_SEGMENT = "_stream"


def stream_endpoint(name: str, *, item: bool, qualified: bool = True) -> str:
    """The endpoint of a resource's change stream (of one item, or of all)."""
    endpoint = f"{name}:{'item_stream' if item else 'stream'}"
    return f"{BLUEPRINT}.{endpoint}" if qualified else endpoint
