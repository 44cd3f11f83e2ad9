"""What a caller may not read stays unread, on every path (issue: hidden fields
that leak, the Data API's owner bypass, aggregation variables that inject
field paths, and a stream's regular expression that stalls a worker).

Fields a ``datasource.projection`` leaves out are decided in one place
(``shoal.resources.visibility``); these tests go through each path a document
can leave by: lists and items (HEAD too), keyset cursors, versions, change
streams, embedding, an aggregation's joins, the Data API's reads, and write
answers. They look for the hidden values and names in every body, header and
event, as an anonymous caller, a signed-in editor and an API key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import bson
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config import ConfigError
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.data_api import DataApiClient, api_key, data_api_config
from tests.utils.http import create, if_match
from tests.utils.streams import EVENT_WAIT, listening

SALARY = 987_654_321
SSN = "078-05-1120"
SECRET = "s3cr3t-in-the-notes"
#: What must never come back, as names and as values.
HIDDEN_NAMES = ("salary", "ssn", "secret")
HIDDEN_VALUES = (str(SALARY), SSN, SECRET)

READ_PUBLIC = {"public_methods": ["GET"], "public_item_methods": ["GET"]}
WRITABLE = {
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "allowed_roles": ["editor"],
}
RESOURCES: dict[str, Any] = {
    "people": {
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "team": {"type": "string"},
                "salary": {"type": "integer"},
            },
        },
        "datasource": {"projection": {"salary": 0}},
        "atomic_updates": True,
        "bulk_writes": True,
        **WRITABLE,
        "resource_methods": ["GET", "POST", "PATCH", "DELETE"],
        **READ_PUBLIC,
    },
    "profiles": {
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "ssn": {"type": "string"}},
        },
        "datasource": {"projection": {"ssn": 0}},
        "versioning": True,
        "streams": True,
        **WRITABLE,
        **READ_PUBLIC,
    },
    "notes": {
        "schema": {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "secret": {"type": "string"},
                "person": {
                    "type": "string",
                    "format": "objectid",
                    "data_relation": {"resource": "people", "embeddable": True},
                },
            },
        },
        "datasource": {"projection": {"secret": 0}},
        **WRITABLE,
        **READ_PUBLIC,
    },
    # A pipeline that joins people: the joined documents keep salary hidden.
    "note_people": {
        "schema": {"type": "object"},
        "datasource": {
            "source": "notes",
            "aggregation": {
                "pipeline": [
                    {
                        "$lookup": {
                            "from": "people",
                            "localField": "person",
                            "foreignField": "_id",
                            "as": "who",
                        }
                    },
                    {"$project": {"text": 1, "who": 1}},
                ]
            },
        },
        "public_methods": ["GET"],
    },
}
EXPOSED = {"roles": ["editor"]}
LOOKUP_GAP = "the stand-in's $lookup takes no pipeline beside localField"


def _database() -> str:
    return f"hidden_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def database() -> str:
    return _database()


@pytest.fixture
async def app(settings_factory: SettingsFactory, database: str) -> AsyncIterator[Quart]:
    settings = settings_factory(
        resources=RESOURCES,
        mongodb={"database": database},
        data_api=data_api_config(database, people=EXPOSED, profiles=EXPOSED, notes=EXPOSED),
    )
    application = create_app(settings)
    async with application.test_app():
        yield application


class Seen:
    """Every answer of a sweep: bodies, headers, events, cursors."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, what: str, text: str) -> None:
        self.texts.append((what, text))

    async def answer(self, what: str, response: Any, *statuses: int) -> Any:
        text = await response.get_data(as_text=True)
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.add(what, f"{headers}\n\n{text}")
        assert response.status_code in statuses, (what, response.status_code, text)
        return json.loads(text) if text else None

    def leaks(self) -> list[tuple[str, str]]:
        """Hidden values anywhere; hidden names where the request named none
        (an engine may echo a request's "$salary" back as a string)."""
        found = []
        for what, text in self.texts:
            named = any(name in what for name in HIDDEN_NAMES)
            for hidden in (*HIDDEN_VALUES, *(() if named else HIDDEN_NAMES)):
                if hidden in text:
                    found.append((what, hidden))
        return found


