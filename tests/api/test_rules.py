"""Rules (issue 23): per-role document filters and field permissions, in the
shape of Atlas App Services rules, over HTTP.

One resource with three roles: ``admin`` (everything), ``clerk`` (her
region's documents, ``cost`` neither readable nor writable, no deletes, writes
only to documents not closed) and ``anyone`` (anonymous callers too:
published documents, without ``cost`` and ``internal``). Each path is sent
as each role; the sweep at the end looks for what a role may not see in every
body and header.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openapi_spec_validator import validate
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import get_auth
from shoal.config import ConfigError
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.http import if_match
from tests.utils.leaks import Sweep

COSTS = {"north_open": 111_111_1, "south_open": 222_222_2, "north_closed": 333_333_3}
INTERNAL = "internal-note-4d2f"
ORDERS: dict[str, Any] = {
    "schema": {
        "type": "object",
        "properties": {
            "item": {"type": "string"},
            "region": {"type": "string"},
            "status": {"type": "string"},
            "cost": {"type": "integer"},
            "published": {"type": "boolean"},
            "internal": {"type": "string"},
        },
    },
    "resource_methods": ["GET", "POST", "PATCH", "DELETE"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "public_methods": ["GET"],
    "public_item_methods": ["GET"],
    "bulk_writes": True,
    "rules": {
        "roles": [
            {
                "name": "admin",
                "apply_when": {"%%user.roles": "admin"},
                "read": True,
                "write": True,
                "insert": True,
                "delete": True,
            },
            {
                "name": "clerk",
                "apply_when": {"%%user.roles": "clerk"},
                "document_filters": {
                    "read": {"region": "%%user.data.region"},
                    "write": {"region": "%%user.data.region", "status": {"$ne": "closed"}},
                },
                "read": True,
                "write": True,
                "fields": {
                    "cost": {"read": False, "write": False},
                    "published": {"read": True, "write": False},
                },
                "additional_fields": {"read": True, "write": True},
                "insert": True,
                "delete": False,
            },
            {
                "name": "editor",
                # An operator: matched as a query (the others, plain, without one).
                "apply_when": {"%%user.roles": {"$in": ["editor", "senior-editor"]}},
                "read": True,
                "write": True,
                "insert": False,
            },
            {
                "name": "anyone",
                "apply_when": {},
                "document_filters": {"read": {"published": True}},
                "read": True,
                "fields": {"cost": {"read": False}, "internal": {"read": False}},
                "additional_fields": {"read": True},
            },
        ]
    },
}


@pytest.fixture
def database() -> str:
    return f"rules_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def app(settings_factory: SettingsFactory, database: str) -> AsyncIterator[Quart]:
    settings = settings_factory(resources={"orders": ORDERS}, mongodb={"database": database})
    application = create_app(settings)
    async with application.test_app():
        yield application


async def _user(app: Quart, name: str, roles: list[str], data: dict[str, str]) -> Client:
    """A stored user (``%%user.data`` is read from the users collection)."""
    accounts = get_auth(app).accounts
    user = await accounts.create_user(name, "a-long-password", roles)
    await accounts.set_data(name, data)
    return client_with(app, bearer(await token_for(app, *roles, name=name, user_id=user.id)))


class Callers:
    def __init__(self, app: Quart) -> None:
        self.app = app

    async def start(self) -> Callers:
        app = self.app
        self.admin = client_with(app, bearer(await token_for(app, "admin")))
        self.clerk = await _user(app, "clara", ["clerk"], {"region": "north"})
        self.south = await _user(app, "sam", ["clerk"], {"region": "south"})
        self.anonymous = app.test_client()
        self.nobody = client_with(app, bearer(await token_for(app, "visitor")))
        # A clerk with no region in her data: her filters fail closed.
        self.stray = client_with(app, bearer(await token_for(app, "clerk")))
        return self


async def _seed(admin: Client) -> dict[str, dict[str, Any]]:
    documents = {
        "north_open": {"region": "north", "status": "open", "published": True},
        "south_open": {"region": "south", "status": "open", "published": False},
        "north_closed": {"region": "north", "status": "closed", "published": False},
    }
    made = {}
    for key, fields in documents.items():
        body = {"item": key, "cost": COSTS[key], "internal": INTERNAL, **fields}
        response = await admin.post("/orders", json=body)
        assert response.status_code == 201, await response.get_data(as_text=True)
        made[key] = await response.get_json()
    return made


@pytest.fixture
async def callers(app: Quart) -> Callers:
    return await Callers(app).start()


@pytest.fixture
async def seeded(callers: Callers) -> dict[str, dict[str, Any]]:
    return await _seed(callers.admin)


async def _get(client: Client, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    response = await client.get(path, **kwargs)
    text = await response.get_data(as_text=True)
    return response.status_code, json.loads(text) if text else None, response.headers


# -- reads -------------------------------------------------------------------


async def test_each_role_reads_its_documents_and_fields(
    callers: Callers, seeded: dict[str, Any]
) -> None:
    ids = {key: document["_id"] for key, document in seeded.items()}
    expected = {
        "admin": {"north_open", "south_open", "north_closed"},
        "clerk": {"north_open", "north_closed"},
        "south": {"south_open"},
        "anonymous": {"north_open"},
        "nobody": {"north_open"},  # anyone's role: apply_when {} matches every caller
        "stray": set(),
    }
    for who, visible in expected.items():
        client = getattr(callers, who)
        status, body, _headers = await _get(client, "/orders")
        assert status == 200, (who, body)
        assert {item["item"] for item in body["_items"]} == visible, who
        assert body["_meta"]["total"] == len(visible), who
        for key, item_id in ids.items():
            status, document, _ = await _get(client, f"/orders/{item_id}")
            head = await client.head(f"/orders/{item_id}")
            if key in visible:
                assert (status, head.status_code) == (200, 200), (who, key)
                assert ("cost" in document) is (who == "admin"), (who, document)
                shown = who not in ("anonymous", "nobody")
                assert ("internal" in document) is shown, (who, document)
            else:
                assert (status, head.status_code) == (404, 404), (who, key, document)


async def test_a_hidden_field_cannot_be_tested_by_where_or_sort(
    callers: Callers, seeded: dict[str, Any]
) -> None:
    for client in (callers.clerk, callers.anonymous):
        where = json.dumps({"cost": {"$gt": 0}})
        status, body, _ = await _get(client, f"/orders?where={where}")
        assert status == 400, body
        assert "cost" in body["_error"]["message"]
        status, body, _ = await _get(client, "/orders?sort=-cost")
        assert status == 400, body
        for reaching in (
            {"$expr": {"$gt": ["$cost", 0]}},
            {"$jsonSchema": {"properties": {"cost": {"minimum": 5}}}},
        ):
            status, body, _ = await _get(client, f"/orders?where={json.dumps(reaching)}")
            assert status == 400, body
    # A projection naming it shows nothing of it.
    item = f"/orders/{seeded['north_open']['_id']}"
    status, body, _ = await _get(callers.clerk, item + '?projection={"cost": 1}')
    assert "cost" not in body, (status, body)
    # A where on a readable field stays inside the read filter.
    where = json.dumps({"region": "south"})
    status, body, _ = await _get(callers.clerk, f"/orders?where={where}")
    assert status == 200
    assert body["_items"] == []
    assert body["_meta"]["total"] == 0


async def test_etags_are_the_callers_view(callers: Callers, seeded: dict[str, Any]) -> None:
    item = f"/orders/{seeded['north_open']['_id']}"
    _, admin_view, admin_headers = await _get(callers.admin, item)
    _, clerk_view, clerk_headers = await _get(callers.clerk, item)
    _, anon_view, anon_headers = await _get(callers.anonymous, item)
    etags = {admin_headers["ETag"], clerk_headers["ETag"], anon_headers["ETag"]}
    assert len(etags) == 3
    assert len({admin_view["_etag"], clerk_view["_etag"], anon_view["_etag"]}) == 3
    again = await callers.clerk.get(item, headers={"If-None-Match": clerk_headers["ETag"]})
    assert again.status_code == 304
    # A change to a field the clerk cannot see leaves her view, and its ETag, as it was.
    changed = await callers.admin.patch(
        item, json={"cost": 5}, headers=if_match(admin_view["_etag"])
    )
    assert changed.status_code == 200, await changed.get_json()
    _, _, headers = await _get(callers.clerk, item)
    assert headers["ETag"] == clerk_headers["ETag"]


# -- writes ------------------------------------------------------------------


async def test_clerk_writes_inside_her_write_filter_and_writable_fields(
    callers: Callers, seeded: dict[str, Any]
) -> None:
    clerk, admin = callers.clerk, callers.admin
    open_north = f"/orders/{seeded['north_open']['_id']}"
    _, view, _ = await _get(clerk, open_north)
    # If-Match takes the ETag she saw; the stored one (the admin's) is stale to her.
    stale = await clerk.patch(
        open_north, json={"status": "packed"}, headers=if_match(seeded["north_open"]["_etag"])
    )
    assert stale.status_code == 412
    patched = await clerk.patch(
        open_north, json={"status": "packed"}, headers=if_match(view["_etag"])
    )
    body = await patched.get_json()
    assert patched.status_code == 200, body
    assert "cost" not in json.dumps(body)
    assert str(COSTS["north_open"]) not in json.dumps(body)
    # A field her role may not write: 403 naming it (one she may not read too).
    _, view, _ = await _get(clerk, open_north)
    refused = await clerk.patch(
        open_north, json={"published": False}, headers=if_match(view["_etag"])
    )
    assert refused.status_code == 403
    assert "published" in (await refused.get_json())["_error"]["message"]
    refused = await clerk.patch(open_north, json={"cost": 1}, headers=if_match(view["_etag"]))
    assert refused.status_code == 403
    assert "cost" in (await refused.get_json())["_error"]["message"]
    # Outside the write filter (closed) or the read filter (south): 404.
    for key in ("north_closed", "south_open"):
        path = f"/orders/{seeded[key]['_id']}"
        for method in ("patch", "put"):
            response = await getattr(clerk, method)(
                path, json={"status": "x"}, headers=if_match(seeded[key]["_etag"])
            )
            assert response.status_code == 404, (key, method)
        # 404, not 403, even for a field she may not write.
        response = await clerk.patch(path, json={"cost": 1}, headers=if_match("x"))
        assert response.status_code == 404
    # PUT keeps the field she cannot write; changing it is 403.
    _, view, _ = await _get(clerk, open_north)
    body = {"item": "north_open", "region": "north", "status": "open", "published": True}
    put = await clerk.put(open_north, json=body, headers=if_match(view["_etag"]))
    assert put.status_code == 200, await put.get_json()
    _, stored, _ = await _get(admin, open_north)
    assert stored["cost"] == COSTS["north_open"]
    assert "internal" not in stored  # she may write it: her PUT left it out
    _, view, _ = await _get(clerk, open_north)
    put = await clerk.put(open_north, json={**body, "cost": 3}, headers=if_match(view["_etag"]))
    assert put.status_code == 403
    # delete: false.
    _, view, _ = await _get(clerk, open_north)
    deleted = await clerk.delete(open_north, headers=if_match(view["_etag"]))
    assert deleted.status_code == 403


@pytest.mark.real_mongodb(
    reason="the stand-in's conditional replace does not match $ne on a missing field "
    "(its find does)"
)
async def test_a_write_filter_with_ne_takes_a_document_without_the_field(
    callers: Callers,
) -> None:
    made = await callers.admin.post("/orders", json={"item": "m", "region": "north"})
    path = f"/orders/{(await made.get_json())['_id']}"
    _, view, _ = await _get(callers.clerk, path)
    changed = await callers.clerk.patch(path, json={"item": "n"}, headers=if_match(view["_etag"]))
    assert changed.status_code == 200, await changed.get_json()


async def test_inserts(callers: Callers, seeded: dict[str, Any]) -> None:
    clerk = callers.clerk
    outside = await clerk.post("/orders", json={"item": "x", "region": "south", "status": "open"})
    assert outside.status_code == 422, await outside.get_json()
    assert "south" not in await outside.get_data(as_text=True)
    closed = await clerk.post("/orders", json={"item": "x", "region": "north", "status": "closed"})
    assert closed.status_code == 422
    costly = await clerk.post("/orders", json={"item": "x", "region": "north", "cost": 1})
    assert costly.status_code == 403
    assert "cost" in (await costly.get_json())["_error"]["message"]
    made = await clerk.post("/orders", json={"item": "x", "region": "north", "status": "open"})
    assert made.status_code == 201, await made.get_json()
    assert (await callers.anonymous.post("/orders", json={"item": "x"})).status_code == 401
    # anyone's role may not insert; a clerk without a region writes nowhere.
    nobody = await callers.nobody.post("/orders", json={"item": "x"})
    assert nobody.status_code == 403
    stray = await callers.stray.post("/orders", json={"item": "x", "region": "north"})
    assert stray.status_code == 422


async def test_writes_by_filter_count_only_the_write_filter(
    callers: Callers, seeded: dict[str, Any]
) -> None:
    patched = await callers.clerk.patch("/orders?where={}", json={"item": "renamed"})
    body = await patched.get_json()
    assert patched.status_code == 200, body
    assert body["_matched"] == 1
    assert body["_modified"] == 1
    refused = await callers.clerk.patch("/orders?where={}", json={"cost": 0})
    assert refused.status_code == 403
    assert (await callers.clerk.delete("/orders?where={}")).status_code == 403
    assert (await callers.nobody.patch("/orders?where={}", json={"item": "y"})).status_code == 403
    _, listing, _ = await _get(callers.admin, "/orders?sort=item")
    names = sorted(item["item"] for item in listing["_items"])
    assert names == ["north_closed", "renamed", "south_open"]
    deleted = await callers.admin.delete("/orders?where={}")
    assert (await deleted.get_json())["_deleted"] == 3


async def test_admin_deletes(callers: Callers, seeded: dict[str, Any]) -> None:
    path = f"/orders/{seeded['south_open']['_id']}"
    deleted = await callers.admin.delete(path, headers=if_match(seeded["south_open"]["_etag"]))
    assert deleted.status_code == 204


# -- the leak sweep -------------------------------------------------------------


async def test_no_role_sees_what_it_may_not(
    callers: Callers, seeded: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Every route and method, as every role but admin: no hidden value, and
    no document outside the role's read filter, in any body, header or log line
    (Shoal's at every level; the others' from INFO: PyMongo's DEBUG command log
    holds whole replies, whatever the caller sees)."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="shoal")
    hidden_values = {
        "clerk": {str(COSTS[key]) for key in COSTS},
        "south": {str(COSTS[key]) for key in COSTS},
        "anonymous": {*map(str, COSTS.values()), INTERNAL},
        "nobody": {*map(str, COSTS.values()), INTERNAL},
        "stray": {*map(str, COSTS.values()), INTERNAL},
    }
    readable = {
        "clerk": {"north_open", "north_closed"},
        "south": {"south_open"},
        "anonymous": {"north_open"},
        "nobody": {"north_open"},
        "stray": set(),
    }
    for who, values in hidden_values.items():
        client = getattr(callers, who)
        outside = {(key, seeded[key]["_id"]) for key in seeded if key not in readable[who]}
        sweep = Sweep()
        send = sweep.send

        for query in ("", "?max_results=1", "?max_results=1&page=2", "?sort=-item", "?cursor="):
            await send(f"GET /orders{query}", await client.get(f"/orders{query}"))
            await send(f"HEAD /orders{query}", await client.head(f"/orders{query}"))
        await send("where", await client.get('/orders?where={"cost": 1}'))
        await send("projection", await client.get('/orders?projection={"cost": 1}'))
        for key, document in seeded.items():
            path = f"/orders/{document['_id']}"
            await send(f"GET {key}", await client.get(path))
            await send(f"HEAD {key}", await client.head(path))
            await send(f"projection {key}", await client.get(path + '?projection={"cost": 1}'))
            headers = if_match(document["_etag"])
            await send(f"PATCH {key}", await client.patch(path, json={"x": 1}, headers=headers))
            await send(f"PUT {key}", await client.put(path, json={"item": "y"}, headers=headers))
            await send(f"DELETE {key}", await client.delete(path, headers=headers))
        await send("POST", await client.post("/orders", json={"item": "z", "region": "west"}))
        await send("PATCH where", await client.patch("/orders?where={}", json={"x": 1}))
        await send("DELETE where", await client.delete("/orders?where={}"))
        sweep.logs(caplog)
        for what, text in sweep.texts:
            for value in values:
                assert value not in text, (who, what, value)
            for key, item_id in outside:
                # Its content never; its id only where the request sent it (a 404 says it).
                assert key not in text, (who, what, key)
                assert key in what or item_id not in text, (who, what, key)


# -- the config ----------------------------------------------------------------


def _rules(**role: Any) -> dict[str, Any]:
    return {"roles": [{"name": "r", **role}]}


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"rules": _rules(aply_when={})}, "aply_when"),
        # %%root is taken only as a top-level key of apply_when (test_rules_root.py).
        (
            {"rules": _rules(apply_when={"$or": [{"%%root.owner": "%%user.id"}]})},
            "apply_when: %%root is taken only as a top-level key",
        ),
        (
            {"rules": _rules(apply_when={"%%user.id": "%%root.owner"})},
            "apply_when: %%root is taken only as a top-level key",
        ),
        (
            {"rules": _rules(apply_when={"%%root.owner": {"$in": ["%%root.editor"]}})},
            "apply_when['%%root.owner']: %%root is taken only",
        ),
        (
            {"rules": _rules(document_filters={"read": {"owner": "%%root.owner"}})},
            "document_filters: %%root is taken only",
        ),
        ({"rules": _rules(apply_when={"%%root.": 1})}, "names no field"),
        (
            {
                "rules": {
                    "roles": [
                        {"name": "mine", "apply_when": {"%%root.owner": "%%user.id"}},
                        {"name": "r", "read": True, "fields": {"owner": {"read": False}}},
                    ]
                }
            },
            "role 'r' hides 'owner', which %%root.owner names",
        ),
        (
            {
                "rules": _rules(apply_when={"%%root.owner": "%%user.id"}),
                "datasource": {"projection": {"owner": 0}},
            },
            "%%root.owner, which datasource.projection hides",
        ),
        (
            {
                "rules": _rules(apply_when={"%%root.owner": "%%user.id"}),
                "datasource": {"projection": {"item": 1}},
            },
            "%%root.owner, which datasource.projection hides",
        ),
        ({"rules": _rules(apply_when={"%%user.email": "x"})}, "%%user.email"),
        ({"rules": _rules(apply_when={"%function": {"name": "f"}})}, "% operators"),
        ({"rules": {"roles": []}}, "roles"),
        ({"rules": _rules(fields={"a.b": {"read": True}})}, "nested"),
        (
            {"rules": _rules(), "datasource": {"aggregation": {"pipeline": [{"$match": {}}]}}},
            "aggregation endpoint",
        ),
        ({"rules": _rules(document_filters={"read": {"$where": "1"}})}, "$where"),
    ],
)
def test_the_config_refuses_what_rules_do_not_take(
    settings_factory: SettingsFactory, resource: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_factory(resources={"things": {"schema": {"type": "object"}, **resource}})
    assert expected in str(raised.value)


async def test_the_openapi_document_says_rules_apply(app: Quart) -> None:
    response = await app.test_client().get("/openapi.json")
    document = await response.get_json()
    validate(document)
    for path in ("/orders", "/orders/{item_id}"):
        for method, operation in document["paths"][path].items():
            if method in ("get", "post", "patch", "put", "delete"):
                assert "Rules apply" in operation["description"], (path, method)
    assert "403" in document["paths"]["/orders"]["post"]["responses"]
