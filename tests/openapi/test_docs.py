"""/docs in a real browser (Debian's chromium, driven by Playwright) against a
real `shoal serve`: the page lists every resource, runs requests through "Try it
out" (an anonymous GET, then, with a real user's bearer token set in the
Authorize dialog, GET /auth/me and a POST), and loads nothing from anywhere but
the server under test."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright, expect

from shoal.app import create_app
from shoal.openapi.docs import ASSETS
from tests.utils.live import LiveServer, live_example
from tests.utils.settings import TEST_SECRET, example_resources

#: Debian's chromium package; never a browser downloaded by `playwright install`.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
#: Seconds any one thing on the page may take to appear.
TIMEOUT_MS = 15_000


# --- in process: the page, its files and their policy ---------------------------------


async def test_the_page_and_every_file_it_names_are_served_with_the_policy() -> None:
    app = create_app(
        {"environment": "test", "secret_key": TEST_SECRET, "resources": example_resources()}
    )
    client = app.test_client()
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = await page.get_data(as_text=True)
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "'unsafe-inline'" not in policy
    assert "<script>" not in html  # no inline script: the policy would block it
    assert "style=" not in html

    names = re.findall(r'(?:src|href)="([^"]+)"', html)
    files = [name for name in names if name.startswith("/docs/assets/")]
    assert len(files) == 5, names  # favicon, 2 stylesheets, 2 scripts
    for name in files:
        response = await client.get(name)
        assert response.status_code == 200, name
        assert response.headers["Content-Security-Policy"] == policy
    assert "/openapi.json" in names


async def test_nothing_outside_the_assets_is_served() -> None:
    app = create_app({"environment": "test", "secret_key": TEST_SECRET})
    client = app.test_client()
    for path in ("/docs/assets/../docs.py", "/docs/assets/%2e%2e/docs.py", "/docs/assets/nope.js"):
        assert (await client.get(path)).status_code == 404, path


def test_the_vendored_swagger_ui_is_unmodified_and_licensed() -> None:
    vendored = ASSETS / "swagger-ui"
    source = (vendored / "SOURCE.txt").read_text()
    listed = {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", source, re.M)}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"} <= listed.keys()
    for name, digest in listed.items():
        assert hashlib.sha256((vendored / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (vendored / "LICENSE").read_text()


# --- in a browser, against `shoal serve` -------------------------------------------------


#: A real user, made with `shoal users create`, who logs in over HTTP.
EDITOR = ("docs-editor", "a long enough docs password")


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str
) -> Iterator[LiveServer]:
    with live_example(tmp_path_factory.mktemp("docs"), mongodb_uri, redis_url) as server:
        server.create_user(*EDITOR, "editor")
        yield server


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


def post_json(url: str, body: Any, token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL the test built
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status), json.loads(response.read())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


class PageWatch:
    """Every request the page makes, and every error or CSP violation it reports."""

    def __init__(self, page: Page) -> None:
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def foreign(self, origin: str) -> list[str]:
        """Requests to anything but ``origin`` (``data:`` URIs name no host)."""
        return [
            url
            for url in self.requests
            if not url.startswith("data:")
            and f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" != origin
        ]


async def open_operation(page: Page, tag: str, operation_id: str) -> Any:
    """Expand one operation and switch it to "Try it out"; returns its block."""
    block = page.locator(f"#operations-{tag}-{operation_id}")
    await block.locator(".opblock-summary").first.click()
    await block.locator("button.try-out__btn").click()
    return block


async def test_the_docs_page_lists_resources_and_runs_requests(
    live: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    title = f"Seeded through HTTP {uuid.uuid4().hex[:8]}"
    editor = live.login(*EDITOR)["access_token"]
    status, _ = post_json(f"{live.url}/books", {"title": title, "year": 2001}, editor)
    assert status == 201

    page = await browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(TIMEOUT_MS)
    watch = PageWatch(page)
    response = await page.goto(f"{live.url}/docs")
    assert response is not None
    assert response.status == 200
    policy = await response.header_value("content-security-policy")
    assert policy is not None
    assert "script-src 'self'" in policy

    # Every resource of the example config has its section.
    for name in example_resources():
        await expect(page.locator(f"#operations-tag-{name}")).to_be_visible()

    # An anonymous GET /books through "Try it out" shows the seeded book.
    listing = await open_operation(page, "books", "list_books")
    await listing.locator("button.execute").click()
    live_response = listing.locator(".live-responses-table")
    await expect(live_response.locator("tr.response .response-col_status")).to_have_text("200")
    await expect(live_response).to_contain_text(title)

    # The Authorize dialog offers both schemes; a bearer token set there is sent.
    await page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    await expect(dialog).to_contain_text("bearerAuth")
    await expect(dialog).to_contain_text("apiKeyAuth")
    await expect(dialog).to_contain_text("sessionCookie")
    bearer = dialog.locator(".auth-container").filter(has_text="bearerAuth")
    await bearer.locator("input").fill(editor)
    await bearer.locator("button.authorize").click()
    await expect(bearer.locator("h6")).to_have_text("Authorized")
    await dialog.locator("button.close-modal").click()

    # GET /auth/me sends the token it was given: it declares its security.
    whoami = await open_operation(page, "auth", "get_me")
    await whoami.locator("button.execute").click()
    answered = whoami.locator(".live-responses-table")
    await expect(answered.locator("tr.response .response-col_status")).to_have_text("200")
    await expect(answered).to_contain_text(f'"name": "{EDITOR[0]}"')
    await expect(answered).to_contain_text('"via": "bearer"')

    written = f"Written through the docs page {uuid.uuid4().hex[:8]}"
    create = await open_operation(page, "books", "create_books")
    body = create.locator("textarea.body-param__text")
    await body.fill(json.dumps({"title": written}))
    await create.locator("button.execute").click()
    created = create.locator(".live-responses-table")
    await expect(created.locator("tr.response .response-col_status")).to_have_text("201")

    screenshot = tmp_path / "docs.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0

    titles = [item["title"] for item in get_json(f"{live.url}/books?max_results=50")["_items"]]
    assert written in titles

    assert watch.foreign(live.url) == []
    assert watch.problems == []
    assert any(url.endswith("/openapi.json") for url in watch.requests)