async def _seed(app: Quart) -> dict[str, Any]:
    editor = client_with(app, bearer(await token_for(app, "editor")))
    person = await create(editor, "people", {"name": "Ann", "team": "a", "salary": SALARY})
    await create(editor, "people", {"name": "Bob", "team": "a", "salary": SALARY + 1})
    profile = await create(editor, "profiles", {"name": "Ann", "ssn": SSN})
    patched = await editor.patch(
        f"/profiles/{profile['_id']}", json={"name": "Ann B."}, headers=if_match(profile["_etag"])
    )
    assert patched.status_code == 200
    note = await create(editor, "notes", {"text": "hi", "secret": SECRET, "person": person["_id"]})
    return {"person": person, "profile": profile, "note": note}


async def _opened(client: Client, path: str, where: str) -> Any:
    """The answer to opening a stream that should be refused: a stream that
    opens instead never ends, so it fails here after a bounded wait."""
    request = client.get(path, query_string={"where": where})
    try:
        return await asyncio.wait_for(request, EVENT_WAIT)
    except TimeoutError:
        raise AssertionError(f"{path} opened a stream for where={where}") from None


def _cursor_values(href: str) -> list[Any]:
    """The values a keyset cursor carries (its payload, without the MAC)."""
    cursor = href.split("cursor=", 1)[1].split("&", 1)[0]
    token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    values: list[Any] = bson.decode(token[:-16])["v"]
    return values


async def _sweep(app: Quart, client: Client, seen: Seen, seeded: dict[str, Any]) -> None:
    person, profile, note = seeded["person"], seeded["profile"], seeded["note"]
    for path in ("/people", "/profiles", "/notes", '/notes?embedded={"person":1}'):
        await seen.answer(path, await client.get(path), 200)
    for resource, item in (("people", person), ("profiles", profile), ("notes", note)):
        await seen.answer(f"item {resource}", await client.get(f"/{resource}/{item['_id']}"), 200)
        head = await client.head(f"/{resource}/{item['_id']}")
        await seen.answer(f"HEAD {resource}", head, 200)
    embedded = await seen.answer(
        "embedded", await client.get(f'/notes/{note["_id"]}?embedded={{"person":1}}'), 200
    )
    assert embedded["person"]["name"] == "Ann"  # embedded, without its salary
    page = await seen.answer(
        "cursor", await client.get("/people?cursor=&sort=name&max_results=1"), 200
    )
    next_href = page["_links"]["next"]["href"]
    seen.add("cursor values", repr(_cursor_values(next_href)))
    await seen.answer("next page", await client.get("/" + next_href), 200)
    for version in ("1", "2", "all", "diffs"):
        path = f"/profiles/{profile['_id']}?version={version}"
        await seen.answer(path, await client.get(path), 200)


