"""``shoal check-config --explain`` (issue 23): the rules a resource's public
methods, ``allowed_*`` roles and ``auth_field`` amount to.

The proof is over HTTP: for each config, one resource keeps the older settings
and a twin (another collection, the same documents) is served by the printed
rules alone (every method public, so that every caller reaches the rules).
Each caller sends the same requests to both, and both answer alike: what a
list shows, and which reads and writes succeed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from bson import ObjectId
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.config.explain import explain_resource
from shoal.config.resources import ResourceSettings
from shoal.storage import get_storage
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.processes import run_shoal

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "owner": {}}}
METHODS = {
    "schema": SCHEMA,
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH", "DELETE"],
}
#: Configs whose explanation notes no difference of access (an owner field's
#: note, that Shoal sets it on inserts, aside): the twin must match.
CONFIGS: dict[str, dict[str, Any]] = {
    "split-roles-public-reads": {
        **METHODS,
        "public_methods": ["GET"],
        "public_item_methods": ["GET"],
        "allowed_read_roles": ["reader"],
        "allowed_write_roles": ["writer"],
    },
    "owner-and-roles": {**METHODS, "allowed_roles": ["member"], "auth_field": "owner"},
    "owner-public-reads": {
        **METHODS,
        "public_methods": ["GET"],
        "public_item_methods": ["GET"],
        "auth_field": "owner",
    },
    "writers-listed": {**METHODS, "allowed_write_roles": ["writer"]},
    "public-writes": {
        **METHODS,
        "public_methods": ["GET", "POST"],
        "public_item_methods": ["GET", "PATCH"],
        "allowed_roles": ["member"],
    },
}
CALLERS = {
    "visitor": [],
    "reader": ["reader"],
    "writer": ["writer"],
    "member": ["member"],
    "everything": ["reader", "writer", "member"],
}
IDS = {name: str(ObjectId()) for name in CALLERS}


def _twin(config: dict[str, Any]) -> dict[str, Any]:
    """The same resource, served by the rules ``--explain`` prints for it."""
    explained = explain_resource(ResourceSettings.model_validate(config))
    twin = {**METHODS, "rules": {"roles": explained.roles}}
    twin["public_methods"] = list(twin["resource_methods"])
    twin["public_item_methods"] = list(twin["item_methods"])
    return twin


@pytest.fixture(params=sorted(CONFIGS))
async def pair(
    request: pytest.FixtureRequest, settings_factory: SettingsFactory
) -> AsyncIterator[tuple[Quart, dict[str, Any]]]:
    config = CONFIGS[request.param]
    settings = settings_factory(
        resources={"orig": config, "twin": _twin(config)},
        mongodb={"database": f"explain_{uuid.uuid4().hex[:12]}"},
    )
    app = create_app(settings)
    async with app.test_app():
        yield app, config


async def _seed(app: Quart) -> list[str]:
    """The same documents in both collections: one owned by each caller."""
    documents = [{"_id": ObjectId(), "title": name, "owner": IDS[name]} for name in CALLERS]
    for collection in ("orig", "twin"):
        await get_storage(app).insert_many(collection, [dict(document) for document in documents])
    return [str(document["_id"]) for document in documents]


async def _outcome(
    client: Client, resource: str, caller: str | None, ids: list[str], owned: bool
) -> list[Any]:
    """What one caller gets from ``resource``: the ids a list shows, and
    whether each read and write succeeds (refusals, 401, 403, 404 or 422,
    alike)."""

    def result(status: int) -> Any:
        return "ok" if status < 300 else "refused" if status in (401, 403, 404, 422) else status

    seen: list[Any] = []
    listed = await client.get(f"/{resource}")
    body = await listed.get_json()
    # A refused list and an empty one alike: the caller sees no document.
    shown = sorted(item["_id"] for item in body["_items"]) if listed.status_code == 200 else []
    seen.append(shown or "nothing")
    for item_id in ids:
        seen.append(result((await client.get(f"/{resource}/{item_id}")).status_code))
    document: dict[str, Any] = {"title": "new"}
    if owned and resource == "twin" and caller is not None:
        document["owner"] = IDS[caller]  # what auth_field sets, the rules check
    seen.append(result((await client.post(f"/{resource}", json=document)).status_code))
    headers = {"If-Match": "*"}
    for item_id in ids:
        patched = await client.patch(f"/{resource}/{item_id}", json={"title": "x"}, headers=headers)
        seen.append(result(patched.status_code))
    for item_id in ids:
        seen.append(
            result((await client.delete(f"/{resource}/{item_id}", headers=headers)).status_code)
        )
    return seen


async def test_the_explained_rules_allow_what_the_settings_allow(
    pair: tuple[Quart, dict[str, Any]],
) -> None:
    app, config = pair
    notes = explain_resource(ResourceSettings.model_validate(config)).notes
    assert [note for note in notes if not note.startswith("auth_field")] == []
    owned = "auth_field" in config
    callers: dict[str | None, Client] = {None: app.test_client()}
    for name, roles in CALLERS.items():
        token = await token_for(app, *roles, name=name, user_id=IDS[name])
        callers[name] = client_with(app, bearer(token))
    outcomes: set[Any] = set()
    for caller, client in callers.items():
        # Fresh documents for each caller: the writes of one do not decide
        # what the next can reach.
        for collection in ("orig", "twin"):
            await get_storage(app).delete_many(collection, {})
        ids = await _seed(app)
        original = await _outcome(client, "orig", caller, ids, owned)
        twin = await _outcome(client, "twin", caller, ids, owned)
        assert twin == original, caller
        outcomes.update(result for result in original if isinstance(result, str))
    assert {"ok", "refused"} <= outcomes  # callers differ: the comparison is not idle


def test_the_explanation_says_where_rules_would_differ(tmp_path: Any) -> None:
    """Settings rules cannot say exactly get a note each, and the printed
    rules load as a resource's ``rules``."""
    config = {
        "environment": "development",
        "resources": {
            "notes": {
                **METHODS,
                "public_methods": ["GET"],
                "allowed_read_roles": ["reader"],
                "allowed_write_roles": ["writer"],
                "auth_field": "owner",
                "datasource": {"source": "notes", "projection": {"secret": 0}},
            },
            "split": {
                **METHODS,
                "allowed_read_roles": ["reader"],
                "allowed_write_roles": ["writer"],
            },
        },
    }
    path = tmp_path / "shoal.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run_shoal(["check-config", "--explain", str(path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    explained = yaml.safe_load(result.stdout)
    printed = explained["notes"]
    notes = "\n".join(printed["notes"])
    assert "GET is public on the list only" in notes
    assert "auth_field 'owner'" in notes
    assert "secret: 0" in notes
    names = [role["name"] for role in printed["rules"]["roles"]]
    assert names == ["readers-writers", "readers", "writers", "signed-in", "anonymous"]
    writers = printed["rules"]["roles"][2]
    assert writers["apply_when"] == {"%%user.roles": {"$in": ["writer"]}}
    assert writers["document_filters"] == {"write": {"owner": "%%user.id"}}
    assert (writers["read"], writers["write"], writers["insert"]) == (True, True, True)
    split = explained["split"]
    assert "role 'writers': with rules, writing implies reading" in "\n".join(split["notes"])
    assert split["rules"]["roles"][2]["read"] is False
    for resource in explained.values():
        ResourceSettings.model_validate({**METHODS, "rules": resource["rules"]})
