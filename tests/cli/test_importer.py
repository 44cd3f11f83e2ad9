"""`shoal import`, as a user runs it: the console script against a MongoDB."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import Settings
from tests.utils.processes import run_shoal
from tests.utils.servers import EmbeddedStore, free_port
from tests.utils.settings import content_etag, example_resources, write_config

Document = dict[str, Any]


def write_lines(path: Path, lines: list[Any]) -> Path:
    """A JSONL file: dicts and lists are encoded, strings are written as they are."""
    text = [line if isinstance(line, str) else orjson.dumps(line).decode() for line in lines]
    path.write_text("".join(f"{line}\n" for line in text), encoding="utf-8")
    return path


def shoal_import(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> ImportRun:
    """`shoal import ARGS`, run in ``cwd`` as a user would, without SHOAL_* variables."""
    result = run_shoal(["import", *map(str, args)], cwd=cwd, env=env, timeout=120)
    return ImportRun(result.returncode, result.stdout, result.stderr)


@dataclass(frozen=True)
class ImportRun:
    status: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> str:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no summary; stderr: {self.stderr}"
        return lines[-1]

    def rejected(self) -> dict[int, str]:
        """Rejected line number → reason, as printed on stderr."""
        reasons = {}
        for line in self.stderr.splitlines():
            if line.startswith("line "):
                number, reason = line.removeprefix("line ").split(": ", 1)
                reasons[int(number)] = reason
        return reasons


@pytest.fixture
def database_name() -> str:
    return f"test_import_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def config(tmp_path: Path, mongodb_uri: str, database_name: str) -> Path:
    return write_config(tmp_path, mongodb={"uri": mongodb_uri, "database": database_name})


@pytest.fixture
def database(mongodb_uri: str, database_name: str) -> Iterator[Database[Document]]:
    client: MongoClient[Document] = MongoClient(mongodb_uri, tz_aware=True)
    try:
        yield client[database_name]
    finally:
        client.drop_database(database_name)
        client.close()


def by_title(database: Database[Document]) -> dict[str, Document]:
    return {document["title"]: document for document in database.books.find()}


# -- valid lines ------------------------------------------------------------


def test_valid_lines_are_imported_stamped_as_a_post_would_be(
    tmp_path: Path, config: Path, database: Database[Document]
) -> None:
    books = write_lines(
        tmp_path / "books.jsonl",
        [
            {"title": "Dune", "year": 1965, "isbn": "978-0441013593", "in_stock": False},
            "",
            {"title": "Emma", "tags": ["novel"]},
            "   ",
            {"title": "Ulysses", "author": "Joyce", "price": 12.5},
        ],
    )
    run = shoal_import("books", books, "--config", config, cwd=tmp_path)

    assert run.status == 0, run.stderr
    assert run.summary.startswith("imported 3, updated 0, rejected 0 of 3 lines in ")
    assert run.summary.endswith(" s")
    assert run.rejected() == {}
    # No TTY on stderr: no progress bar, only the summary.
    assert "%|" not in run.stderr
    # Lines without an _id get new ids, so the user is told a re-run duplicates them.
    assert "3 lines without an _id got new ids" in run.stderr

    stored = by_title(database)
    assert set(stored) == {"Dune", "Emma", "Ulysses"}
    for document in stored.values():
        assert isinstance(document["_id"], ObjectId)
        assert isinstance(document["_created"], datetime)
        assert document["_updated"] == document["_created"]
        assert document["_etag"] == content_etag(config, document)
    assert stored["Dune"]["in_stock"] is False
    assert stored["Emma"]["in_stock"] is True  # the schema's default
    assert stored["Emma"]["tags"] == ["novel"]


def test_invalid_lines_are_reported_with_line_numbers_and_reasons(
    tmp_path: Path, config: Path, database: Database[Document]
) -> None:
    books = write_lines(
        tmp_path / "books.jsonl",
        [
            {"title": "Good one"},
            '{"title": "truncated"',
            "[1, 2]",
            {"year": 1990},
            {"title": "Bad year", "year": -5, "colour": "red"},
            "",
            {"title": "Sneaky", "_etag": "abc"},
            {"title": "Bad id", "_id": "not-an-id"},
            {"title": "Huge number", "year": 2**64 - 1},
            {"title": "Good two", "year": 2001},
        ],
    )
    rejects = tmp_path / "rejects.jsonl"
    run = shoal_import("books", books, "--config", config, "--rejects", rejects, cwd=tmp_path)

    assert run.status == 1
    assert run.summary.startswith("imported 2, updated 0, rejected 7 of 9 lines")
    reasons = run.rejected()
    assert sorted(reasons) == [2, 3, 4, 5, 7, 8, 9]
    assert reasons[2].startswith("not valid JSON")
    assert reasons[3] == "not a JSON object (got an array)"
    assert reasons[4] == "title: required field"
    assert "year: " in reasons[5]
    assert "minimum" in reasons[5]
    assert "colour: unknown field" in reasons[5]
    assert reasons[7] == "_etag: field is read-only"
    assert reasons[8] == "_id: must be a 24-hex-character ObjectId"
    assert reasons[9].startswith("(document): cannot be stored in MongoDB")
    assert set(by_title(database)) == {"Good one", "Good two"}

    records = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [record["line"] for record in records] == [2, 3, 4, 5, 7, 8, 9]
    assert records[0]["text"] == '{"title": "truncated"'
    assert records[3]["issues"]["colour"] == "unknown field"
    assert records[3]["reason"] == reasons[5]


def test_only_the_first_fifty_rejects_are_shown_and_the_file_has_all(
    tmp_path: Path, config: Path, database: Database[Document]
) -> None:
    books = write_lines(tmp_path / "books.jsonl", [{"year": year} for year in range(60)])
    rejects = tmp_path / "rejects.jsonl"
    run = shoal_import("books", books, "--config", config, "--rejects", rejects, cwd=tmp_path)

    assert run.status == 1
    assert sorted(run.rejected()) == list(range(1, 51))
    assert f"... and 10 more rejected lines (all are in {rejects})" in run.stderr
    assert len(rejects.read_bytes().splitlines()) == 60
    assert run.summary.startswith("imported 0, updated 0, rejected 60 of 60 lines")


# -- re-runs, unique values, batches -----------------------------------------


@pytest.mark.engine_gap(ferretdb="recreate_indexes")
def test_rerunning_a_file_with_ids_replaces_instead_of_duplicating(
    tmp_path: Path, config: Path, database: Database[Document]
) -> None:
    ids = [str(ObjectId()) for _ in range(3)]
    lines: list[Document] = [
        {"_id": ids[0], "title": "Dune", "year": 1965},
        {"_id": ids[1], "title": "Emma"},
    ]
    lines.append({"_id": ids[2], "title": "Ulysses", "isbn": "978-0141182803"})
    books = write_lines(tmp_path / "books.jsonl", lines)

    first = shoal_import("books", books, "--config", config, cwd=tmp_path)
    assert first.status == 0, first.stderr
    assert first.summary.startswith("imported 3, updated 0, rejected 0 of 3 lines")
    assert "without an _id" not in first.stderr
    before = by_title(database)

    lines[0]["year"] = 1966
    write_lines(books, lines)
    second = shoal_import("books", books, "--config", config, cwd=tmp_path)

    assert second.status == 0, second.stderr
    assert second.summary.startswith("imported 0, updated 3, rejected 0 of 3 lines")
    assert database.books.count_documents({}) == 3
    after = by_title(database)
    assert {str(document["_id"]) for document in after.values()} == set(ids)
    assert after["Dune"]["year"] == 1966
    assert after["Dune"]["_etag"] == content_etag(config, after["Dune"]) != before["Dune"]["_etag"]
    assert after["Emma"]["_etag"] == before["Emma"]["_etag"]  # same content, same ETag
    assert after["Emma"]["_updated"] >= before["Emma"]["_updated"]


@pytest.mark.engine_gap(ferretdb=("recreate_indexes", "duplicate_key_details"))
def test_a_duplicate_unique_value_rejects_that_line_and_the_rest_goes_in(
    tmp_path: Path, config: Path, database: Database[Document]
) -> None:
    existing = write_lines(tmp_path / "existing.jsonl", [{"title": "Dune", "isbn": "0441013593"}])
    assert shoal_import("books", existing, "--config", config, cwd=tmp_path).status == 0

    books = write_lines(
        tmp_path / "books.jsonl",
        [
            {"title": "Emma", "isbn": "0141439580"},
            {"title": "Dune again", "isbn": "0441013593"},  # taken before the import
            {"title": "Ulysses", "isbn": "0141182806"},
            {"title": "Emma again", "isbn": "0141439580"},  # taken by line 1
            {"title": "Walden"},
        ],
    )
    run = shoal_import("books", books, "--config", config, cwd=tmp_path)

    assert run.status == 1
    assert run.summary.startswith("imported 3, updated 0, rejected 2 of 5 lines")
    reasons = run.rejected()
    assert sorted(reasons) == [2, 4]
    for reason in reasons.values():
        assert reason.startswith("duplicate key")
        assert "isbn" in reason
    assert set(by_title(database)) == {"Dune", "Emma", "Ulysses", "Walden"}


def test_batches_smaller_than_the_file_import_everything_and_map_lines(
    tmp_path: Path, config: Path, database: Database[Document]
) -> None:
    books = write_lines(
        tmp_path / "books.jsonl",
        [
            {"title": "One", "isbn": "1111111111"},
            {"title": "Two"},
            {"title": "Three", "year": "not a number"},
            {"title": "Four"},
            {"title": "Five", "isbn": "1111111111"},  # a duplicate, in the third batch
            {"title": "Six"},
        ],
    )
    # The config comes from SHOAL_CONFIG this time, as with `shoal serve`.
    run = shoal_import(
        "books", books, "--batch-size", "2", env={"SHOAL_CONFIG": str(config)}, cwd=tmp_path
    )

    assert run.status == 1
    assert run.summary.startswith("imported 4, updated 0, rejected 2 of 6 lines")
    assert sorted(run.rejected()) == [3, 5]
    assert run.rejected()[5].startswith("duplicate key")
    assert set(by_title(database)) == {"One", "Two", "Four", "Six"}


# -- usage and config errors -------------------------------------------------


def test_unknown_resource_exits_2_and_lists_the_resources(tmp_path: Path, config: Path) -> None:
    books = write_lines(tmp_path / "books.jsonl", [{"title": "Dune"}])
    run = shoal_import("novels", books, "--config", config, cwd=tmp_path)

    assert run.status == 2
    assert "no resource named 'novels'; resources: authors, books" in run.stderr
    assert run.stdout == ""


def test_missing_file_exits_2_with_a_clear_message(tmp_path: Path, config: Path) -> None:
    run = shoal_import("books", "nowhere.jsonl", "--config", config, cwd=tmp_path)

    assert run.status == 2
    assert "shoal import: nowhere.jsonl: no such file" in run.stderr
    assert run.stdout == ""


def test_bad_batch_size_exits_2(tmp_path: Path, config: Path) -> None:
    books = write_lines(tmp_path / "books.jsonl", [{"title": "Dune"}])
    run = shoal_import("books", books, "--config", config, "--batch-size", "0", cwd=tmp_path)

    assert run.status == 2
    assert "--batch-size: must be at least 1" in run.stderr


def test_production_without_a_mongodb_uri_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, mongodb={"database": "shop"}, environment="production")
    books = write_lines(tmp_path / "books.jsonl", [{"title": "Dune"}])
    run = shoal_import("books", books, "--config", config, cwd=tmp_path)

    assert run.status == 2
    assert "mongodb.uri is not set" in run.stderr
    assert "development only" in run.stderr


def test_development_without_a_uri_imports_into_the_embedded_store(tmp_path: Path) -> None:
    config = write_config(tmp_path, mongodb={"database": "shop"}, environment="development")
    books = write_lines(tmp_path / "books.jsonl", [{"title": "Dune"}, {"title": "Emma"}])
    run = shoal_import("books", books, "--config", config, cwd=tmp_path)

    assert run.status == 0, run.stderr
    assert "embedded store" in run.stderr
    assert run.summary.startswith("imported 2, updated 0, rejected 0 of 2 lines")
    # The store ran for the import only; the data stays beside the config, where
    # `shoal serve` will find it.
    with EmbeddedStore(tmp_path / ".shoal") as store:
        client: MongoClient[Document] = MongoClient(store.uri)
        try:
            titles = {document["title"] for document in client.shop.books.find()}
        finally:
            client.close()
    assert titles == {"Dune", "Emma"}


# -- what the API serves afterwards ------------------------------------------


@pytest.mark.engine_gap(ferretdb="recreate_indexes")
async def test_imported_documents_are_served_with_their_etags(
    tmp_path: Path, settings: Settings, client: Client
) -> None:
    # The client's app has its own database: import into that one.
    assert settings.mongodb.uri is not None
    config = write_config(
        tmp_path, mongodb={"uri": settings.mongodb.uri, "database": settings.mongodb.database}
    )
    dune_id, emma_id = str(ObjectId()), str(ObjectId())
    books = write_lines(
        tmp_path / "books.jsonl",
        [{"_id": dune_id, "title": "Dune", "year": 1965}, {"_id": emma_id, "title": "Emma"}],
    )
    run = await asyncio.to_thread(shoal_import, "books", books, "--config", config, cwd=tmp_path)
    assert run.status == 0, run.stderr

    response = await client.get(f"/books/{dune_id}")
    assert response.status_code == 200
    item = await response.get_json()
    assert item["title"] == "Dune"
    assert item["in_stock"] is True
    assert item["_etag"] == content_etag(config, item)
    assert response.headers["ETag"] == f'"{item["_etag"]}"'

    cached = await client.get(f"/books/{dune_id}", headers={"If-None-Match": f'"{item["_etag"]}"'})
    assert cached.status_code == 304

    listing = await (await client.get("/books")).get_json()
    assert {entry["_id"] for entry in listing["_items"]} == {dune_id, emma_id}
    assert listing["_meta"]["total"] == 2


def test_unreachable_mongodb_exits_1_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    config = write_config(
        tmp_path, mongodb={"uri": uri, "database": "shop", "server_selection_timeout_ms": 300}
    )
    books = write_lines(tmp_path / "books.jsonl", [{"title": "Dune"}])
    run = shoal_import("books", books, "--config", config, cwd=tmp_path)

    assert run.status == 1
    assert "shoal import: MongoDB is unreachable" in run.stderr
    assert "nothing was imported" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.engine_gap(ferretdb="recreate_indexes")
async def test_an_import_makes_cached_lists_stale(
    tmp_path: Path, settings_factory: Any, redis_url: str
) -> None:
    resources = example_resources()
    resources["books"]["cache_ttl"] = 300
    settings = settings_factory(resources=resources)
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        first = await client.get("/books")
        assert (await first.get_json())["_meta"]["total"] == 0
        assert (await client.get("/books")).headers["X-Cache"] == "HIT"

        assert settings.mongodb.uri is not None
        config = write_config(
            tmp_path,
            mongodb={"uri": settings.mongodb.uri, "database": settings.mongodb.database},
            redis={"url": redis_url, "key_prefix": settings.redis.key_prefix},
            resources=resources,
        )
        books = write_lines(tmp_path / "books.jsonl", [{"title": "Dune"}])
        run = await asyncio.to_thread(
            shoal_import, "books", books, "--config", config, cwd=tmp_path
        )
        assert run.status == 0, run.stderr

        after = await client.get("/books")
        assert after.headers["X-Cache"] == "MISS"
        assert (await after.get_json())["_meta"]["total"] == 1


def test_an_owned_resource_needs_an_owner(tmp_path: Path, mongodb_uri: str) -> None:
    resources = example_resources()
    resources["books"]["auth_field"] = "owner"
    database = f"owned_{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path, mongodb={"uri": mongodb_uri, "database": database}, resources=resources
    )
    books = write_lines(tmp_path / "books.jsonl", [{"title": "Dune"}])
    refused = shoal_import("books", books, "--config", config, cwd=tmp_path)
    assert refused.status == 2
    assert "--owner" in refused.stderr
    owner = "a" * 24
    run = shoal_import("books", books, "--config", config, "--owner", owner, cwd=tmp_path)
    assert run.status == 0, run.stderr
    client: MongoClient[Document] = MongoClient(mongodb_uri)
    try:
        stored = client[database]["books"].find_one({"title": "Dune"})
    finally:
        client.close()
    assert stored is not None
    assert stored["owner"] == owner
