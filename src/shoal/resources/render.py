"""Eve's wire format: item and list envelopes, links, write acknowledgements.

Links are relative, as Eve renders them (``books/<id>``, ``books?page=2``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from .documents import Document
from .query import ListQuery
from .service import Page, Resource


def item_href(resource: Resource, item_id: Any) -> str:
    return f"{resource.name}/{item_id}"


def item_links(resource: Resource, item_id: Any) -> dict[str, Any]:
    return {"self": {"title": resource.item_title, "href": item_href(resource, item_id)}}


def render_item(resource: Resource, document: Document) -> Document:
    """A stored document as a client sees it: with its ``_links``."""
    rendered = dict(document)
    rendered["_links"] = item_links(resource, document["_id"])
    return rendered


def render_single(resource: Resource, document: Document) -> Document:
    """An item fetched on its own URL: Eve adds ``parent`` and ``collection`` links."""
    rendered = render_item(resource, document)
    rendered["_links"]["parent"] = {"title": "home", "href": "/"}
    rendered["_links"]["collection"] = {"title": resource.name, "href": resource.name}
    return rendered


def last_modified(page: Page) -> Any:
    """The newest ``_updated`` of a page (None for an empty page)."""
    dates = [
        document["_updated"]
        for document in page.items
        if isinstance(document.get("_updated"), datetime)
    ]
    return max(dates) if dates else None


def write_ack(resource: Resource, document: Document) -> Document:
    """What POST, PATCH and PUT answer for one document."""
    return {
        "_id": document["_id"],
        "_created": document["_created"],
        "_updated": document["_updated"],
        "_etag": document["_etag"],
        "_links": item_links(resource, document["_id"]),
        "_status": "OK",
    }


def _page_href(resource: Resource, args: Mapping[str, str], page: int) -> str:
    kept = [(key, value) for key, value in args.items() if key != "page"]
    if page > 1:
        kept.append(("page", str(page)))
    query = urlencode(kept)
    return f"{resource.name}?{query}" if query else resource.name


def _cursor_href(resource: Resource, args: Mapping[str, str], cursor: str) -> str:
    kept = [(key, value) for key, value in args.items() if key != "cursor"]
    kept.append(("cursor", cursor))
    return f"{resource.name}?{urlencode(kept)}"


def render_page(
    resource: Resource, page: Page, query: ListQuery, args: Mapping[str, str]
) -> Document:
    """The list envelope: ``_items``, ``_meta``, ``_links``."""
    if query.cursor is not None:
        return _render_cursor_page(resource, page, query, args)
    links: dict[str, Any] = {
        "parent": {"title": "home", "href": "/"},
        "self": {"title": resource.name, "href": _page_href(resource, args, query.page)},
    }
    if page.has_next:
        links["next"] = {"title": "next page", "href": _page_href(resource, args, query.page + 1)}
    if page.total is not None and page.total > 0:
        last = max(1, -(-page.total // query.max_results))
        if query.page < last:
            links["last"] = {"title": "last page", "href": _page_href(resource, args, last)}
    if query.page > 1:
        links["prev"] = {
            "title": "previous page",
            "href": _page_href(resource, args, query.page - 1),
        }
    meta: dict[str, Any] = {"page": query.page, "max_results": query.max_results}
    if page.total is not None:
        meta["total"] = page.total
    return {
        "_items": [render_item(resource, document) for document in page.items],
        "_links": links,
        "_meta": meta,
    }


def _render_cursor_page(
    resource: Resource, page: Page, query: ListQuery, args: Mapping[str, str]
) -> Document:
    """A page read by cursor: ``next`` carries the next page's cursor; there is
    no page number, ``prev`` or ``last``."""
    links: dict[str, Any] = {
        "parent": {"title": "home", "href": "/"},
        "self": {"title": resource.name, "href": _cursor_href(resource, args, query.cursor or "")},
    }
    if page.next_cursor is not None:
        href = _cursor_href(resource, args, page.next_cursor)
        links["next"] = {"title": "next page", "href": href}
    meta: dict[str, Any] = {"max_results": query.max_results}
    if page.total is not None:
        meta["total"] = page.total
    return {
        "_items": [render_item(resource, document) for document in page.items],
        "_links": links,
        "_meta": meta,
    }


def page_etag(page: Page, query: ListQuery) -> str:
    """An ETag for a list response: from its items' ids and ETags and its meta."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"{query.page}:{query.max_results}:{page.total}:{page.has_next}".encode())
    digest.update(f"{query.cursor}:{page.next_cursor}".encode())
    for document in page.items:
        digest.update(f"|{document.get('_id')}:{document.get('_etag')}".encode())
    if query.projection:
        digest.update(repr(sorted(query.projection.items())).encode())
    return digest.hexdigest()
