"""Media fields (issue 25): files sent as multipart/form-data parts beside a
document's fields, kept in GridFS, and read back at ``/<resource>/<id>/<field>``
with the document's access rules.

Every test reads what a client would notice: statuses, bodies, headers, the
bytes read back, and what GridFS holds (``fs.files`` and ``fs.chunks``) after a
write or a refusal.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from quart import Quart
from quart.typing import TestClientProtocol as Client

from shoal.app import create_app
from shoal.cli.main import main
from shoal.config import ConfigError, get_settings
from shoal.openapi import openapi_document
from shoal.resources.media import Media
from shoal.storage import get_storage
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.data_api import DataApiClient, api_key, data_api_config
from tests.utils.http import if_match
from tests.utils.settings import write_config
from tests.utils.streams import listening

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(600_000)
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(5_000)
GIF = b"GIF89a" + os.urandom(100)

WRITABLE = {
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET", "PATCH", "PUT", "DELETE"],
    "allowed_roles": ["editor"],
}
RESOURCES: dict[str, Any] = {
    "photos": {
        "schema": {
            "type": "object",
            "required": ["title"],
            "properties": {
                "title": {"type": "string"},
                "rank": {"type": "integer"},
                "image": {
                    "type": "string",
                    "x-media": {
                        "max_bytes": 1_000_000,
                        "content_types": ["image/png", "image/jpeg"],
                    },
                },
                "attachment": {"type": ["string", "null"], "format": "binary"},
            },
        },
        "media": {"max_body_bytes": 1_500_000, "max_parts": 4},
        "streams": True,
        **WRITABLE,
        "public_methods": ["GET"],
        "public_item_methods": ["GET"],
    },
    "letters": {
        "schema": {
            "type": "object",
            "properties": {
                "subject": {"type": "string"},
                "scan": {"type": "string", "format": "binary"},
            },
        },
        "auth_field": "owner",
        **WRITABLE,
    },
    "albums": {
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "cover": {"type": "string", "format": "binary"},
            },
        },
        "media": {"base64": True},
        **WRITABLE,
        "public_methods": ["GET"],
        "public_item_methods": ["GET"],
    },
    "records": {
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "photo": {"type": "string", "format": "binary"},
                "secret": {"type": "string", "format": "binary"},
            },
        },
        "datasource": {"projection": {"secret": 0}},
        **WRITABLE,
        "public_item_methods": ["GET"],
    },
}


def form(
    fields: dict[str, str] | None = None,
    files: Mapping[str, tuple[str, str | None, bytes]] | None = None,
) -> dict[str, Any]:
    """A multipart/form-data body and its Content-Type, as a browser sends one."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for name, value in (fields or {}).items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += value.encode() + b"\r\n"
    for name, (filename, content_type, data) in (files or {}).items():
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\n'
        ).encode()
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return {
        "data": bytes(body),
        "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    }


def sent(request: dict[str, Any], **headers: str) -> dict[str, Any]:
    return {**request, "headers": {**request["headers"], **headers}}


@pytest.fixture
async def app(settings_factory: SettingsFactory) -> AsyncIterator[Quart]:
    database = f"media_{uuid.uuid4().hex[:12]}"
    settings = settings_factory(
        resources=RESOURCES,
        mongodb={"database": database},
        data_api=data_api_config(database, photos={"roles": ["editor"]}),
    )
    application = create_app(settings)
    async with application.test_app():
        yield application


@pytest.fixture
async def editor(app: Quart) -> Client:
    return client_with(app, bearer(await token_for(app, "editor")))


async def stored_files(app: Quart) -> tuple[int, int]:
    """How many files GridFS holds, and how many chunks in all. (The embedded
    store counts neither collection and lists a chunk only by its file's id:
    there, the chunks of a file no document names cannot be seen, and the
    second figure is 0; DocumentDB and MongoDB list them all.)"""
    database = get_storage(app).database
    files = await database["fs.files"].find({}, {"_id": 1}).to_list()
    chunks = await database["fs.chunks"].find({}, {"_id": 1}).to_list()
    return len(files), len(chunks)


async def chunks_of(app: Quart, file_id: Any) -> int:
    """How many chunks the file ``file_id`` has."""
    chunks = get_storage(app).database["fs.chunks"]
    return len(await chunks.find({"files_id": file_id}, {"_id": 1}).to_list())


async def file_ids(app: Quart) -> list[Any]:
    files = await get_storage(app).database["fs.files"].find({}, {"_id": 1}).to_list()
    return [document["_id"] for document in files]


async def upload(client: Client, resource: str, **parts: Any) -> dict[str, Any]:
    response = await client.post(f"/{resource}", **form(**parts))
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 201, body
    return body


async def test_upload_and_read_back_byte_for_byte(app: Quart, editor: Client) -> None:
    created = await upload(
        editor,
        "photos",
        fields={"title": "dunes", "rank": "3"},
        files={"image": ("dunes.png", "image/png", PNG)},
    )
    item = await (await app.test_client().get(f"/photos/{created['_id']}")).get_json()
    assert item["title"] == "dunes"
    assert item["rank"] == 3
    assert item["image"] == f"/photos/{created['_id']}/image"

    response = await app.test_client().get(item["image"])
    assert response.status_code == 200
    assert await response.get_data() == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Length"] == str(len(PNG))
    assert response.headers["ETag"]
    assert response.headers["Last-Modified"]
    assert response.headers["Accept-Ranges"] == "bytes"
    listed = await (await app.test_client().get("/photos")).get_json()
    assert listed["_items"][0]["image"] == item["image"]
    (stored,) = await file_ids(app)
    assert await chunks_of(app, stored) == 3  # 600 kB in 255 KiB chunks


async def test_range_requests(app: Quart, editor: Client) -> None:
    created = await upload(
        editor, "photos", fields={"title": "r"}, files={"image": ("r.jpg", "image/jpeg", JPEG)}
    )
    url = f"/photos/{created['_id']}/image"
    anonymous = app.test_client()
    part = await anonymous.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert await part.get_data() == JPEG[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(JPEG)}"
    assert part.headers["Content-Length"] == "100"
    tail = await anonymous.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert await tail.get_data() == JPEG[-10:]
    beyond = await anonymous.get(url, headers={"Range": f"bytes={len(JPEG) + 5}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(JPEG)}"
    assert (await beyond.get_json())["_error"]["code"] == 416


async def test_if_none_match_gives_304(app: Quart, editor: Client) -> None:
    created = await upload(
        editor, "photos", fields={"title": "c"}, files={"image": ("c.jpg", "image/jpeg", JPEG)}
    )
    url = f"/photos/{created['_id']}/image"
    first = await app.test_client().get(url)
    again = await app.test_client().get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert await again.get_data() == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    head = await app.test_client().head(url)
    assert head.status_code == 200
    assert head.headers["ETag"] == first.headers["ETag"]
    assert await head.get_data() == b""


async def test_a_file_larger_than_max_bytes_is_413_and_nothing_is_stored(
    app: Quart, editor: Client
) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(1_000_001)
    response = await editor.post(
        "/photos", **form(fields={"title": "big"}, files={"image": ("b.png", "image/png", big)})
    )
    assert response.status_code == 413
    assert "max_bytes" in (await response.get_json())["_error"]["message"]
    assert await stored_files(app) == (0, 0)
    assert (await (await app.test_client().get("/photos")).get_json())["_items"] == []


async def test_a_body_over_max_body_bytes_or_max_parts_is_413(app: Quart, editor: Client) -> None:
    files = {
        "image": ("a.png", "image/png", PNG),
        "attachment": ("a.bin", "application/octet-stream", bytes(1_000_000)),
    }
    too_big = await editor.post("/photos", **form(fields={"title": "t"}, files=files))
    assert too_big.status_code == 413
    assert "max_body_bytes" in (await too_big.get_json())["_error"]["message"]
    fields = {f"f{number}": "x" for number in range(5)}
    too_many = await editor.post("/photos", **form(fields={"title": "t", **fields}))
    assert too_many.status_code == 413
    assert "max_parts" in (await too_many.get_json())["_error"]["message"]
    assert await stored_files(app) == (0, 0)


async def test_a_lying_content_type_is_415_and_nothing_is_stored(
    app: Quart, editor: Client
) -> None:
    # The header says PNG; the bytes are a GIF's.
    lying = await editor.post(
        "/photos", **form(fields={"title": "l"}, files={"image": ("l.png", "image/png", GIF)})
    )
    assert lying.status_code == 415
    assert "image/png" in (await lying.get_json())["_error"]["message"]
    # A GIF, said to be one, is not among the field's content types.
    refused = await editor.post(
        "/photos", **form(fields={"title": "g"}, files={"image": ("g.gif", "image/gif", GIF)})
    )
    assert refused.status_code == 415
    # A valid first file, then a lying second one: the first is removed too.
    files = {
        "attachment": ("ok.bin", "application/octet-stream", bytes(300_000)),
        "image": ("x.jpg", "image/jpeg", PNG),
    }
    mixed = await editor.post("/photos", **form(fields={"title": "m"}, files=files))
    assert mixed.status_code == 415
    # A declared type that is no media type (it would be sent back as a header).
    for declared in ("text/plain\u00e9", "no-slash", "text/html, image/png"):
        files = {"attachment": ("a.bin", declared, b"plain bytes")}
        odd = await editor.post("/photos", **form(fields={"title": "o"}, files=files))
        assert odd.status_code == 415, declared
        assert "is not a media type" in (await odd.get_json())["_error"]["message"]
    assert await stored_files(app) == (0, 0)


async def test_an_invalid_document_stores_no_file(app: Quart, editor: Client) -> None:
    response = await editor.post(
        "/photos", **form(fields={"rank": "3"}, files={"image": ("a.png", "image/png", PNG)})
    )
    assert response.status_code == 422
    assert (await response.get_json())["_issues"] == {"title": "required field"}
    assert await stored_files(app) == (0, 0)


async def test_json_cannot_name_a_file(app: Quart, editor: Client) -> None:
    response = await editor.post("/photos", json={"title": "j", "image": "0" * 24})
    assert response.status_code == 422
    assert "multipart" in (await response.get_json())["_issues"]["image"]
    not_a_file = await editor.post("/photos", **form(fields={"title": "t", "image": "x"}))
    assert not_a_file.status_code == 422


async def test_replace_and_patch_remove_the_old_file(app: Quart, editor: Client) -> None:
    created = await upload(
        editor, "photos", fields={"title": "v1"}, files={"image": ("1.png", "image/png", PNG)}
    )
    url = f"/photos/{created['_id']}"
    patched = await editor.patch(
        url,
        **sent(form(files={"image": ("2.jpg", "image/jpeg", JPEG)}), **if_match(created["_etag"])),
    )
    assert patched.status_code == 200, await patched.get_json()
    assert await (await app.test_client().get(f"{url}/image")).get_data() == JPEG
    (second,) = await file_ids(app)
    assert await chunks_of(app, second) == 1
    put = await editor.put(
        url,
        **sent(
            form(
                fields={"title": "v3"},
                files={"attachment": ("3.bin", "application/octet-stream", b"three")},
            ),
            **if_match((await patched.get_json())["_etag"]),
        ),
    )
    assert put.status_code == 200, await put.get_json()
    item = await (await app.test_client().get(url)).get_json()
    assert "image" not in item
    assert await (await app.test_client().get(f"{url}/attachment")).get_data() == b"three"
    assert (await app.test_client().get(f"{url}/image")).status_code == 404
    assert len(await file_ids(app)) == 1
    assert await chunks_of(app, second) == 0


async def test_a_stale_write_keeps_the_old_file_and_stores_no_new_one(
    app: Quart, editor: Client
) -> None:
    created = await upload(
        editor, "photos", fields={"title": "v1"}, files={"image": ("1.png", "image/png", PNG)}
    )
    stale = await editor.patch(
        f"/photos/{created['_id']}",
        **sent(form(files={"image": ("2.jpg", "image/jpeg", JPEG)}), **if_match("0" * 40)),
    )
    assert stale.status_code == 412
    response = await app.test_client().get(f"/photos/{created['_id']}/image")
    assert await response.get_data() == PNG
    (stored,) = await file_ids(app)
    assert await chunks_of(app, stored) == 3


async def test_delete_removes_the_file(app: Quart, editor: Client) -> None:
    created = await upload(
        editor, "photos", fields={"title": "d"}, files={"image": ("d.png", "image/png", PNG)}
    )
    deleted = await editor.delete(f"/photos/{created['_id']}", headers=if_match(created["_etag"]))
    assert deleted.status_code == 204
    assert (await app.test_client().get(f"/photos/{created['_id']}/image")).status_code == 404
    assert await stored_files(app) == (0, 0)


async def test_an_owners_file_is_404_to_another_user(app: Quart) -> None:
    alice = client_with(app, bearer(await token_for(app, "editor", name="alice")))
    bob = client_with(app, bearer(await token_for(app, "editor", name="bob")))
    created = await upload(
        alice, "letters", fields={"subject": "hi"}, files={"scan": ("s.pdf", None, b"%PDF-1.7 x")}
    )
    url = f"/letters/{created['_id']}/scan"
    mine = await alice.get(url)
    assert mine.status_code == 200
    assert await mine.get_data() == b"%PDF-1.7 x"
    assert mine.headers["Content-Type"] == "application/pdf"  # from its signature
    assert (await bob.get(url)).status_code == 404
    assert (await app.test_client().get(url)).status_code == 401


async def test_a_hidden_fields_file_is_404(app: Quart, editor: Client) -> None:
    files = {
        "photo": ("p.jpg", "image/jpeg", JPEG),
        "secret": ("s.bin", "application/octet-stream", b"classified"),
    }
    created = await upload(editor, "records", fields={"name": "n"}, files=files)
    item = await (await app.test_client().get(f"/records/{created['_id']}")).get_json()
    assert "secret" not in item
    assert (await app.test_client().get(f"/records/{created['_id']}/photo")).status_code == 200
    hidden = await app.test_client().get(f"/records/{created['_id']}/secret")
    assert hidden.status_code == 404
    assert b"classified" not in await hidden.get_data()


async def test_malformed_multipart_is_400(app: Quart, editor: Client) -> None:
    no_boundary = await editor.post(
        "/photos", data=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    request = form(fields={"title": "t"})
    cut = await editor.post("/photos", data=request["data"][:-20], headers=request["headers"])
    assert cut.status_code == 400
    assert await stored_files(app) == (0, 0)


def test_config_refuses_bad_media_declarations(settings_factory: SettingsFactory) -> None:
    def resource(rule: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"things": {"schema": {"type": "object", "properties": {"f": rule}}, **extra}}

    cases = [
        (resource({"type": "string", "x-media": {"max_byte": 3}}), "unknown keys max_byte"),
        (resource({"type": "string", "x-media": {"max_bytes": 0}}), "max_bytes"),
        (resource({"type": "string", "x-media": {"content_types": ["png"]}}), "not a media type"),
        (resource({"type": "integer", "format": "binary"}), "type: string"),
        (
            resource(
                {"type": "object", "properties": {"g": {"type": "string", "format": "binary"}}}
            ),
            "top-level",
        ),
        (resource({"type": "string", "format": "binary"}, versioning=True), "versioning"),
    ]
    for resources, message in cases:
        with pytest.raises(ConfigError, match=message):
            settings_factory(resources=resources)


async def test_gc_removes_the_orphan_a_crash_leaves(
    app: Quart,
    editor: Client,
    monkeypatch: pytest.MonkeyPatch,
    mongodb_uri: str,
    tmp_path: Path,
) -> None:
    """A crash between a replacing write and the old file's removal leaves the
    old file held by no document; `shoal media gc` removes it, and only it."""
    created = await upload(
        editor, "photos", fields={"title": "v1"}, files={"image": ("1.png", "image/png", PNG)}
    )
    (old,) = await file_ids(app)

    async def crash(self: Media, before: Any, after: Any) -> None:
        raise ConnectionError("the worker died here")

    monkeypatch.setattr(Media, "replaced", crash)
    written = await editor.patch(
        f"/photos/{created['_id']}",
        **sent(form(files={"image": ("2.jpg", "image/jpeg", JPEG)}), **if_match(created["_etag"])),
    )
    # The write succeeded: its answer says so, whatever became of the old file.
    assert written.status_code == 200
    monkeypatch.undo()
    # The document names the new file; the old one is an orphan, never the reverse.
    image = await app.test_client().get(f"/photos/{created['_id']}/image")
    assert await image.get_data() == JPEG
    assert len(await file_ids(app)) == 2

    database = get_settings(app).mongodb.database
    config = write_config(
        tmp_path, mongodb={"uri": mongodb_uri, "database": database}, resources=RESOURCES
    )

    async def gc(*args: str) -> int:
        # The command runs its own event loop: in a thread, as from a shell.
        return await asyncio.to_thread(main, ["media", "gc", *args, "--config", str(config)])

    assert await gc("--grace", "3600") == 0
    assert len(await file_ids(app)) == 2  # younger than the grace period: spared
    assert await gc("--grace", "0", "--dry-run") == 0
    assert len(await file_ids(app)) == 2
    assert await gc("--grace", "0") == 0
    assert old not in await file_ids(app)
    assert len(await file_ids(app)) == 1
    image = await app.test_client().get(f"/photos/{created['_id']}/image")
    assert await image.get_data() == JPEG


async def test_the_data_api_reads_a_media_field_as_its_id(app: Quart, editor: Client) -> None:
    created = await upload(
        editor, "photos", fields={"title": "d"}, files={"image": ("d.jpg", "image/jpeg", JPEG)}
    )
    (stored,) = await file_ids(app)
    key = await api_key(app, "editor")
    database = get_settings(app).mongodb.database
    data_api = DataApiClient(app.test_client(), database, "photos", headers={"apiKey": key})
    found = await data_api.call("findOne", {"filter": {"title": "d"}}, ejson=True)
    assert found.status == 200, found.text
    document = found.ejson["document"]
    assert document["image"] == stored
    assert str(document["_id"]) == created["_id"]


@pytest.mark.engine_gap(documentdb="change_streams")
async def test_a_stream_event_carries_the_files_url(app: Quart, editor: Client) -> None:
    async with listening(app.test_client(), "/photos/_stream") as stream:
        created = await upload(
            editor, "photos", fields={"title": "e"}, files={"image": ("e.jpg", "image/jpeg", JPEG)}
        )
        (event,) = await stream.wait_for(1)
    assert event.data["document"]["image"] == f"/photos/{created['_id']}/image"


async def test_base64_inline_mode_gives_the_files_bytes_in_reads(
    app: Quart, editor: Client
) -> None:
    created = await upload(
        editor, "albums", fields={"name": "a"}, files={"cover": ("c.jpg", "image/jpeg", JPEG)}
    )
    item = await (await app.test_client().get(f"/albums/{created['_id']}")).get_json()
    assert base64.b64decode(item["cover"]) == JPEG
    listed = await (await app.test_client().get("/albums")).get_json()
    assert base64.b64decode(listed["_items"][0]["cover"]) == JPEG
    # Its URL still serves it.
    response = await app.test_client().get(f"/albums/{created['_id']}/cover")
    assert await response.get_data() == JPEG


async def test_a_keyed_upload_is_done_once(app: Quart, editor: Client) -> None:
    """With an Idempotency-Key the body is read whole first (its fingerprint),
    within max_body_bytes; a retry gets the first answer and stores nothing."""
    request = form(fields={"title": "k"}, files={"image": ("k.jpg", "image/jpeg", JPEG)})
    keyed = sent(request, **{"Idempotency-Key": uuid.uuid4().hex})
    first = await editor.post("/photos", **keyed)
    assert first.status_code == 201, await first.get_json()
    again = await editor.post("/photos", **keyed)
    assert again.status_code == 201
    assert (await again.get_json())["_id"] == (await first.get_json())["_id"]
    assert len(await file_ids(app)) == 1
    # 1.2 MB: within media.max_body_bytes, beyond max_body_bytes (1 MiB).
    large = ("b.bin", "application/octet-stream", bytes(1_200_000))
    big = form(fields={"title": "b"}, files={"attachment": large})
    too_big = await editor.post("/photos", **sent(big, **{"Idempotency-Key": uuid.uuid4().hex}))
    assert too_big.status_code == 413
    assert "max_body_bytes" in (await too_big.get_json())["_error"]["message"]
    assert len(await file_ids(app)) == 1


async def test_an_empty_file_input_sends_no_file(app: Quart, editor: Client) -> None:
    request = form(fields={"title": "e"}, files={"image": ("", "application/octet-stream", b"")})
    created = await editor.post("/photos", **request)
    assert created.status_code == 201, await created.get_json()
    item = await (
        await app.test_client().get(f"/photos/{(await created.get_json())['_id']}")
    ).get_json()
    assert "image" not in item
    assert await file_ids(app) == []


def test_the_openapi_document_has_multipart_bodies_and_binary_answers(app: Quart) -> None:
    document = openapi_document(app)
    validate(document)
    paths = document["paths"]
    create = paths["/photos"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert create["schema"]["properties"]["image"]["format"] == "binary"
    assert create["schema"]["properties"]["rank"] == {"type": "integer"}
    assert create["encoding"] == {"image": {"contentType": "image/png, image/jpeg"}}
    patch = paths["/photos/{item_id}"]["patch"]["requestBody"]["content"]
    assert "required" not in patch["multipart/form-data"]["schema"]
    read = paths["/photos/{item_id}/image"]["get"]
    assert set(read["responses"]["200"]["content"]) == {"image/png", "image/jpeg"}
    assert {"200", "206", "304", "404", "416"} <= set(read["responses"])
    assert "/photos/{item_id}/attachment" in paths
    item = document["components"]["schemas"]
    assert any(
        schema.get("properties", {}).get("image", {}).get("format") == "uri-reference"
        for schema in item.values()
    )


async def test_an_upload_that_stalls_gets_408_and_stores_nothing(
    settings_factory: SettingsFactory,
) -> None:
    """The body deadline paces a multipart write it does not read whole: a
    client that stops sending mid-file gets 408, and what was stored of the
    file is removed."""
    settings = settings_factory(
        resources=RESOURCES, slow_clients={"body_timeout": 1.0, "body_min_rate": 0}
    )
    application = create_app(settings)
    async with application.test_app():
        token = await token_for(application, "editor")
        big = ("s.bin", "application/octet-stream", bytes(1_300_000))
        request = form(fields={"title": "slow"}, files={"attachment": big})
        body: bytes = request["data"]
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/photos",
            "raw_path": b"/photos",
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "headers": [
                (b"host", b"test"),
                (b"content-type", request["headers"]["Content-Type"].encode()),
                (b"content-length", str(len(body)).encode()),
                (b"authorization", f"Bearer {token}".encode()),
            ],
        }
        # The fields and most of the file (chunks in GridFS by then), then nothing.
        pieces = [body[:1_200_000]]

        async def receive() -> dict[str, Any]:
            if pieces:
                return {"type": "http.request", "body": pieces.pop(), "more_body": True}
            await asyncio.sleep(30)  # a client that stopped sending
            return {"type": "http.disconnect"}

        sent_messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent_messages.append(message)

        # The whole stack, as the server calls it (Quart types it with its own events).
        stack: Any = application.asgi_app
        await asyncio.wait_for(stack(scope, receive, send), 20)
        start = sent_messages[0]
        assert start["status"] == 408
        error = json.loads(b"".join(m.get("body", b"") for m in sent_messages[1:]))
        assert "did not arrive in time" in error["_error"]["message"]
        assert (b"connection", b"close") in start["headers"]
        assert await stored_files(application) == (0, 0)


async def test_null_in_a_json_patch_removes_a_nullable_fields_file(
    app: Quart, editor: Client
) -> None:
    files = {"image": ("n.jpg", "image/jpeg", JPEG), "attachment": ("a.txt", "text/plain", b"a")}
    created = await upload(editor, "photos", fields={"title": "n"}, files=files)
    url = f"/photos/{created['_id']}"
    # image's schema allows no null: the schema refuses it, and nothing changes.
    refused = await editor.patch(url, json={"image": None}, headers=if_match(created["_etag"]))
    assert refused.status_code == 422
    patched = await editor.patch(url, json={"attachment": None}, headers=if_match(created["_etag"]))
    assert patched.status_code == 200, await patched.get_json()
    item = await (await app.test_client().get(url)).get_json()
    assert item["attachment"] is None
    assert item["image"] == f"{url}/image"
    assert len(await file_ids(app)) == 1
    assert (await app.test_client().get(f"{url}/attachment")).status_code == 404