async def test_no_hidden_field_leaves_by_any_read_path(app: Quart, database: str) -> None:
    seeded = await _seed(app)
    seen = Seen()
    anonymous = app.test_client()
    editor = client_with(app, bearer(await token_for(app, "editor")))
    keyed = client_with(app, {"X-API-Key": await api_key(app, "editor")})
    for client in (anonymous, editor, keyed):
        await _sweep(app, client, seen, seeded)

    # Write answers, a representation included.
    person, note = seeded["person"], seeded["note"]
    represent = {"Prefer": "return=representation"}
    patched = await editor.patch(
        f"/notes/{note['_id']}",
        json={"text": "hello"},
        headers={**if_match(note["_etag"]), **represent},
    )
    note_now = await seen.answer("PATCH representation", patched, 200)
    put = await editor.put(
        f"/notes/{note['_id']}",
        json={"text": "put", "secret": SECRET},
        headers={**if_match(note_now["_etag"]), **represent},
    )
    await seen.answer("PUT representation", put, 200)
    posted = await editor.post("/people", json={"name": "Cy", "salary": SALARY}, headers=represent)
    await seen.answer("POST representation", posted, 201)
    updated = await editor.patch(
        f"/people/{person['_id']}",
        data=json.dumps({"$set": {"team": "b"}}),
        headers={"Content-Type": "application/vnd.shoal.update+json", **represent},
    )
    await seen.answer("operator update representation", updated, 200)

    # The Data API: find, findOne and aggregate, asking for the hidden fields.
    data_api = DataApiClient(keyed, database, "people")
    for action, fields in (
        ("find", {"projection": {"name": 1, "salary": 1}}),
        ("find", {}),
        ("findOne", {"projection": {"salary": 1}}),
        ("aggregate", {"pipeline": [{"$project": {"pay": "$salary", "name": 1}}]}),
        ("aggregate", {"pipeline": [{"$addFields": {"copy": "$$ROOT"}}]}),
        # Grouped by salary, each salary would be a group's _id.
        ("aggregate", {"pipeline": [{"$group": {"_id": "$salary"}}]}),
    ):
        reply = await data_api.call(action, fields)
        seen.add(f"Data API {action} {fields}", reply.text)
        assert reply.status == 200, reply.text

    assert seen.leaks() == []


@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_stream_events_show_no_hidden_field(app: Quart) -> None:
    seen = Seen()
    editor = client_with(app, bearer(await token_for(app, "editor")))
    # An insert and an update of a profile, as events.
    async with listening(editor, "/profiles/_stream") as stream:
        created = await create(editor, "profiles", {"name": "Di", "ssn": SSN})
        await editor.patch(
            f"/profiles/{created['_id']}",
            json={"name": "Di A."},
            headers=if_match(created["_etag"]),
        )
        events = await stream.wait_for(2)
    for event in events:
        seen.add(f"event {event.name}", json.dumps(event.data))
    assert [event.data["document"]["name"] for event in events] == ["Di", "Di A."]

    assert seen.leaks() == []


@pytest.mark.engine_gap(ferretdb="lookup")
@pytest.mark.real_mongodb(reason=LOOKUP_GAP)
async def test_an_aggregation_that_joins_shows_no_hidden_field(app: Quart) -> None:
    await _seed(app)
    response = await app.test_client().get("/note_people", query_string={"count": "false"})
    text = await response.get_data(as_text=True)
    assert response.status_code == 200, text
    [note] = json.loads(text)["_items"]
    assert [person["name"] for person in note["who"]] == ["Ann"]  # joined, without its salary
    assert "salary" not in text
    assert str(SALARY) not in text


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ('/people?where={"salary":{"$gt":100000}}', "where"),
        ('/people?where={"$or":[{"name":"x"},{"salary":1}]}', "where"),
        ("/people?sort=salary", "sort"),
        ("/people?cursor=&sort=-salary", "sort"),
        ('/people?where={"$text":{"$search":"987654321"}}', "where"),
    ],
)
async def test_a_hidden_field_cannot_be_tested_by_a_query(
    app: Quart, path: str, parameter: str
) -> None:
    await _seed(app)
    response = await app.test_client().get(path)
    assert response.status_code == 400
    message = (await response.get_json())["_error"]["message"]
    assert message.startswith(f"{parameter} cannot use")
    assert str(SALARY) not in message


