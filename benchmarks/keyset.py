"""The keyset-pagination phase's data: a large collection of its own, and the
cursor of a deep page without walking every page before it.

``seed`` inserts the documents through Shoal's own bulk POST (``/pages``, in
batches), so they are stored exactly as Shoal stores them. ``deep_cursor``
signs the cursor of page N the way the server signs ``_links.next``: with
Shoal's own ``CursorCodec`` under the server's secret key, bound to the query
by ``query_digest`` (``shoal.resources.cursors``; ``ResourceService.find``
calls them the same way). ``check_cursors`` asks the server for the first page
by cursor and compares its ``next`` cursor with the one made here, then reads
the deep page both ways and compares the documents, so a cursor that is not
the server's own is an error before anything is measured. ``database_ms``
times the queries of those pages on the database alone (PyMongo, no Shoal).
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bson import ObjectId
from pymongo import MongoClient

from shoal.resources.cursors import CursorCodec, after, keyset_sort, query_digest

from .data import make_documents, post_documents

RESOURCE = "pages"
#: Documents per bulk POST while seeding (well under max_body_bytes, 1 MiB).
SEED_BATCH = 2000


class CursorMismatch(RuntimeError):
    """The cursor made here is not the one the server makes: the phase would
    measure something else than paging by cursor."""


def page_path(*, max_results: int, page: int | None = None, cursor: str | None = None) -> str:
    """``/pages`` for one page: by number, or by cursor ("" for the first)."""
    if cursor is not None:
        return f"/{RESOURCE}?max_results={max_results}&cursor={cursor}"
    return f"/{RESOURCE}?max_results={max_results}&page={page or 1}"


def deep_cursor(secret_key: str, ids: Sequence[Any], page: int, max_results: int) -> str:
    """The cursor of page ``page`` of ``GET /pages?cursor=`` (no where, sort or
    projection: the server sorts by ``_id``), ``ids`` being every document's id
    in ascending order: the last id of the page before, signed."""
    if not 1 < page <= (len(ids) + max_results - 1) // max_results:
        raise ValueError(f"page {page} is not a page after the first of {len(ids)} documents")
    sort = keyset_sort(None)
    digest = query_digest(RESOURCE, {}, sort, None)
    return CursorCodec(secret_key).encode([ids[(page - 1) * max_results - 1]], digest)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback URL
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _ids(answer: dict[str, Any]) -> list[str]:
    return [str(item["_id"]) for item in answer.get("_items", [])]


def check_cursors(
    base_url: str, secret_key: str, ids: Sequence[Any], page: int, max_results: int
) -> None:
    """The server's own ``next`` cursor after page 1 is the one ``deep_cursor``
    makes for page 2, and page ``page`` by cursor holds the documents of page
    ``page`` by number; CursorMismatch otherwise."""
    first = _get(base_url + page_path(max_results=max_results, cursor=""))
    href = first.get("_links", {}).get("next", {}).get("href", "")
    served = parse_qs(urlsplit(href).query).get("cursor", [""])[0]
    made = deep_cursor(secret_key, ids, 2, max_results)
    if served != made:
        raise CursorMismatch(f"the server's cursor of page 2 is {served!r}, not {made!r}")
    cursor = deep_cursor(secret_key, ids, page, max_results)
    by_cursor = _ids(_get(base_url + page_path(max_results=max_results, cursor=cursor)))
    by_page = _ids(_get(base_url + page_path(max_results=max_results, page=page)))
    if not by_cursor or by_cursor != by_page:
        raise CursorMismatch(
            f"page {page} by cursor holds {len(by_cursor)} documents that differ from "
            f"the {len(by_page)} of page {page} by number"
        )


def seed(base_url: str, mongodb_uri: str, database: str, count: int) -> tuple[list[ObjectId], str]:
    """Insert ``count`` documents through Shoal's bulk POST ``/pages``; every id in
    ascending order, and a line saying how long it took."""
    started = time.monotonic()
    post_documents(base_url, make_documents(count, seed=23), batch=SEED_BATCH, resource=RESOURCE)
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        collection = client[database][RESOURCE]
        ids = [document["_id"] for document in collection.find({}, {"_id": 1}).sort("_id", 1)]
    finally:
        client.close()
    if len(ids) != count:
        raise RuntimeError(f"/{RESOURCE} holds {len(ids)} documents after seeding {count}")
    took = time.monotonic() - started
    return ids, f"seeded {count:,} documents through Shoal's bulk POST /{RESOURCE} in {took:.1f}s"


def database_ms(
    mongodb_uri: str, database: str, ids: Sequence[Any], page: int, max_results: int
) -> dict[str, float]:
    """The median time (ms, of 3) the database alone takes for the first page, the
    deep page by skip, and the deep page by cursor: the filter the server builds
    (``cursors.after``), sorted by ``_id``, one document more than the page."""
    sort = keyset_sort(None)
    beyond = after(sort, [ids[(page - 1) * max_results - 1]])
    queries = {
        "first": ({}, 0),
        "skip": ({}, (page - 1) * max_results),
        "cursor": (beyond, 0),
    }
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    times: dict[str, float] = {}
    try:
        collection = client[database][RESOURCE]
        for name, (query, skip) in queries.items():
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                list(collection.find(query).sort(sort).skip(skip).limit(max_results + 1))
                runs.append(time.perf_counter() - started)
            times[name] = round(1000 * statistics.median(runs), 2)
    finally:
        client.close()
    return times


def drop(mongodb_uri: str, database: str) -> None:
    """Remove the phase's collection (the other phases never read it)."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        client[database].drop_collection(RESOURCE)
    finally:
        client.close()
