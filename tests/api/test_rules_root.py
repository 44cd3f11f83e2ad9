"""Rules with ``%%root`` (issue 23): a role that applies per document, over HTTP.

Three roles, in order: ``owner`` (``%%root.owner: %%user.id``: everything on
the documents the caller owns), ``guarded`` (``%%root.status: secret``, every
caller: reads the secret documents without ``cost``, writes nothing) and
``staff`` (callers with the role: reads every field, writes only ``note``,
inserts and deletes nothing). Alice and Bob are staff; Vic has no role, so
only ``owner`` and ``guarded`` may apply to him.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from tests.api.test_rules import _get
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.cache import worker_tier_ready
from tests.utils.data_api import DataApiClient, data_api_config
from tests.utils.http import if_match
from tests.utils.leaks import Sweep
from tests.utils.streams import listening

NOTES: dict[str, Any] = {
    "schema": {
        "type": "object",
        "properties": {
            "item": {"type": "string"},
            "owner": {"type": "string"},
            "status": {"type": "string"},
            "cost": {"type": "integer"},
            "note": {"type": "string"},
        },
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "rules": {
        "roles": [
            {
                "name": "owner",
                "apply_when": {"%%root.owner": "%%user.id"},
                "read": True,
                "write": True,
                "insert": True,
                "delete": True,
            },
            {
                "name": "guarded",
                "apply_when": {"%%root.status": "secret"},
                "read": True,
                "fields": {"cost": {"read": False}},
            },
            {
                "name": "staff",
                "apply_when": {"%%user.roles": "staff"},
                "fields": {"note": {"read": True, "write": True}},
                "additional_fields": {"read": True},
            },
        ]
    },
}
#: An aggregation endpoint on the same collection.
REPORT: dict[str, Any] = {
    "schema": {"type": "object"},
    "datasource": {
        "source": "notes",
        "aggregation": {"pipeline": [{"$project": {"item": 1, "cost": 1, "status": 1}}]},
    },
}
#: Links to notes, embeddable.
LINKS: dict[str, Any] = {
    "schema": {
        "type": "object",
        "properties": {
            "note": {
                "type": "string",
                "format": "objectid",
                "data_relation": {"resource": "notes", "embeddable": True},
            }
        },
    },
    "resource_methods": ["GET", "POST"],
}
#: Each document's cost, by item; a secret document's cost is never shown but
#: to its owner.
COSTS = {"a_open": 101_101, "a_secret": 202_202, "b_open": 303_303, "b_secret": 404_404}
SECRET = str(COSTS["b_secret"])


@pytest.fixture
def database() -> str:
    return f"rules_root_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def app(settings_factory: SettingsFactory, database: str) -> AsyncIterator[Quart]:
    settings = settings_factory(
        resources={"notes": {**NOTES, "streams": True}, "report": REPORT, "links": LINKS},
        mongodb={"database": database},
        data_api=data_api_config(database, notes={"roles": ["staff", "visitor"]}),
    )
    application = create_app(settings)
    async with application.test_app():
        yield application


class People:
    async def start(self, app: Quart) -> People:
        self.alice = await self._client(app, "alice", "staff")
        self.bob = await self._client(app, "bob", "staff")
        self.vic = await self._client(app, "vic", "visitor")
        return self

    @staticmethod
    async def _client(app: Quart, name: str, role: str) -> Client:
        return client_with(app, bearer(await token_for(app, role, name=name, user_id=name)))


@pytest.fixture
async def people(app: Quart) -> People:
    return await People().start(app)


@pytest.fixture
async def seeded(people: People) -> dict[str, dict[str, Any]]:
    return await _seed(people)


async def _seed(people: People) -> dict[str, dict[str, Any]]:
    """Two documents of Alice's and two of Bob's, one of each open, one secret."""
    made = {}
    for item, cost in COSTS.items():
        owner, status = ("alice" if item.startswith("a") else "bob"), item.split("_")[1]
        client = people.alice if owner == "alice" else people.bob
        body = {"item": item, "owner": owner, "status": status, "cost": cost, "note": "-"}
        response = await client.post("/notes", json=body)
        assert response.status_code == 201, await response.get_json()
        made[item] = await response.get_json()
    return made


def _path(seeded: dict[str, Any], item: str) -> str:
    return f"/notes/{seeded[item]['_id']}"


# -- reads -------------------------------------------------------------------


async def test_each_document_is_shown_as_its_governing_role_shows_it(
    people: People, seeded: dict[str, Any]
) -> None:
    # Alice: her own documents whole (owner); Bob's open one whole (staff);
    # his secret one without cost (guarded comes before staff).
    for item in COSTS:
        status, body, _ = await _get(people.alice, _path(seeded, item))
        assert status == 200, (item, body)
        assert ("cost" in body) is (item != "b_secret"), item
    status, body, _ = await _get(people.alice, "/notes")
    assert status == 200
    assert body["_meta"]["total"] == 4
    costs = {note["item"]: note.get("cost") for note in body["_items"]}
    assert costs == {**COSTS, "b_secret": None}
    assert SECRET not in json.dumps(body)
    # Vic: no document of his own, and staff does not apply to him: the
    # secret documents only (guarded), without cost.
    status, body, _ = await _get(people.vic, "/notes")
    assert status == 200
    assert body["_meta"]["total"] == 2
    assert sorted(note["item"] for note in body["_items"]) == ["a_secret", "b_secret"]
    assert not any(str(cost) in json.dumps(body) for cost in COSTS.values())
    status, _, _ = await _get(people.vic, _path(seeded, "a_open"))
    assert status == 404
    # A where on a field some candidate hides is refused (it would test values).
    status, _, _ = await _get(people.alice, '/notes?where={"cost": 404404}')
    assert status == 400


async def test_a_projection_never_chooses_the_role_on_missing_fields(
    people: People, seeded: dict[str, Any]
) -> None:
    # Without status the role cannot be chosen per document: the strictest
    # of the candidates' masks applies to what a projection fetches.
    projected = '?projection={"cost": 1}'
    for path in (_path(seeded, "b_secret"), _path(seeded, "b_open"), "/notes"):
        status, body, _ = await _get(people.alice, path + projected)
        assert status == 200, (path, body)
        assert SECRET not in json.dumps(body), path
        assert str(COSTS["b_open"]) not in json.dumps(body), path
    # A projection that keeps the fields the roles are chosen by keeps each
    # document's own view.
    keeping = '/notes?projection={"cost": 1, "status": 1, "owner": 1}'
    status, body, _ = await _get(people.alice, keeping)
    assert status == 200
    costs = {note["_id"]: note.get("cost") for note in body["_items"]}
    assert costs[seeded["b_open"]["_id"]] == COSTS["b_open"]
    assert costs[seeded["b_secret"]["_id"]] is None


async def test_an_aggregation_shows_the_strictest_view(
    people: People, seeded: dict[str, Any]
) -> None:
    status, body, _ = await _get(people.alice, "/report")
    assert status == 200, body
    assert body["_meta"]["total"] == 4
    assert SECRET not in json.dumps(body)
    status, body, _ = await _get(people.vic, "/report")
    assert status == 200, body
    assert sorted(note["item"] for note in body["_items"]) == ["a_secret", "b_secret"]
    assert not any(str(cost) in json.dumps(body) for cost in COSTS.values())


# -- writes ------------------------------------------------------------------


async def test_writes_keep_to_the_governing_role(people: People, seeded: dict[str, Any]) -> None:
    alice = people.alice

    async def patch(item: str, changes: dict[str, Any]) -> tuple[int, Any]:
        _, current, _ = await _get(alice, _path(seeded, item))
        response = await alice.patch(
            _path(seeded, item), json=changes, headers=if_match(current["_etag"])
        )
        return response.status_code, await response.get_json()

    assert (await patch("a_open", {"item": "mine"}))[0] == 200
    assert (await patch("b_open", {"note": "seen"}))[0] == 200  # staff writes note
    status, body = await patch("b_open", {"item": "taken"})
    assert status == 403
    assert "'item'" in body["_error"]["message"]
    # guarded writes nothing: Bob's secret document is not there for a PATCH.
    status, _ = await patch("b_secret", {"note": "x"})
    assert status == 404
    # Vic may not read Bob's open document at all.
    response = await people.vic.patch(_path(seeded, "b_open"), json={"note": "x"})
    assert response.status_code in (404, 428)
    response = await people.vic.patch(
        _path(seeded, "b_open"), json={"note": "x"}, headers=if_match(seeded["b_open"]["_etag"])
    )
    assert response.status_code == 404
    # Deletes: only the owner's.
    response = await alice.delete(
        _path(seeded, "b_open"), headers=if_match(seeded["b_open"]["_etag"])
    )
    assert response.status_code == 404
    _, current, _ = await _get(alice, _path(seeded, "a_secret"))
    response = await alice.delete(_path(seeded, "a_secret"), headers=if_match(current["_etag"]))
    assert response.status_code == 204
    _, after, _ = await _get(alice, "/notes/" + seeded["b_open"]["_id"])
    assert after["item"] == "b_open"
    assert after["note"] == "seen"


async def test_an_insert_falls_under_a_candidate_that_may_insert(people: People) -> None:
    own = await people.alice.post("/notes", json={"item": "new", "owner": "alice", "cost": 1})
    assert own.status_code == 201, await own.get_json()
    # Bob as owner: staff governs it, and staff may not insert.
    other = await people.alice.post("/notes", json={"item": "new", "owner": "bob"})
    assert other.status_code == 422
    body = await other.get_json()
    assert "outside the documents your role may write" in json.dumps(body)


async def test_the_data_api_keeps_to_each_documents_role(
    app: Quart, database: str, seeded: dict[str, Any]
) -> None:
    token = await token_for(app, "staff", name="alice", user_id="alice")
    alice = DataApiClient(app.test_client(), database, "notes", headers=bearer(token))
    found = await alice.call("find", {"filter": {}})
    assert found.status == 200, found.text
    costs = {note["item"]: note.get("cost") for note in found.json["documents"]}
    assert costs == {**COSTS, "b_secret": None}
    projected = await alice.call("find", {"filter": {}, "projection": {"cost": 1}})
    assert projected.status == 200, projected.text
    assert SECRET not in projected.text
    one = await alice.call(
        "findOne", {"filter": {"item": "b_secret"}, "projection": {"cost": 1, "item": 1}}
    )
    assert one.status == 200, one.text
    assert SECRET not in one.text
    aggregated = await alice.call("aggregate", {"pipeline": [{"$project": {"cost": 1}}]})
    assert aggregated.status == 200, aggregated.text
    assert SECRET not in aggregated.text
    updated = await alice.call(
        "updateOne", {"filter": {"item": "b_open"}, "update": {"$set": {"note": "x"}}}
    )
    assert updated.status == 200, updated.text
    assert updated.json["matchedCount"] == 1
    refused = await alice.call(
        "updateOne", {"filter": {"item": "b_open"}, "update": {"$set": {"item": "x"}}}
    )
    assert refused.status == 403, refused.text
    unseen = await alice.call(
        "updateOne", {"filter": {"item": "b_secret"}, "update": {"$set": {"note": "x"}}}
    )
    assert unseen.status == 200, unseen.text
    assert unseen.json["matchedCount"] == 0


@pytest.mark.engine_gap(ferretdb="change_streams", documentdb="change_streams")
async def test_stream_events_are_masked_per_document(
    people: People, seeded: dict[str, Any]
) -> None:
    async with listening(people.alice, "/notes/_stream") as alice:
        for item in ("b_secret", "b_open"):
            _, current, _ = await _get(people.bob, _path(seeded, item))
            response = await people.bob.patch(
                _path(seeded, item), json={"note": "again"}, headers=if_match(current["_etag"])
            )
            assert response.status_code == 200
        events = await alice.wait_for(2)
    documents = {event.data["document"]["item"]: event.data["document"] for event in events}
    assert "cost" not in documents["b_secret"]
    assert documents["b_open"]["cost"] == COSTS["b_open"]


@pytest.mark.parametrize("tier", ["redis", "worker"])
async def test_the_cache_keys_each_callers_candidates(
    settings_factory: SettingsFactory, database: str, tier: str
) -> None:
    settings = settings_factory(
        resources={"notes": {**NOTES, "cache_ttl": 60, "cache_tier": tier}},
        mongodb={"database": database},
    )
    application = create_app(settings)
    async with application.test_app():
        local_hits = await worker_tier_ready(application, "notes")
        people = await People().start(application)
        await _seed(people)
        before = local_hits()
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(2):  # the second round is answered from the cache
            for who in ("alice", "bob", "vic"):
                _, body, _ = await _get(getattr(people, who), "/notes")
                costs = {note["item"]: note.get("cost") for note in body["_items"]}
                assert seen.setdefault(who, costs) == costs, who
        # Alice and Bob share a role and roles' filters, not the documents they own.
        assert seen["alice"]["a_secret"] == COSTS["a_secret"]
        assert seen["bob"]["a_secret"] is None
        assert seen["bob"]["b_secret"] == COSTS["b_secret"]
        assert set(seen["vic"]) == {"a_secret", "b_secret"}
        # With the worker tier, the second round came from the worker's memory.
        assert (local_hits() - before > 0) == (tier == "worker")


async def test_put_and_etags_follow_the_governing_role(
    people: People, seeded: dict[str, Any]
) -> None:
    alice, bob = people.alice, people.bob
    # Bob's secret document: Alice's view (guarded, no cost) has its own ETag.
    _, hers, _ = await _get(alice, _path(seeded, "b_secret"))
    _, his, _ = await _get(bob, _path(seeded, "b_secret"))
    assert hers["_etag"] != his["_etag"]
    # Bob's open one: staff hides nothing, so both see the stored ETag.
    _, hers, _ = await _get(alice, _path(seeded, "b_open"))
    _, his, _ = await _get(bob, _path(seeded, "b_open"))
    assert hers["_etag"] == his["_etag"]
    # A PUT by staff: only note may change; the other fields keep their values.
    body = {"item": "b_open", "owner": "bob", "status": "open", "note": "put"}
    put = await alice.put(_path(seeded, "b_open"), json=body, headers=if_match(hers["_etag"]))
    assert put.status_code == 200, await put.get_json()
    _, after, _ = await _get(bob, _path(seeded, "b_open"))
    assert (after["note"], after["cost"]) == ("put", COSTS["b_open"])
    changed = {**body, "item": "taken"}
    put = await alice.put(_path(seeded, "b_open"), json=changed, headers=if_match(after["_etag"]))
    assert put.status_code == 403
    assert "'item'" in (await put.get_json())["_error"]["message"]
    # Her own document: everything may change.
    _, own, _ = await _get(alice, _path(seeded, "a_open"))
    mine = {"item": "renamed", "owner": "alice", "status": "open", "cost": 1}
    put = await alice.put(_path(seeded, "a_open"), json=mine, headers=if_match(own["_etag"]))
    assert put.status_code == 200, await put.get_json()


async def test_embedded_documents_are_shown_as_their_governing_role_shows_them(
    people: People, seeded: dict[str, Any]
) -> None:
    for item in ("b_secret", "b_open"):
        made = await people.alice.post("/links", json={"note": seeded[item]["_id"]})
        assert made.status_code == 201, await made.get_json()
    status, body, _ = await _get(people.alice, '/links?embedded={"note": 1}')
    assert status == 200, body
    notes = {link["note"]["item"]: link["note"] for link in body["_items"]}
    assert "cost" not in notes["b_secret"]
    assert notes["b_open"]["cost"] == COSTS["b_open"]
    assert SECRET not in json.dumps(body)


async def test_old_versions_show_the_strictest_view(
    settings_factory: SettingsFactory, database: str
) -> None:
    settings = settings_factory(
        resources={"notes": {**NOTES, "versioning": True}}, mongodb={"database": database}
    )
    application = create_app(settings)
    async with application.test_app():
        people = await People().start(application)
        made = await _seed(people)
        path = _path(made, "b_open")
        changed = await people.bob.patch(
            path, json={"status": "secret"}, headers=if_match(made["b_open"]["_etag"])
        )
        assert changed.status_code == 200
        # Now secret: Alice reads it without cost, and no version shows it her.
        for query in ("?version=1", "?version=all", "?version=diffs"):
            status, body, _ = await _get(people.alice, path + query)
            assert status == 200, (query, body)
            assert str(COSTS["b_open"]) not in json.dumps(body), query


# -- the leak sweep -----------------------------------------------------------


async def test_no_caller_sees_what_its_documents_roles_hide(
    app: Quart,
    database: str,
    people: People,
    seeded: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every route and method, as Vic (no role: only his own documents, of
    which he has none, and the secret ones without ``cost``) and then as Alice
    (staff: Bob's secret document without ``cost``): no hidden value, and no
    document outside what the caller may read, in any body, header or log
    line (Shoal's at every level; the others' from INFO)."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="shoal")
    for item in ("a_open", "b_secret"):
        made = await people.bob.post("/links", json={"note": seeded[item]["_id"]})
        assert made.status_code == 201, await made.get_json()
    sweeps = {
        # Vic first: Alice's sweep deletes documents of hers.
        "vic": ({str(COSTS[item]) for item in COSTS}, {"a_open", "b_open"}),
        "alice": ({SECRET}, set()),
    }
    for who, (hidden, outside) in sweeps.items():
        client: Client = getattr(people, who)
        token = await token_for(
            app, "staff" if who == "alice" else "visitor", name=who, user_id=who
        )
        data_api = DataApiClient(app.test_client(), database, "notes", headers=bearer(token))
        sweep = Sweep()
        send = sweep.send

        for query in ("", "?max_results=1", "?max_results=1&page=2", "?sort=-item", "?cursor="):
            await send(f"GET /notes{query}", await client.get(f"/notes{query}"))
            await send(f"HEAD /notes{query}", await client.head(f"/notes{query}"))
        for query in ('?where={"cost": 404404}', '?projection={"cost": 1}', "?sort=cost"):
            await send(f"GET /notes{query}", await client.get(f"/notes{query}"))
        await send("report", await client.get("/report"))
        await send("links", await client.get('/links?embedded={"note": 1}'))
        for item, document in seeded.items():
            path = _path(seeded, item)
            await send(f"GET {item}", await client.get(path))
            await send(f"HEAD {item}", await client.head(path))
            await send(f"projection {item}", await client.get(path + '?projection={"cost": 1}'))
            headers = if_match(document["_etag"])
            await send(
                f"PATCH {item}", await client.patch(path, json={"note": "x"}, headers=headers)
            )
            await send(f"PUT {item}", await client.put(path, json={"item": "y"}, headers=headers))
        for item, document in seeded.items():
            headers = if_match(document["_etag"])
            await send(f"DELETE {item}", await client.delete(_path(seeded, item), headers=headers))
        await send("POST", await client.post("/notes", json={"item": "z", "owner": "bob"}))
        for action, body in (
            ("find", {"filter": {}}),
            ("find", {"filter": {}, "projection": {"cost": 1}}),
            ("findOne", {"filter": {"status": "secret"}}),
            ("aggregate", {"pipeline": [{"$project": {"cost": 1, "item": 1}}]}),
            ("updateMany", {"filter": {}, "update": {"$set": {"note": "x"}}}),
            ("deleteMany", {"filter": {}}),
        ):
            answered = await data_api.call(action, body)
            assert answered.status < 500, (action, answered.text)
            sweep.add(f"data api {action}", answered.text)
        sweep.logs(caplog)
        for what, text in sweep.texts:
            for value in hidden:
                assert value not in text, (who, what, value)
            for item in outside:
                # Its content never; its id only where the request sent it (a 404
                # says it) or a link the caller may read holds it (embedded: null).
                assert f'"{item}"' not in text, (who, what, item)
                sent = item in what or what == "links"
                assert sent or seeded[item]["_id"] not in text, (who, what, item)