async def test_hidden_fields_cannot_be_tested_by_writes_or_the_data_api(
    app: Quart, database: str
) -> None:
    seeded = await _seed(app)
    editor = client_with(app, bearer(await token_for(app, "editor")))
    person = seeded["person"]
    by_filter = await editor.patch('/people?where={"salary":{"$gt":1}}', json={"team": "c"})
    assert by_filter.status_code == 400
    deleted = await editor.delete('/people?where={"salary":1}')
    assert deleted.status_code == 400
    oracle = await editor.patch(
        f"/people/{person['_id']}",
        data=json.dumps({"$min": {"salary": 1}}),
        headers={"Content-Type": "application/vnd.shoal.update+json"},
    )
    assert oracle.status_code == 400
    assert (
        "the update cannot use the field 'salary'" in (await oracle.get_json())["_error"]["message"]
    )

    keyed = client_with(app, {"X-API-Key": await api_key(app, "editor")})
    data_api = DataApiClient(keyed, database, "people")
    for action, fields in (
        ("find", {"filter": {"salary": {"$gt": 100}}}),
        ("find", {"sort": {"salary": 1}}),
        ("updateMany", {"filter": {}, "update": {"$max": {"salary": 5}}}),
        ("updateOne", {"filter": {}, "update": {"$rename": {"salary": "team"}}}),
        ("deleteMany", {"filter": {"salary": SALARY}}),
    ):
        reply = await data_api.call(action, fields)
        assert reply.status == 400, (action, reply.text)
        assert "is not readable" in reply.json["error"]
    # A join into a collection with hidden fields would bring them back.
    joined = await data_api.call(
        "aggregate",
        {"pipeline": [{"$lookup": {"from": "people", "pipeline": [], "as": "all"}}]},
        collection="notes",
    )
    assert joined.status == 400
    assert "keeps some fields" in joined.json["error"]


async def test_a_stream_where_on_a_hidden_field_is_refused(app: Quart) -> None:
    where = '{"ssn": "078-05-1120"}'
    response = await _opened(app.test_client(), "/profiles/_stream", where)
    assert response.status_code == 400
    assert "where cannot use the field 'ssn'" in (await response.get_json())["_error"]["message"]


# -- the Data API's rules do not depend on the order of resources ---------------


NOTE = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "secret": {"type": "string"}},
}


def _notes_resources(stats_first: bool) -> dict[str, Any]:
    stats = {
        "note_stats": {
            "schema": {"type": "object"},
            "datasource": {
                "source": "notes",
                "aggregation": {"pipeline": [{"$group": {"_id": None, "n": {"$sum": 1}}}]},
            },
            "public_methods": ["GET"],
        }
    }
    notes = {
        "notes": {
            "schema": NOTE,
            "resource_methods": ["GET", "POST"],
            "item_methods": ["GET"],
            "allowed_roles": ["member"],
            "auth_field": "owner",
        }
    }
    return {**stats, **notes} if stats_first else {**notes, **stats}


@pytest.mark.parametrize("stats_first", [True, False], ids=["stats-first", "notes-first"])
async def test_the_data_api_keeps_owners_apart_whatever_comes_first(
    settings_factory: SettingsFactory, stats_first: bool
) -> None:
    database = _database()
    roles = {"roles": ["member"]}
    settings = settings_factory(
        resources=_notes_resources(stats_first),
        mongodb={"database": database},
        data_api=data_api_config(database, notes=roles, others=roles),
    )
    app = create_app(settings)
    async with app.test_app():
        alice_id, bob_id = "a" * 24, "b" * 24
        alice = client_with(app, bearer(await token_for(app, "member", user_id=alice_id)))
        bob = client_with(app, bearer(await token_for(app, "member", user_id=bob_id)))
        await create(alice, "notes", {"text": "alice's", "secret": "alice-secret"})
        await create(bob, "notes", {"text": "bob's", "secret": "bob-secret"})
        data_api = DataApiClient(alice, database, "notes")

        found = await data_api.call("find", {"filter": {}})
        assert found.status == 200, found.text
        assert [note["text"] for note in found.json["documents"]] == ["alice's"]
        assert "bob" not in found.text
        joined = await data_api.call(
            "aggregate",
            {"pipeline": [{"$lookup": {"from": "notes", "pipeline": [], "as": "all"}}]},
            collection="others",
        )
        assert joined.status == 400, joined.text
        assert "bob" not in joined.text


