"""Eve's wire format: item and list envelopes, links, write acknowledgements.

Links are relative, as Eve renders them (``books/<id>``, ``books?page=2``); a
sub-resource's carry its parent's id (``people/<id>/invoices/<id>``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from bson import ObjectId

from ..schemas import ITEMS
from .documents import Document, etag_of
from .model import DELETED, DELETED_MESSAGE, Page, Resource
from .query import ListQuery
from .versioning import LATEST_VERSION, VERSION, version_of


def _base(resource: Resource, base: str | None) -> str:
    return resource.path if base is None else base


def item_href(resource: Resource, item_id: Any, base: str | None = None) -> str:
    # Ids chosen by clients may hold anything: a link is a URL.
    return f"{_base(resource, base)}/{quote(str(item_id), safe='')}"


def item_links(resource: Resource, item_id: Any, base: str | None = None) -> dict[str, Any]:
    return {"self": {"title": resource.item_title, "href": item_href(resource, item_id, base)}}


def _related(resource: Resource, document: Document) -> dict[str, Any]:
    """Eve's ``_links.related``: a link per reference of a top-level field."""
    related: dict[str, Any] = {}
    for relation in resource.fields.relations.values():
        path = relation.path
        if not (len(path) == 1 or (len(path) == 2 and path[1] == ITEMS)):
            continue
        target = resource.catalog[relation.resource]
        field = relation.field or target.ids.field
        if target.settings.url_variables:
            continue  # a sub-resource's URL needs the parent's id, which a reference lacks
        lookup = target.settings.additional_lookup
        if field == target.ids.field:
            kind, variable = "item", "item_id"
        elif lookup is not None and lookup.field == field:
            kind, variable = "lookup", "value"
        else:
            continue
        value = document.get(path[0])
        if value is None or value == []:
            continue

        if relation.many:
            if isinstance(value, list):
                related[path[0]] = [
                    _link(target, kind, variable, field, item) for item in value if item is not None
                ]
        elif not isinstance(value, list):
            related[path[0]] = _link(target, kind, variable, field, value)
    return related


def _link(target: Resource, kind: str, variable: str, field: str, reference: Any) -> Document:
    """A link to the target's item (or lookup) route naming ``reference``."""
    if isinstance(reference, Mapping):  # embedded
        reference = reference.get(field)
    return {"title": target.item_title, "href": target.link(kind, {variable: reference})}


def with_features(resource: Resource, document: Document) -> Document:
    """The fields soft delete and versioning add to what a client reads, and
    the ETag of a document stored without one."""
    if "_etag" not in document:
        document["_etag"] = etag_of(document, resource.etag_key)
    if resource.settings.soft_delete:
        document.setdefault(DELETED, False)
    if resource.settings.versioning:
        document.setdefault(VERSION, version_of(document))
        document.setdefault(LATEST_VERSION, document[VERSION])
    return document


def render_item(resource: Resource, document: Document, base: str | None = None) -> Document:
    """A stored document as a client sees it: with its ``_links``."""
    rendered = with_features(resource, dict(document))
    rendered["_links"] = item_links(resource, document.get(resource.ids.field), base)
    related = _related(resource, document)
    if related:
        rendered["_links"]["related"] = related
    for name in resource.media:
        if isinstance(rendered.get(name), ObjectId):  # a file: its URL (resources/media.py)
            href = rendered["_links"]["self"]["href"]
            rendered[name] = f"/{href.lstrip('/')}/{quote(name, safe='')}"
    return rendered


def render_single(resource: Resource, document: Document, base: str | None = None) -> Document:
    """An item fetched on its own URL: Eve adds ``parent`` and ``collection`` links."""
    rendered = render_item(resource, document, base)
    rendered["_links"]["parent"] = {"title": "home", "href": "/"}
    rendered["_links"]["collection"] = {"title": resource.name, "href": _base(resource, base)}
    return rendered


def render_deleted(resource: Resource, document: Document, base: str | None = None) -> Document:
    """A soft-deleted item: Eve's 404 shows it, with the error."""
    rendered = render_item(resource, document, base)
    rendered["_status"] = "ERR"
    rendered["_error"] = {"code": 404, "message": DELETED_MESSAGE}
    return rendered


def render_version(
    resource: Resource, version: Document, base: str | None = None, *, listed: bool = False
) -> Document:
    """One version (``?version=N``): links to itself, the item and all versions
    (in a list of versions, to itself only, as in Eve)."""
    rendered = render_item(resource, version, base)
    href = item_href(resource, version.get(resource.ids.field), base)
    rendered["_links"]["self"]["href"] = f"{href}?version={version[VERSION]}"
    if not listed:
        rendered["_links"]["parent"] = {"title": resource.item_title, "href": href}
        rendered["_links"]["collection"] = {"title": resource.name, "href": f"{href}?version=all"}
    return rendered


def last_modified(page: Page) -> Any:
    """The newest ``_updated`` of a page (None for an empty page)."""
    dates = [
        document["_updated"]
        for document in page.items
        if isinstance(document.get("_updated"), datetime)
    ]
    return max(dates) if dates else None


def write_ack(resource: Resource, document: Document, base: str | None = None) -> Document:
    """What POST, PATCH and PUT answer for one document."""
    ack: Document = {"_id": document["_id"]}
    if resource.ids.field != "_id":
        ack[resource.ids.field] = document.get(resource.ids.field)
    ack.update(
        {
            "_created": document["_created"],
            "_updated": document["_updated"],
            "_etag": document["_etag"],
        }
    )
    if resource.settings.soft_delete:
        ack[DELETED] = document.get(DELETED, False)
    if resource.settings.versioning:
        ack[VERSION] = version_of(document)
        ack[LATEST_VERSION] = ack[VERSION]
    ack["_links"] = item_links(resource, document.get(resource.ids.field), base)
    related = _related(resource, document)
    if related:
        ack["_links"]["related"] = related
    ack["_status"] = "OK"
    return ack


