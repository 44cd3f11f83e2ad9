"""The docs page at ``/docs``: Swagger UI, every asset served by Shoal itself.

Swagger UI's files are vendored under ``shoal/static/docs/swagger-ui/`` (with
their licence; see docs/decisions/0004-docs-ui.md). The page has no inline
script or style, so it is served with a Content-Security-Policy that lets it
load and call nothing but this server (``connect-src`` also admits the origins
of the ``docs.servers`` an operator configured, so "Try it out" can reach them).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from quart import Blueprint, Quart, Response, render_template_string, send_from_directory, url_for
from quart_schema import hide

from ..config import DocsSettings

EXTENSION_KEY = "shoal.docs"
#: Where the page's files are: Swagger UI's and Shoal's initializer.
ASSETS = Path(__file__).resolve().parent.parent / "static" / "docs"

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{ title }}</title>
  <link rel="icon" type="image/png" href="{{ asset('swagger-ui/favicon-32x32.png') }}">
  <link rel="stylesheet" href="{{ asset('swagger-ui/swagger-ui.css') }}">
  <link rel="stylesheet" href="{{ asset('shoal-docs.css') }}">
</head>
<body>
  <noscript>This page needs JavaScript. The OpenAPI document is at
    <a href="{{ openapi_url }}">{{ openapi_url }}</a>.</noscript>
  <div id="swagger-ui" data-openapi-url="{{ openapi_url }}"></div>
  <script src="{{ asset('swagger-ui/swagger-ui-bundle.js') }}"></script>
  <script src="{{ asset('shoal-docs.js') }}"></script>
</body>
</html>
"""


def content_security_policy(server_urls: list[str]) -> str:
    """The page's CSP: scripts, styles, fonts and calls from this server only.

    Images may also be ``data:`` URIs: Swagger UI's stylesheet draws its icons
    with them (nothing is fetched for those).
    """
    origins = sorted(
        {
            f"{parts.scheme}://{parts.netloc}"
            for parts in map(urlsplit, server_urls)
            if parts.scheme in ("http", "https") and parts.netloc
        }
    )
    connect = " ".join(["'self'", *origins])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ApiDocs:
    """The ``/docs`` page extension; registers nothing when ``docs.enabled`` is off."""

    def __init__(self, settings: DocsSettings) -> None:
        self.settings = settings
        self.csp = content_security_policy([server.url for server in settings.servers])

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION_KEY] = self
        if self.settings.enabled:
            app.register_blueprint(self.blueprint())

    def blueprint(self) -> Blueprint:
        docs = Blueprint("docs", __name__)

        def asset_url(name: str) -> str:
            return url_for("docs.asset", name=name)

        @docs.get("/docs")
        @hide
        async def page() -> str:
            return await render_template_string(
                PAGE, title=self.settings.title, openapi_url=url_for("openapi"), asset=asset_url
            )

        @docs.get("/docs/assets/<path:name>")
        @hide
        async def asset(name: str) -> Response:
            return await send_from_directory(ASSETS, name)

        @docs.after_request
        async def _secure(response: Response) -> Response:
            response.headers["Content-Security-Policy"] = self.csp
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        return docs
