"""Rules (issue 23) on the files of media fields (issue 25): a file is read
with the rules of its document and its field, as the document is; a file the
role may not read is a 404, never its bytes, and a role never learns the URL
of a file it may not read."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.auth import get_auth
from tests.api.test_media import form, stored_files
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for

SCAN = b"\x89PNG\r\n\x1a\n" + os.urandom(20_000)
SECRET = b"%PDF-1.7\n" + os.urandom(20_000)
CASES: dict[str, Any] = {
    "schema": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "region": {"type": "string"},
            "scan": {"type": "string", "format": "binary"},
            "secret": {"type": "string", "format": "binary"},
        },
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH", "DELETE"],
    "public_methods": ["GET"],
    "public_item_methods": ["GET"],
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
                    "write": {"region": "%%user.data.region"},
                },
                "read": True,
                "write": True,
                "insert": True,
                "fields": {"secret": {"read": False, "write": False}},
                "additional_fields": {"read": True, "write": True},
            },
        ]
    },
}


@pytest.fixture
async def app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    database = f"rules_media_{uuid.uuid4().hex[:12]}"
    settings = settings_factory(resources={"cases": CASES}, mongodb={"database": database})
    application = create_app(settings)
    async with application.test_app():
        yield application


async def _user(app: Quart, name: str, role: str, data: dict[str, str]) -> Client:
    accounts = get_auth(app).accounts
    user = await accounts.create_user(name, "a-long-password", [role])
    await accounts.set_data(name, data)
    return client_with(app, bearer(await token_for(app, role, name=name, user_id=user.id)))


async def _upload(admin: Client, region: str) -> str:
    files = {
        "scan": ("scan.png", "image/png", SCAN),
        "secret": ("s.pdf", "application/pdf", SECRET),
    }
    response = await admin.post("/cases", **form({"title": region, "region": region}, files))
    assert response.status_code == 201, await response.get_data(as_text=True)
    created: dict[str, Any] = await response.get_json()
    return str(created["_id"])


async def test_a_file_is_read_with_its_documents_and_its_fields_rules(app: Quart) -> None:
    admin = await _user(app, "ada", "admin", {})
    clerk = await _user(app, "north-clerk", "clerk", {"region": "north"})
    north, south = await _upload(admin, "north"), await _upload(admin, "south")

    for field, data in (("scan", SCAN), ("secret", SECRET)):
        answer = await admin.get(f"/cases/{north}/{field}")
        assert answer.status_code == 200
        assert await answer.get_data() == data

    # The clerk: her region's scan, never its secret, nothing of the south.
    answer = await clerk.get(f"/cases/{north}/scan")
    assert answer.status_code == 200
    assert await answer.get_data() == SCAN
    refused = [
        (clerk, f"/cases/{north}/secret"),
        (clerk, f"/cases/{south}/scan"),
        (clerk, f"/cases/{south}/secret"),
        (app.test_client(), f"/cases/{north}/scan"),  # no role applies: nothing
    ]
    for caller, url in refused:
        for answer in (await caller.get(url), await caller.head(url)):
            assert answer.status_code == 404, url
            body = await answer.get_data()
            assert SCAN[8:40] not in body
            assert SECRET[9:40] not in body
            assert "Content-Range" not in answer.headers
        ranged = await caller.get(url, headers={"Range": "bytes=0-7"})
        assert ranged.status_code == 404

    item = await (await clerk.get(f"/cases/{north}")).get_json()
    assert item["scan"] == f"/cases/{north}/scan"
    assert "secret" not in item
    page = await (await clerk.get("/cases")).get_json()
    assert [document["_id"] for document in page["_items"]] == [north]
    assert all("secret" not in document for document in page["_items"])


async def test_a_file_the_role_may_not_write_is_refused_and_not_kept(app: Quart) -> None:
    clerk = await _user(app, "north-clerk", "clerk", {"region": "north"})
    before = await stored_files(app)
    refused = await clerk.post(
        "/cases",
        **form(
            {"title": "n", "region": "north"},
            {"secret": ("secret.pdf", "application/pdf", SECRET)},
        ),
    )
    assert refused.status_code == 403
    assert "secret" in (await refused.get_json())["_error"]["message"]
    outside = await clerk.post(
        "/cases", **form({"title": "s", "region": "south"}, {"scan": ("a.png", None, SCAN)})
    )
    assert outside.status_code == 422
    assert await stored_files(app) == before

    kept = await clerk.post(
        "/cases", **form({"title": "n", "region": "north"}, {"scan": ("a.png", None, SCAN)})
    )
    assert kept.status_code == 201
    created = await kept.get_json()
    assert await (await clerk.get(f"/cases/{created['_id']}/scan")).get_data() == SCAN