def _page_href(path: str, args: Mapping[str, str], page: int) -> str:
    kept = [(key, value) for key, value in args.items() if key != "page"]
    if page > 1:
        kept.append(("page", str(page)))
    query = urlencode(kept)
    return f"{path}?{query}" if query else path


def _cursor_href(path: str, args: Mapping[str, str], cursor: str) -> str:
    kept = [(key, value) for key, value in args.items() if key != "cursor"]
    kept.append(("cursor", cursor))
    return f"{path}?{urlencode(kept)}"


def page_links(
    path: str, title: str, page: Page, query: ListQuery, args: Mapping[str, str]
) -> dict[str, Any]:
    """A list's ``_links``: parent, self, and next, last and prev as they apply."""
    links: dict[str, Any] = {
        "parent": {"title": "home", "href": "/"},
        "self": {"title": title, "href": _page_href(path, args, query.page)},
    }
    if not query.paginated:
        return links
    if page.has_next:
        links["next"] = {"title": "next page", "href": _page_href(path, args, query.page + 1)}
    if page.total is not None and page.total > 0:
        last = max(1, -(-page.total // query.max_results))
        if query.page < last:
            links["last"] = {"title": "last page", "href": _page_href(path, args, last)}
    if query.page > 1:
        links["prev"] = {"title": "previous page", "href": _page_href(path, args, query.page - 1)}
    return links


def _envelope(items: list[Document], links: Document, page: Page, query: ListQuery) -> Document:
    envelope: Document = {"_items": items, "_links": links}
    if query.paginated:
        meta: dict[str, Any] = {"page": query.page, "max_results": query.max_results}
        if page.total is not None:
            meta["total"] = page.total
        envelope["_meta"] = meta
    return envelope


def render_page(
    resource: Resource,
    page: Page,
    query: ListQuery,
    args: Mapping[str, str],
    base: str | None = None,
) -> Document:
    """The list envelope: ``_items``, ``_meta``, ``_links`` (no ``_meta``
    where pagination is off, as in Eve)."""
    path = _base(resource, base)
    items = [render_item(resource, document, path) for document in page.items]
    if query.cursor is not None:
        return _cursor_page(path, resource.name, items, page, query, args)
    return _envelope(items, page_links(path, resource.name, page, query, args), page, query)


def render_aggregation(
    resource: Resource, page: Page, query: ListQuery, args: Mapping[str, str]
) -> Document:
    """An aggregation's page: its documents as the pipeline made them."""
    links = page_links(resource.path, resource.name, page, query, args)
    return _envelope(list(page.items), links, page, query)


def render_versions(
    resource: Resource,
    item_id: Any,
    versions: list[Document],
    page: Page,
    query: ListQuery,
    args: Mapping[str, str],
    base: str | None = None,
) -> Document:
    """``?version=all`` or ``diffs``: a page of versions, oldest first."""
    item = item_href(resource, item_id, base)
    links = page_links(item, resource.item_title, page, query, args)
    links["parent"] = {"title": resource.name, "href": _base(resource, base)}
    links["collection"] = {"title": resource.item_title, "href": item}
    return _envelope(versions, links, page, query)


def _cursor_page(
    path: str,
    title: str,
    items: list[Document],
    page: Page,
    query: ListQuery,
    args: Mapping[str, str],
) -> Document:
    """A page read by cursor: ``next`` carries the next page's cursor; there is
    no page number, ``prev`` or ``last``."""
    links: dict[str, Any] = {
        "parent": {"title": "home", "href": "/"},
        "self": {"title": title, "href": _cursor_href(path, args, query.cursor or "")},
    }
    if page.next_cursor is not None:
        href = _cursor_href(path, args, page.next_cursor)
        links["next"] = {"title": "next page", "href": href}
    meta: dict[str, Any] = {"max_results": query.max_results}
    if page.total is not None:
        meta["total"] = page.total
    return {"_items": items, "_links": links, "_meta": meta}


def page_etag(resource: Resource, page: Page, query: ListQuery) -> str:
    """An ETag for a list response: from its items' ids and ETags and its meta."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"{query.page}:{query.max_results}:{page.total}:{page.has_next}".encode())
    digest.update(f"{query.cursor}:{page.next_cursor}".encode())
    for document in page.items:
        digest.update(f"|{document.get('_id')}:{etag_of(document, resource.etag_key)}".encode())
    if query.projection:
        digest.update(repr(sorted(query.projection.items())).encode())
    return digest.hexdigest()


def item_etag(
    resource: Resource,
    document: Document,
    projection: Mapping[str, int] | None,
    embedded: list[Document] | None,
) -> str:
    """The ETag of an item's answer: its document's ETag, another for another
    projection (another representation), and one that changes with the
    documents embedded in it."""
    etag = embedded_etag(etag_of(document, resource.etag_key), [document], embedded)
    if not projection:
        return etag
    marked = f"{etag}|{sorted(projection.items())}"
    return hashlib.sha1(marked.encode(), usedforsecurity=False).hexdigest()


def embedded_etag(etag: str, documents: list[Document], embedded: Any) -> str:
    """``etag``, changed by what is embedded in ``documents`` (nothing: as it is)."""
    if not embedded:
        return etag
    marked = f"{etag}|{content_etag(documents)}"
    return hashlib.sha1(marked.encode(), usedforsecurity=False).hexdigest()


def content_etag(body: Any) -> str:
    """An ETag for an answer computed from documents without ETags (an
    aggregation's, a page of versions): its JSON."""
    encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha1(encoded, usedforsecurity=False).hexdigest()