def test_two_resources_serving_one_data_api_collection_are_refused(
    settings_factory: SettingsFactory,
) -> None:
    resources = _notes_resources(False)
    resources["open_notes"] = {"schema": NOTE, "datasource": {"source": "notes"}}
    database = _database()
    with pytest.raises(ConfigError) as refused:
        settings_factory(
            resources=resources,
            mongodb={"database": database},
            data_api=data_api_config(database, notes={"roles": ["member"]}),
        )
    assert "the resources notes, open_notes all serve this collection" in str(refused.value)


# -- aggregation variables are data, never field paths -------------------------------

LABELS: dict[str, Any] = {
    "items": {
        "schema": {
            "type": "object",
            "properties": {
                "kind": {"type": "string"},
                "label": {"type": "string"},
                "salary": {"type": "integer"},
            },
        },
        "datasource": {"projection": {"salary": 0}},
        "resource_methods": ["GET", "POST"],
        "public_methods": ["GET", "POST"],
    },
}


def _endpoint(stage: dict[str, Any], variable: str) -> dict[str, Any]:
    """An endpoint whose author keeps salaries out of its answers (its last
    stages), with ``variable`` in ``stage``."""
    return {
        "schema": {"type": "object"},
        "datasource": {
            "source": "items",
            "aggregation": {
                "pipeline": [
                    {"$match": {"kind": "$kind"}},
                    stage,
                    {"$project": {"salary": 0, "same.salary": 0}},
                    {"$sort": {"_id": 1}},
                ],
                "variables": {"$kind": {"type": "string"}, variable: {"type": "string"}},
            },
        },
        "public_methods": ["GET"],
    }


#: Each kind of place a variable can sit in, and the variable there. In the
#: first three the variable stands where a field path would (the issue's own
#: ``{"$project": {"label": "$label"}}``); in the others it is compared with
#: the field ``label``.
STAGES: dict[str, tuple[dict[str, Any], str]] = {
    "project": ({"$project": {"label": "$label"}}, "$label"),
    "add_fields": ({"$addFields": {"label": "$label"}}, "$label"),
    "group": ({"$group": {"_id": "$label", "n": {"$sum": 1}}}, "$label"),
    "match": ({"$match": {"label": "$wanted"}}, "$wanted"),
    "expr": ({"$match": {"$expr": {"$eq": ["$label", "$wanted"]}}}, "$wanted"),
    "lookup_let": (
        {
            "$lookup": {
                "from": "items",
                "let": {"wanted": "$wanted"},
                "pipeline": [{"$match": {"$expr": {"$eq": ["$label", "$$wanted"]}}}],
                "as": "same",
            }
        },
        "$wanted",
    ),
}


@pytest.fixture
async def labels_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    endpoints = {name: _endpoint(*placed) for name, placed in STAGES.items()}
    application = create_app(settings_factory(resources={**LABELS, **endpoints}))
    async with application.test_app():
        client = application.test_client()
        await create(client, "items", {"kind": "editor", "label": "$salary", "salary": SALARY})
        await create(client, "items", {"kind": "editor", "label": "plain", "salary": SALARY})
        yield application


_LOOKUP_LET = pytest.param(
    "lookup_let",
    marks=[
        pytest.mark.engine_gap(ferretdb="lookup"),
        pytest.mark.real_mongodb(
            reason="the stand-in's $lookup takes no pipeline beside localField"
        ),
    ],
)


def _stage(name: str, gap: str) -> Any:
    return pytest.param(name, marks=pytest.mark.engine_gap(ferretdb=gap))


#: FerretDB refuses $literal, and compares nothing in $expr: there the values
#: are refused instead (400), which leaks nothing but is not MongoDB's answer.
_STAGES = [
    _stage("add_fields", "literal"),
    _stage("expr", "expression_comparisons"),
    _stage("group", "literal"),
    "match",
    _stage("project", "literal"),
    _LOOKUP_LET,
]


