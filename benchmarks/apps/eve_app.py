"""Eve 2.3 serving the benchmark's ``items`` resource, for gunicorn::

    BENCH_EVE_MONGO_URI=mongodb://127.0.0.1:27017/bench \
        gunicorn --workers 2 benchmarks.apps.eve_app:app

The schema is ``benchmarks/shoal.yaml``'s in Cerberus terms, and the settings
match Shoal's: the same collection, If-Match required on writes, pages of 25
(counted), public reads and writes.

Under gunicorn's gevent workers (``-k gevent``, with ``BENCH_EVE_GEVENT=1``), the
worker monkey-patches the standard library before it imports this module; the
module refuses to load otherwise, since PyMongo imported before the patch would
block the whole worker on each database round trip.
"""

from __future__ import annotations

import os
from typing import Any

from eve import Eve  # type: ignore[import-untyped]

#: ``items`` of benchmarks/shoal.yaml, in Cerberus rules.
ITEMS_SCHEMA: dict[str, Any] = {
    "title": {"type": "string", "required": True, "minlength": 1, "maxlength": 200},
    "sku": {"type": "string", "regex": "^[A-Z]{3}-[0-9]{5}$"},
    "qty": {"type": "integer", "min": 0},
    "price": {"type": "number", "min": 0},
    "tags": {"type": "list", "maxlength": 10, "schema": {"type": "string", "maxlength": 40}},
    "in_stock": {"type": "boolean"},
}


def settings(mongo_uri: str) -> dict[str, Any]:
    """Eve's settings for the benchmark; the database is the one ``mongo_uri`` names."""
    return {
        "MONGO_URI": mongo_uri,
        "DOMAIN": {
            "items": {
                "schema": ITEMS_SCHEMA,
                "resource_methods": ["GET", "POST"],
                "item_methods": ["GET", "PATCH"],
                "pagination_limit": 50,
            }
        },
        "IF_MATCH": True,
        "ENFORCE_IF_MATCH": True,
        "PAGINATION": True,
        "PAGINATION_LIMIT": 50,
        "PAGINATION_DEFAULT": 25,
        "BULK_ENABLED": True,
    }


def check_gevent_patched() -> None:
    """With BENCH_EVE_GEVENT=1: fail unless sockets and threads are gevent's."""
    if not os.environ.get("BENCH_EVE_GEVENT"):
        return
    from gevent import monkey  # type: ignore[import-untyped, unused-ignore]

    unpatched = [name for name in ("socket", "threading") if not monkey.is_module_patched(name)]
    if unpatched:
        raise RuntimeError(
            f"BENCH_EVE_GEVENT is set but {', '.join(unpatched)} is not monkey-patched: "
            "serve this app with gunicorn's gevent worker (-k gevent)"
        )


def create_app() -> Any:
    check_gevent_patched()
    return Eve(settings=settings(os.environ["BENCH_EVE_MONGO_URI"]))


app = create_app() if "BENCH_EVE_MONGO_URI" in os.environ else None
