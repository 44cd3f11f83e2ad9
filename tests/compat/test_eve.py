"""A client written for Eve 2.3 sees the same from Shoal as from Eve.

One scripted client runs against Eve 2.3.1 (in-process, on the same MongoDB as
the rest of the suite, in a database of its own) and against Shoal, each
serving the ``books`` resource of examples/bookstore/shoal.yaml. Each step
records the status, the shape of the body (every key path and its JSON type),
the values a client acts on and the headers it names (see tests/utils/compat.py);
the two recordings must be equal step by step.

The MongoDB stand-in stores a datetime inside ``$set`` as a string, and Eve's
PATCH writes ``_updated`` with ``$set``: afterwards Eve fails (500) on every read
of that document, GET, list and DELETE alike. So the first scenario PATCHes a
document only as its last use of it (its stale If-Match comes from a PUT, which
Eve writes as a whole-document replace), and the reads that follow a PATCH are a
second scenario that needs a real MongoDB.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.cli.eve import load_eve_settings, translate
from shoal.config import Settings
from tests.utils.compat import (
    MISSING_ID,
    Adapter,
    EveAdapter,
    Recording,
    ShoalAdapter,
    differences,
    differing,
    eve_app,
)
from tests.utils.http import if_match
from tests.utils.settings import example_resources

EXAMPLE_ROOT = Path(__file__).resolve().parents[2] / "examples"

BOOK = {
    "title": "Dune",
    "year": 1965,
    "isbn": "978-0441013593",
    "author": "Frank Herbert",
    "tags": ["sf", "classic"],
    "price": 9.99,
}
SHELF = [
    {"title": "Neuromancer", "year": 1984},
    {"title": "Anathem", "year": 2008},
    {"title": "Frankenstein", "year": 1818},
]
#: Eve's list syntax: Mongo JSON ``where``, Python-literal ``sort``, JSON ``projection``.
LIST_QUERY = {
    "where": json.dumps({"year": {"$gte": 1900}}),
    "sort": '[("year", -1)]',
    "projection": json.dumps({"title": 1}),
    "max_results": "2",
}
INVALID = {"year": "nineteen sixty-five"}  # no title, and year is no integer

# Headers each kind of step compares. Shoal also sends an ETag on POST and on
# lists, and Last-Modified on 304s and PATCH, where Eve sends none: an extra
# validator breaks no Eve client, so those are not compared.
CREATED = ("Location",)
LISTED = ("X-Total-Count", "Last-Modified")
FETCHED = ("ETag", "Last-Modified")
WRITTEN = ("ETag",)


def _meta(body: Any, name: str, item: int | None = None) -> str:
    """A meta field of an acknowledgement (of its ``item``-th document when bulk);
    a placeholder when the step failed, so the scenario still runs to its end."""
    if item is not None:
        items = body.get("_items") if isinstance(body, dict) else None
        body = items[item] if isinstance(items, list) and len(items) > item else None
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else (MISSING_ID if name == "_id" else "missing")


async def crud_scenario(adapter: Adapter) -> Recording:
    """Create, bulk create, list, get, conditional get, conditional writes,
    invalid documents, delete: each document PATCHed only as its last use."""
    seen = Recording(adapter.name)
    request, step = adapter.request, seen.record

    created = step("create one", await request("POST", "/books", json=BOOK), headers=CREATED)
    dune, dune_etag = _meta(created.body, "_id"), _meta(created.body, "_etag")
    shelf = step("bulk create", await request("POST", "/books", json=SHELF), headers=CREATED)
    neuromancer, neuromancer_etag = _meta(shelf.body, "_id", 0), _meta(shelf.body, "_etag", 0)

    for page in ("1", "2"):
        query = {**LIST_QUERY, "page": page}
        reply = await request("GET", "/books", query=query)
        step(f"list page {page} (where, sort, projection, max_results)", reply, headers=LISTED)

    got = step("get item", await request("GET", f"/books/{dune}"), headers=FETCHED)
    seen.note("_etag is the POST's _etag", _meta(got.body, "_etag") == dune_etag)
    current = {"If-None-Match": got.headers.get("etag", '"no-etag"')}
    reply = await request("GET", f"/books/{dune}", headers=current)
    step("get item, If-None-Match: its ETag", reply, headers=("ETag",))

    reply = await request("PATCH", f"/books/{dune}", json={"price": 8.5})
    step("patch without If-Match", reply)
    step("post an invalid document", await request("POST", "/books", json=INVALID))
    reply = await request("POST", "/books", json=[{"title": "Emma"}, INVALID])
    step("bulk post with one invalid document", reply)

    replacement = {"title": "Neuromancer", "year": 1984, "author": "William Gibson"}
    reply = await request(
        "PUT", f"/books/{neuromancer}", json=replacement, headers=if_match(neuromancer_etag)
    )
    step("put with If-Match", reply, headers=WRITTEN)
    replaced_etag = _meta(reply.body, "_etag")
    stale = if_match(neuromancer_etag)
    reply = await request("PATCH", f"/books/{neuromancer}", json={"year": 1985}, headers=stale)
    step("patch with a stale If-Match", reply)
    step(
        "delete with a stale If-Match",
        await request("DELETE", f"/books/{neuromancer}", headers=stale),
    )

    # Dune's last use: on the stand-in, Eve cannot read a document it has PATCHed.
    reply = await request(
        "PATCH", f"/books/{dune}", json={"price": 8.5}, headers=if_match(dune_etag)
    )
    step("patch with If-Match", reply, headers=WRITTEN)

    reply = await request("DELETE", f"/books/{neuromancer}", headers=if_match(replaced_etag))
    step("delete with If-Match", reply)
    step("get the deleted item", await request("GET", f"/books/{neuromancer}"))
    return seen


CRUD_STATUSES = [
    ("create one", 201),
    ("bulk create", 201),
    ("list page 1 (where, sort, projection, max_results)", 200),
    ("list page 2 (where, sort, projection, max_results)", 200),
    ("get item", 200),
    ("get item, If-None-Match: its ETag", 304),
    ("patch without If-Match", 428),
    ("post an invalid document", 422),
    ("bulk post with one invalid document", 422),
    ("put with If-Match", 200),
    ("patch with a stale If-Match", 412),
    ("delete with a stale If-Match", 412),
    ("patch with If-Match", 200),
    ("delete with If-Match", 204),
    ("get the deleted item", 404),
]


async def after_patch_scenario(adapter: Adapter) -> Recording:
    """What a client sees of a document after PATCHing it."""
    seen = Recording(adapter.name)
    request, step = adapter.request, seen.record

    created = step("create one", await request("POST", "/books", json=BOOK), headers=CREATED)
    book, old_etag = _meta(created.body, "_id"), _meta(created.body, "_etag")
    reply = await request(
        "PATCH", f"/books/{book}", json={"price": 8.5, "tags": ["sf"]}, headers=if_match(old_etag)
    )
    patched = step("patch with If-Match", reply, headers=WRITTEN)
    new_etag = _meta(patched.body, "_etag")
    seen.note("the PATCH changed _etag", new_etag != old_etag)

    got = step("get the patched item", await request("GET", f"/books/{book}"), headers=FETCHED)
    seen.note("_etag is the PATCH's _etag", _meta(got.body, "_etag") == new_etag)
    reply = await request("GET", f"/books/{book}", headers={"If-None-Match": f'"{old_etag}"'})
    step("get it, If-None-Match: the ETag before the PATCH", reply, headers=FETCHED)
    reply = await request("GET", f"/books/{book}", headers={"If-None-Match": f'"{new_etag}"'})
    step("get it, If-None-Match: its ETag", reply, headers=("ETag",))
    reply = await request(
        "PATCH", f"/books/{book}", json={"price": 7.0}, headers=if_match(old_etag)
    )
    step("patch with the ETag before the PATCH", reply)
    step("list", await request("GET", "/books"), headers=LISTED)
    reply = await request("DELETE", f"/books/{book}", headers=if_match(new_etag))
    step("delete with If-Match", reply)
    step("get the deleted item", await request("GET", f"/books/{book}"))
    return seen


AFTER_PATCH_STATUSES = [
    ("create one", 201),
    ("patch with If-Match", 200),
    ("get the patched item", 200),
    ("get it, If-None-Match: the ETag before the PATCH", 200),
    ("get it, If-None-Match: its ETag", 304),
    ("patch with the ETag before the PATCH", 412),
    ("list", 200),
    ("delete with If-Match", 204),
    ("get the deleted item", 404),
]

META_FIELDS = ("_id", "_etag", "_created", "_updated", "_links.self.href")


def documents_missing_meta(seen: Recording) -> tuple[int, list[str]]:
    """(documents checked, what is missing): every item and every write
    acknowledgement carries the meta fields, with RFC 1123 dates."""
    checked, problems = 0, []
    for recorded in seen.steps:
        if recorded.facts["status"] not in (200, 201):
            continue
        prefixes = [""] if "body _id" in recorded.facts else []
        count = recorded.facts.get("body _items.length", 0)
        prefixes += [f"_items[{index}]." for index in range(count)]
        for prefix in prefixes:
            checked += 1
            for name in META_FIELDS:
                value = recorded.facts.get(f"body {prefix}{name}")
                if value is None:
                    problems.append(f"{recorded.name}: {prefix}{name} is missing")
                elif name in ("_created", "_updated") and value != "RFC 1123":
                    problems.append(f"{recorded.name}: {prefix}{name} is {value}")
    return checked, problems


def assert_same(eve: Recording, shoal: Recording, statuses: list[tuple[str, int]]) -> None:
    # The baseline first: had Eve not behaved as written, equality would prove nothing.
    assert eve.statuses() == statuses, "Eve itself answered the scenario unexpectedly"
    for seen in (eve, shoal):
        checked, problems = documents_missing_meta(seen)
        assert checked, f"{seen.server}: no document was checked for its meta fields"
        assert not problems, f"{seen.server}: " + "; ".join(problems)
    diff = differences(eve, shoal)
    assert not diff, "an Eve client sees Shoal answer differently from Eve:\n" + "\n".join(diff)


@pytest.fixture
def eve(mongodb_uri: str) -> Iterator[Flask]:
    with eve_app(mongodb_uri) as app:
        yield app


@pytest.fixture
async def shoal(settings_factory: Callable[..., Settings]) -> AsyncIterator[Client]:
    """Shoal serving the example's ``books`` with every method public: Eve runs
    without auth, and auth is not what this compares."""
    books = example_resources()["books"]
    books = {
        **books,
        "public_methods": books["resource_methods"],
        "public_item_methods": books["item_methods"],
    }
    app = create_app(settings_factory(resources={"books": books}))
    async with app.test_app():
        yield app.test_client()


async def test_eve_client_scenario_gets_the_same_answers(shoal: Client, eve: Flask) -> None:
    eve_seen = await crud_scenario(EveAdapter(eve.test_client()))
    shoal_seen = await crud_scenario(ShoalAdapter(shoal))
    assert_same(eve_seen, shoal_seen, CRUD_STATUSES)


@pytest.mark.real_mongodb(
    reason="the stand-in stores the datetime Eve's PATCH puts in $set as a string, "
    "so Eve answers 500 on every later read of the document"
)
async def test_reads_after_patch_get_the_same_answers(shoal: Client, eve: Flask) -> None:
    eve_seen = await after_patch_scenario(EveAdapter(eve.test_client()))
    shoal_seen = await after_patch_scenario(ShoalAdapter(shoal))
    assert_same(eve_seen, shoal_seen, AFTER_PATCH_STATUSES)


# --- an Eve settings file, translated: embedding, aggregation, soft delete, versions ------

EVE_SETTINGS = EXAMPLE_ROOT / "eve-migration" / "settings.py"


@pytest.fixture
def eve_settings() -> dict[str, Any]:
    return load_eve_settings(EVE_SETTINGS)


@pytest.fixture
def eve_people(mongodb_uri: str, eve_settings: dict[str, Any]) -> Iterator[Flask]:
    """Eve serving the example settings file as it is."""
    with eve_app(mongodb_uri, eve_settings) as app:
        yield app


@pytest.fixture
async def shoal_people(
    settings_factory: Callable[..., Settings], eve_settings: dict[str, Any]
) -> AsyncIterator[Client]:
    """Shoal serving the translation of the same file (every method public:
    the Eve app has no auth class)."""
    translation = translate(eve_settings)
    resources = translation.config["resources"]
    for resource in resources.values():
        resource["public_methods"] = resource["resource_methods"]
        resource["public_item_methods"] = resource["item_methods"]
    app = create_app(settings_factory(resources=resources))
    async with app.test_app():
        yield app.test_client()


PERSON = {
    "firstname": "Ann",
    "lastname": "Lee",
    "role": "author",
    "born": "Tue, 02 Apr 1985 10:00:00 GMT",
}
EMBED_PERSON = {"embedded": json.dumps({"person": 1})}


async def embedding_scenario(adapter: Adapter) -> Recording:
    """References: embedded on items and lists, related links, a reference to
    nothing refused."""
    seen = Recording(adapter.name)
    request, step = adapter.request, seen.record
    person = step("create a person", await request("POST", "/people", json=PERSON), headers=CREATED)
    person_id = _meta(person.body, "_id")
    invoice = {"number": 1, "person": person_id}
    created = step("create an invoice", await request("POST", "/invoices", json=invoice))
    invoice_id = _meta(created.body, "_id")
    reply = await request("GET", f"/invoices/{invoice_id}")
    step("get the invoice", reply, headers=FETCHED)
    reply = await request("GET", f"/invoices/{invoice_id}", query=EMBED_PERSON)
    step("get it with the person embedded", reply)
    step("list with the person embedded", await request("GET", "/invoices", query=EMBED_PERSON))
    missing = {"number": 2, "person": "5f0000000000000000000099"}
    step("an invoice of nobody", await request("POST", "/invoices", json=missing))
    step(
        "an invoice without a number",
        await request("POST", "/invoices", json={"person": person_id}),
    )
    return seen


EMBEDDING_STATUSES = [
    ("create a person", 201),
    ("create an invoice", 201),
    ("get the invoice", 200),
    ("get it with the person embedded", 200),
    ("list with the person embedded", 200),
    ("an invoice of nobody", 422),
    ("an invoice without a number", 422),
]


async def aggregation_scenario(adapter: Adapter) -> Recording:
    """An aggregation endpoint with a client variable, a page of it, no writes."""
    seen = Recording(adapter.name)
    request, step = adapter.request, seen.record
    people = [
        {"lastname": "A", "role": "author"},
        {"lastname": "B", "role": "author"},
        {"lastname": "C", "role": "copy"},
    ]
    step("create people", await request("POST", "/people", json=people))
    for kind in ("author", "copy", "nobody"):
        query = {"aggregate": json.dumps({"$kind": kind})}
        step(f"count the {kind}s", await request("GET", "/people_by_role", query=query))
    query = {"aggregate": json.dumps({"$kind": "author"}), "max_results": "1", "page": "2"}
    step("a page past the results", await request("GET", "/people_by_role", query=query))
    # Left out, a variable stays as written ("$kind" matches no role); sent as
    # {}, it takes its condition away (every role is counted).
    step("count without the variable", await request("GET", "/people_by_role"))
    query = {"aggregate": json.dumps({"$kind": {}})}
    step("count with the variable as {}", await request("GET", "/people_by_role", query=query))
    step("post to the aggregation", await request("POST", "/people_by_role", json={}))
    return seen


AGGREGATION_STATUSES = [
    ("create people", 201),
    ("count the authors", 200),
    ("count the copys", 200),
    ("count the nobodys", 200),
    ("a page past the results", 200),
    ("count without the variable", 200),
    ("count with the variable as {}", 200),
    ("post to the aggregation", 405),
]


async def soft_delete_scenario(adapter: Adapter) -> Recording:
    """A soft delete, what reads see of it, and a restore by PUT."""
    seen = Recording(adapter.name)
    request, step = adapter.request, seen.record
    created = step("create a person", await request("POST", "/people", json=PERSON))
    person_id, etag = _meta(created.body, "_id"), _meta(created.body, "_etag")
    step("delete without If-Match", await request("DELETE", f"/people/{person_id}"))
    reply = await request("DELETE", f"/people/{person_id}", headers=if_match(etag))
    step("delete with If-Match", reply)
    deleted = step("get the deleted person", await request("GET", f"/people/{person_id}"))
    deleted_etag = _meta(deleted.body, "_etag")
    step("list", await request("GET", "/people"))
    step("list with show_deleted", await request("GET", "/people", query={"show_deleted": "1"}))
    replacement = {key: value for key, value in PERSON.items() if key != "born"}
    reply = await request("PUT", f"/people/{person_id}", json=replacement, headers=if_match(etag))
    step("restore with the ETag before the delete", reply)
    reply = await request(
        "PUT", f"/people/{person_id}", json=replacement, headers=if_match(deleted_etag)
    )
    step("restore with the deleted ETag", reply)
    step("get the restored person", await request("GET", f"/people/{person_id}"))
    return seen


async def lookup_scenario(adapter: Adapter) -> Recording:
    """Eve's additional_lookup at ``/people/<value>``: a value that is no id
    (and that the lookup's ``url`` matches) looks the person up."""
    seen = Recording(adapter.name)
    request, step = adapter.request, seen.record
    created = step("create a person", await request("POST", "/people", json=PERSON))
    person_id = _meta(created.body, "_id")
    step("get by lastname", await request("GET", "/people/Lee"))
    step("get by id", await request("GET", f"/people/{person_id}"))
    step("get a lastname nobody has", await request("GET", "/people/Nobody"))
    step("get an id nobody has", await request("GET", f"/people/{MISSING_ID}"))
    return seen


LOOKUP_STATUSES = [
    ("create a person", 201),
    ("get by lastname", 200),
    ("get by id", 200),
    ("get a lastname nobody has", 404),
    ("get an id nobody has", 404),
]


SOFT_DELETE_STATUSES = [
    ("create a person", 201),
    ("delete without If-Match", 428),
    ("delete with If-Match", 204),
    ("get the deleted person", 404),
    ("list", 200),
    ("list with show_deleted", 200),
    ("restore with the ETag before the delete", 412),
    ("restore with the deleted ETag", 200),
    ("get the restored person", 200),
]


async def versions_scenario(adapter: Adapter) -> Recording:
    """Three versions of a person, read back one by one, all, and as diffs."""
    seen = Recording(adapter.name)
    request, step = adapter.request, seen.record
    created = step("create a person", await request("POST", "/people", json=PERSON))
    person_id, etag = _meta(created.body, "_id"), _meta(created.body, "_etag")
    for firstname in ("Anne", "Annie"):
        reply = await request(
            "PUT",
            f"/people/{person_id}",
            json={**PERSON, "firstname": firstname},
            headers=if_match(etag),
        )
        step(f"put {firstname}", reply)
        etag = _meta(reply.body, "_etag")
    step("get the person", await request("GET", f"/people/{person_id}"))
    for version in ("1", "3", "all", "diffs", "9", "0"):
        query = {"version": version}
        step(f"version={version}", await request("GET", f"/people/{person_id}", query=query))
    return seen


VERSIONS_STATUSES = [
    ("create a person", 201),
    ("put Anne", 200),
    ("put Annie", 200),
    ("get the person", 200),
    ("version=1", 200),
    ("version=3", 200),
    ("version=all", 200),
    ("version=diffs", 200),
    ("version=9", 404),
    ("version=0", 400),
]

#: Where Shoal answers an Eve client differently on purpose (and says so in
#: docs/how-to/migrate-from-eve.md): no client breaks on these.
IMPROVEMENTS: dict[tuple[str, str], str] = {
    ("get the deleted person", "body _status"): 'Eve sends ["ERR"] (a tuple); Shoal "ERR"',
    ("version=diffs", "body _items[1]._id"): "Shoal's diffs name their document",
    ("version=diffs", "body _items[2]._id"): "Shoal's diffs name their document",
}


#: Where the two may differ by timing: Eve keeps dates to the second, so two
#: versions written within one second have the same _updated and Eve's diff
#: leaves it out; Shoal keeps milliseconds.
MAY_DIFFER: dict[tuple[str, str], str] = {
    ("version=diffs", f"body _items[{index}]._updated"): "date precision" for index in (1, 2)
}


def assert_same_but(eve: Recording, shoal: Recording, statuses: list[tuple[str, int]]) -> None:
    assert eve.statuses() == statuses, "Eve itself answered the scenario unexpectedly"
    expected = {key for key in IMPROVEMENTS if key[0] in {name for name, _ in statuses}}
    assert expected <= differing(eve, shoal), "a listed improvement no longer differs"
    diff = differences(eve, shoal, {**IMPROVEMENTS, **MAY_DIFFER})
    assert not diff, "an Eve client sees Shoal answer differently from Eve:\n" + "\n".join(diff)


@pytest.mark.parametrize(
    ("scenario", "statuses"),
    [
        (embedding_scenario, EMBEDDING_STATUSES),
        pytest.param(
            aggregation_scenario,
            AGGREGATION_STATUSES,
            marks=pytest.mark.engine_gap(ferretdb="facet"),  # Eve pages with $facet too
        ),
        (soft_delete_scenario, SOFT_DELETE_STATUSES),
        (lookup_scenario, LOOKUP_STATUSES),
    ],
    ids=["embedding", "aggregation", "soft delete", "lookup"],
)
async def test_a_translated_eve_settings_file_answers_as_eve(
    scenario: Callable[[Adapter], Any],
    statuses: list[tuple[str, int]],
    shoal_people: Client,
    eve_people: Flask,
) -> None:
    eve_seen = await scenario(EveAdapter(eve_people.test_client()))
    shoal_seen = await scenario(ShoalAdapter(shoal_people))
    assert_same_but(eve_seen, shoal_seen, statuses)


@pytest.mark.real_mongodb(
    reason="Eve finds versions by equality on _id_document, an ObjectId outside _id, "
    "which the stand-in never matches"
)
async def test_version_queries_answer_as_eve(shoal_people: Client, eve_people: Flask) -> None:
    eve_seen = await versions_scenario(EveAdapter(eve_people.test_client()))
    shoal_seen = await versions_scenario(ShoalAdapter(shoal_people))
    assert_same_but(eve_seen, shoal_seen, VERSIONS_STATUSES)


async def test_the_translation_serves_the_additional_lookup(shoal_people: Client) -> None:
    response = await shoal_people.post("/people", json=PERSON)
    assert response.status_code == 201
    response = await shoal_people.get("/people/by-lastname/Lee")
    assert response.status_code == 200
    assert (await response.get_json())["firstname"] == "Ann"