@pytest.mark.parametrize("injected", ["$$ROOT", "$salary", "$$CURRENT.salary"])
@pytest.mark.parametrize("stage", _STAGES)
async def test_a_variable_is_a_value_not_a_field_path(
    labels_app: Quart, stage: str, injected: str
) -> None:
    _, variable = STAGES[stage]
    variables = json.dumps({"$kind": "editor", variable: injected})
    response = await labels_app.test_client().get(
        f"/{stage}", query_string={"aggregate": variables, "count": "false"}
    )
    text = await response.get_data(as_text=True)
    assert response.status_code == 200, text
    assert str(SALARY) not in text
    items = json.loads(text)["_items"]
    if stage in ("project", "add_fields"):
        assert {item["label"] for item in items} == {injected}
    elif stage == "group":
        assert items == [{"_id": injected, "n": 2}]
    elif stage in ("match", "expr"):
        # The label "$salary" is stored as a string: only that one matches it.
        assert [item["label"] for item in items] == (["$salary"] if injected == "$salary" else [])
    else:  # lookup_let: per item, the items whose label is the string sent
        matched = [same["label"] for item in items for same in item["same"]]
        assert matched == (["$salary", "$salary"] if injected == "$salary" else [])


async def test_a_variable_cannot_set_a_stage_to_a_field(settings_factory: SettingsFactory) -> None:
    limited = _endpoint({"$limit": "$size"}, "$size")
    limited["datasource"]["aggregation"]["variables"]["$size"] = {"type": ["string", "integer"]}
    app = create_app(settings_factory(resources={**LABELS, "limited": limited}))
    async with app.test_app():
        variables = json.dumps({"$kind": "editor", "$size": "$salary"})
        response = await app.test_client().get("/limited", query_string={"aggregate": variables})
        assert response.status_code == 400
        message = (await response.get_json())["_error"]["message"]
        assert message == "aggregate: $size sets a part of a stage here; it cannot start with $"


# -- a stream's regular expression cannot stall the worker ---------------------------

STREAMED: dict[str, Any] = {
    "titles": {
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
        "resource_methods": ["GET", "POST"],
        "public_methods": ["GET", "POST"],
        "allow_regex": True,
        "streams": True,
    }
}


@pytest.fixture
async def streamed_app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    application = create_app(settings_factory(resources=STREAMED))
    async with application.test_app():
        yield application


@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_a_backtracking_regex_in_a_stream_matches_in_linear_time(
    streamed_app: Quart,
) -> None:
    """With a backtracking matcher, ``^(a+)+$`` against 40 ``a``s and a ``!``
    takes about 2^40 steps: the event loop, and every request of the worker,
    would stop for hours. Matched by RE2, the next event arrives as usual."""
    client = streamed_app.test_client()
    where = quote(json.dumps({"title": {"$regex": "^(a+)+$"}}))
    async with listening(client, f"/titles/_stream?where={where}") as stream:
        await create(client, "titles", {"title": "a" * 40 + "!"})
        other = await client.get("/titles")  # the worker still answers
        assert other.status_code == 200
        await create(client, "titles", {"title": "aaaa"})
        [event] = await stream.wait_for(1)
        await asyncio.sleep(0.2)
    assert event.data["document"]["title"] == "aaaa"
    assert len(stream.events) == 1


async def test_a_stream_refuses_a_regex_it_cannot_match_in_linear_time(
    streamed_app: Quart,
) -> None:
    where = json.dumps({"title": {"$regex": "^(a)\\1$"}})  # a backreference
    response = await _opened(streamed_app.test_client(), "/titles/_stream", where)
    assert response.status_code == 400
    message = (await response.get_json())["_error"]["message"]
    assert "without backreferences or lookaround (RE2 syntax)" in message
