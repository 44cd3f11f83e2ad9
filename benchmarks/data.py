"""The benchmark's data: the same documents for every server, every phase.

The seed documents are inserted once through Shoal's own bulk POST (so they
are stored exactly as Shoal stores them, ETags and dates included; Eve reads
them as its own), then kept as a snapshot that ``reset`` puts back before each
phase and after each write scenario. ``Workload`` holds them with the PATCH
pool and writes the files the wrk scripts read.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pymongo import MongoClient

Document = dict[str, Any]

COLLECTION = "items"
#: Documents a write scenario creates carry this title, so they can be removed.
POSTED_TITLE = "posted by wrk"
POOL_TITLE = "patched by wrk"

_WORDS = [
    "red",
    "green",
    "blue",
    "steel",
    "oak",
    "linen",
    "glass",
    "paper",
    "wool",
    "cotton",
    "brass",
    "clay",
    "small",
    "large",
    "light",
    "heavy",
    "new",
    "classic",
]


def make_documents(count: int, *, seed: int = 7, title: str | None = None) -> list[Document]:
    """``count`` small documents valid for benchmarks/shoal.yaml's ``items``."""
    rng = random.Random(seed)
    documents = []
    for index in range(count):
        letters = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ", k=3))
        documents.append(
            {
                "title": title or f"Item {index:05d}",
                "sku": f"{letters}-{index % 100_000:05d}",
                "qty": rng.randrange(0, 500),
                "price": round(rng.uniform(1, 200), 2),
                "tags": rng.sample(_WORDS, rng.randrange(1, 4)),
                "in_stock": rng.random() < 0.8,
            }
        )
    return documents


def post_documents(
    base_url: str, documents: Sequence[Document], batch: int = 500, resource: str = COLLECTION
) -> None:
    """Insert through Shoal's bulk POST ``/<resource>`` (201 or an error)."""
    for start in range(0, len(documents), batch):
        body = json.dumps(list(documents[start : start + batch])).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback URL the harness built
            f"{base_url}/{resource}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            if response.status != 201:
                raise RuntimeError(f"bulk POST answered {response.status}")


def get_each(url_prefix: str, ids: Sequence[Any], threads: int = 8) -> None:
    """GET ``<url_prefix><id>`` once for each id (e.g. to fill a response cache
    before it is measured); fails unless every answer is a 200."""

    def get(item: Any) -> None:
        with urllib.request.urlopen(f"{url_prefix}{item}", timeout=30) as response:  # noqa: S310
            if response.status != 200:
                raise RuntimeError(f"GET {url_prefix}{item} answered {response.status}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(get, ids))


class Dataset:
    """The benchmark database, reached directly with PyMongo."""

    def __init__(self, uri: str, database: str) -> None:
        self.client: MongoClient[Document] = MongoClient(uri, tz_aware=True)
        self.collection = self.client[database][COLLECTION]
        self.snapshot: list[Document] = []

    def close(self) -> None:
        self.client.close()

    def take_snapshot(self) -> list[Document]:
        self.snapshot = list(self.collection.find({}).sort("_id", 1))
        return self.snapshot

    def reset(self) -> None:
        """Back to the snapshot: written and patched documents go, seeds come back."""
        self.collection.delete_many({})
        if self.snapshot:
            self.collection.insert_many([dict(document) for document in self.snapshot])

    def remove_posted(self) -> int:
        return self.collection.delete_many({"title": POSTED_TITLE}).deleted_count

    def count(self) -> int:
        return self.collection.count_documents({})

    def current(self, ids: Sequence[Any]) -> list[tuple[Any, str]]:
        """(id, current ETag) of the given documents, in the given order."""
        etags = {
            document["_id"]: document["_etag"]
            for document in self.collection.find({"_id": {"$in": list(ids)}}, {"_etag": 1})
        }
        return [(item, etags[item]) for item in ids if item in etags]

    def titled(self, title: str) -> list[tuple[Any, str]]:
        found = self.collection.find({"title": title}, {"_etag": 1}).sort("_id", 1)
        return [(document["_id"], document["_etag"]) for document in found]


def write_docs_file(path: Path, documents: Sequence[tuple[Any, str]]) -> Path:
    """One ``<id> <etag>`` line per document, as the wrk scripts read them."""
    path.write_text("".join(f"{item} {etag}\n" for item, etag in documents))
    return path


class Workload:
    """The seed documents and the PATCH pool, and the files wrk's scripts read.

    ``seed`` fills them once, through a running Shoal; ``reset`` puts the seed
    back; ``insert_pool`` and ``pool_file`` prepare each PATCH scenario.
    """

    def __init__(self, dataset: Dataset, workdir: Path, *, documents: int, patch_pool: int) -> None:
        self.dataset = dataset
        self.documents = documents
        self.patch_pool = patch_pool
        self.ids_file = workdir / "ids.txt"
        self.pool_path = workdir / "pool.txt"
        self.pool: list[Document] = []  # inserted afresh before each PATCH scenario
        self.pool_etags: dict[Any, str] = {}
        self.pool_size = 0  # documents in the last pool file

    def seed(self, shoal_url: str) -> str:
        """Insert the documents through Shoal once, and keep them as the snapshot."""
        started = time.monotonic()
        post_documents(shoal_url, make_documents(self.documents))
        seeds = self.dataset.take_snapshot()
        write_docs_file(self.ids_file, [(d["_id"], d["_etag"]) for d in seeds])
        post_documents(shoal_url, make_documents(self.patch_pool, seed=11, title=POOL_TITLE))
        self.pool = list(self.dataset.collection.find({"title": POOL_TITLE}).sort("_id", 1))
        self.pool_etags = {d["_id"]: d["_etag"] for d in self.pool}
        self.dataset.reset()
        return (
            f"seeded {len(seeds)} documents and a PATCH pool of {len(self.pool)} through "
            f"Shoal's bulk POST in {time.monotonic() - started:.1f}s"
        )

    def reset(self) -> None:
        self.dataset.reset()

    def read_each(self, url_prefix: str) -> None:
        """GET every seed document once through ``url_prefix`` (``get_each``)."""
        get_each(url_prefix, [document["_id"] for document in self.dataset.snapshot])

    def remove_posted(self) -> int:
        return self.dataset.remove_posted()

    def insert_pool(self) -> None:
        self.dataset.collection.delete_many({"title": POOL_TITLE})
        self.dataset.collection.insert_many([dict(d) for d in self.pool])

    def pool_file(self, *, fresh_only: bool) -> Path:
        """The PATCH pool as it is now: untouched documents first, then the others
        (with their current ETags) unless ``fresh_only``."""
        current = self.dataset.current([d["_id"] for d in self.pool])
        fresh = [(i, etag) for i, etag in current if self.pool_etags.get(i) == etag]
        patched = [(i, etag) for i, etag in current if self.pool_etags.get(i) != etag]
        chosen = fresh if fresh_only else fresh + patched
        self.pool_size = len(chosen)
        return write_docs_file(self.pool_path, chosen)
