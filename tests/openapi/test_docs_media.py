"""/docs in Chromium (Playwright, Debian's chromium) against a real `shoal
serve` with a media field: "Try it out" on the create operation offers a file
input for it, uploads the chosen file as multipart/form-data, and the file's
URL then serves the same bytes."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.openapi.test_docs import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, open_operation
from tests.utils.live import LiveServer, live_example
from tests.utils.settings import example_resources

EDITOR = ("docs-media-editor", "correct horse battery")
PHOTOS = {
    "schema": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string"},
            "image": {"type": "string", "x-media": {"content_types": ["image/png"]}},
        },
    },
    "resource_methods": ["GET", "POST"],
    "item_methods": ["GET"],
    "public_methods": ["GET"],
    "public_item_methods": ["GET"],
    "allowed_roles": ["editor"],
}


@pytest.fixture
def live(tmp_path: Path, mongodb_uri: str, redis_url: str) -> Iterator[LiveServer]:
    resources = {**example_resources(), "photos": PHOTOS}
    (tmp_path / "server").mkdir()
    with live_example(tmp_path / "server", mongodb_uri, redis_url, resources=resources) as server:
        server.create_user(*EDITOR, "editor")
        yield server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


def fetch(url: str) -> tuple[bytes, str]:
    """The body and Content-Type a GET of ``url`` answers."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return response.read(), response.headers["Content-Type"]


async def test_try_it_out_uploads_a_file(
    live: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(20_000)
    chosen = tmp_path / "chosen.png"
    chosen.write_bytes(png)
    editor = live.login(*EDITOR)["access_token"]
    page = await browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{live.url}/docs")

    await page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    bearer = dialog.locator(".auth-container").filter(has_text="bearerAuth")
    await bearer.locator("input").fill(editor)
    await bearer.locator("button.authorize").click()
    await dialog.locator("button.close-modal").click()

    create = await open_operation(page, "photos", "create_photos")
    await create.locator(".body-param-content-type select").select_option("multipart/form-data")
    title = f"Uploaded through the docs page {uuid.uuid4().hex[:8]}"
    row = create.locator("tr").filter(has_text="title").first
    await row.locator("input[type=text], textarea").first.fill(title)
    await create.locator("input[type=file]").first.set_input_files(str(chosen))
    await create.locator("button.execute").click()
    answered = create.locator(".live-responses-table")
    await expect(answered.locator("tr.response .response-col_status")).to_have_text("201")

    listed, _ = fetch(f"{live.url}/photos?max_results=50")
    (item,) = [item for item in json.loads(listed)["_items"] if item["title"] == title]
    assert fetch(f"{live.url}{item['image']}") == (png, "image/png")
