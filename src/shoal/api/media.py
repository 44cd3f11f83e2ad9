"""Media fields over HTTP: each file at its own URL (writes: ``uploads.py``).

    POST /<resource>                     multipart/form-data: fields and files
    PUT|PATCH /<resource>/<id>           multipart/form-data: fields and files
    GET|HEAD /<resource>/<id>/<field>    the file, streamed

A multipart write of a resource with media fields is not read whole before the
view (``streamed``: the body deadline paces it instead, ``http/deadlines.py``);
the view authorizes the caller first, then ``MediaWrites`` streams the files
to GridFS (``resources/media.py``) and hands the document on to the resource
service. A file replaced by a write, or whose document is deleted, is removed
once the write has succeeded.

A file is answered by ``MediaDownloads``, ASGI middleware in front of the lean
path: the caller must be able to read the document (its owner filter and the
resource's roles) and the field (``datasource.projection``), else 404. The
answer streams from GridFS, a chunk at a time, with ``Content-Type``,
``Content-Length``, an ``ETag`` (the file's id: a file never changes, a new
upload is a new file), ``Last-Modified``, ``Range`` (206, 416) and
``If-None-Match`` (304). No request policy runs for it: the response cache
never sees a file, and no rate limit counts it.
"""

from __future__ import annotations

import logging
import re

from bson import ObjectId
from werkzeug.http import parse_range_header

from ..dates import http_date
from ..errors import ApiError, NotFound
from ..http.asgi import ASGIApp, Receive, Scope, Send
from ..http.call import Call, ClientGone, Reply, send_reply
from ..http.conditional import not_modified
from ..http.errors import error_reply, unexpected_reply
from ..http.methods import READ_METHODS
from ..http.metrics import ROUTE_SCOPE_KEY
from ..resources import BLUEPRINT, Resource, RouteTable
from .resources import ResourceViews
from .uploads import streamed

__all__ = ["MediaDownloads", "media_paths", "streamed"]

logger = logging.getLogger("shoal.media")


class MediaDownloads:
    """ASGI middleware: ``GET|HEAD /<resource>/<id>/<field>`` of a media field."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteTable,
        views: dict[str, ResourceViews],
        max_body: int,
    ) -> None:
        self.app = app
        self.views = views
        self.max_body = max_body
        self.paths: list[tuple[re.Pattern[str], Resource, str]] = []
        for route in routes:
            if route.kind != "item" or not route.resource.media:
                continue
            for name in route.resource.media:
                pattern = _pattern(f"{route.rule}/{name}")
                self.paths.append((pattern, route.resource, f"{route.qualified_endpoint}"))

    def match(self, path: str) -> tuple[Resource, str, dict[str, str]] | None:
        for pattern, resource, endpoint in self.paths:
            found = pattern.fullmatch(path)
            if found is not None:
                return resource, endpoint, found.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.match(scope["path"]) if scope["type"] == "http" and self.paths else None
        if found is None:
            await self.app(scope, receive, send)
            return
        resource, endpoint, variables = found
        name = scope["path"].rsplit("/", 1)[1]
        call = Call.from_scope(
            scope,
            receive,
            endpoint=endpoint,
            view_args=variables,
            blueprint=BLUEPRINT,
            max_body=self.max_body,
        )
        scope[ROUTE_SCOPE_KEY] = f"{resource.rule('item')}/{name}"
        try:
            await self._answer(call, resource, name, send)
        except ClientGone:
            return
        except ApiError as error:
            await send_reply(send, error_reply(error, call.request_id))
        except Exception as error:  # a JSON 500 with the request id, never a traceback
            await send_reply(send, unexpected_reply(error, call.request_id))

    async def _answer(self, call: Call, resource: Resource, name: str, send: Send) -> None:
        if call.method not in READ_METHODS:
            raise ApiError(
                f"a file is read with GET; it is written with its document ({call.method} "
                f"/{resource.path}/<id> as multipart/form-data)",
                status=405,
                headers={"Allow": "GET, HEAD"},
            )
        views = self.views[resource.name]
        if "GET" not in resource.settings.item_methods:
            raise ApiError("items of this resource are not read", status=405)
        service = views.service
        assert service.media is not None
        item = resource.ids.parse(call.view_args["item_id"])
        access = await views.access(call, "GET", item=True)
        document = await service.get(item, access)
        file_id = document.get(name)
        if not isinstance(file_id, ObjectId):
            raise NotFound(f"{resource.singular} {item} has no {name} file")
        download = await service.media.files.open(file_id)
        if download is None:
            raise NotFound(f"the {name} file of {resource.singular} {item} is gone")
        stored = download.file
        etag = str(stored.id)
        headers = Reply().headers
        headers["ETag"] = f'"{etag}"'
        headers["Last-Modified"] = http_date(stored.uploaded)
        headers["Accept-Ranges"] = "bytes"
        if not_modified(call, etag, stored.uploaded):
            await send_reply(send, Reply(304, headers=headers))
            return
        start, end, status = 0, stored.length, 200
        requested = call.headers.get("Range")
        if requested is not None:
            ranges = parse_range_header(requested)
            if ranges is not None and len(ranges.ranges) == 1:
                span = ranges.range_for_length(stored.length)
                if span is None:
                    raise ApiError(
                        f"the range {requested!r} is outside the file's {stored.length} bytes",
                        status=416,
                        headers={"Content-Range": f"bytes */{stored.length}"},
                    )
                start, end, status = span[0], span[1], 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.length}"
        headers["Content-Type"] = stored.content_type
        # What a browser opens from here cannot run as a page of this origin.
        headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'; sandbox"
        headers["X-Content-Type-Options"] = "nosniff"
        start_headers = [(b"content-length", str(end - start).encode())] + [
            (key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()
        ]
        await send({"type": "http.response.start", "status": status, "headers": start_headers})
        if call.method == "HEAD" or end == start:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            async for chunk in download.chunks(start, end):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception:
            # The answer has started: no error body can follow. Left unfinished,
            # the server closes the connection, and the client sees it cut short.
            logger.exception("a file's answer stopped: %s", call.path)
            return
        finally:
            await download.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def media_paths(routes: RouteTable) -> list[str]:
    """Regular expressions of every file's URL (compression leaves them be:
    a file's ranges are of its bytes as stored)."""
    return [
        f"^{_pattern(route.rule).pattern}/(?:{'|'.join(map(re.escape, route.resource.media))})$"
        for route in routes
        if route.kind == "item" and route.resource.media
    ]


def _pattern(rule: str) -> re.Pattern[str]:
    parts = re.split(r"<([A-Za-z_][A-Za-z0-9_]*)>", rule)
    return re.compile(
        "".join(
            re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
            for index, part in enumerate(parts)
        )
    )
