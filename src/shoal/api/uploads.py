"""Multipart writes of media fields: the body, files included, and the files
a write replaces (see ``media.py`` for the whole picture)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bson import ObjectId

from ..errors import ApiError, UnsupportedMediaType
from ..http.asgi import Scope, header
from ..http.call import Call
from ..http.json import read_json
from ..resources import UNRESTRICTED, Access, ResourceService, RouteTable
from ..resources.media import FORM_DATA

logger = logging.getLogger("shoal.media")

#: The methods whose multipart body is streamed, by route kind.
_STREAMED = {"collection": frozenset({"POST"}), "item": frozenset({"PUT", "PATCH"})}


def streamed(routes: RouteTable) -> Callable[[Scope], bool]:
    """Whether a request is a multipart write of a resource with media fields
    (its body is read as it comes, not whole, before the view)."""

    def check(scope: Scope) -> bool:
        content_type = header(scope, b"content-type")
        if content_type is None or not content_type.lower().startswith(FORM_DATA.encode()):
            return False
        found = routes.match(scope["path"])
        if found is None:
            return False
        route = found[0]
        return bool(route.resource.media) and scope["method"] in _STREAMED.get(
            route.kind, frozenset()
        )

    return check


class MediaWrites:
    """A write's body, files included, and the files it replaces."""

    def __init__(self, service: ResourceService) -> None:
        self.service = service

    @asynccontextmanager
    async def write(
        self, call: Call, item: Any = None, access: Access = UNRESTRICTED, *, body: bool = True
    ) -> AsyncIterator[Any]:
        """The body to write (JSON, or a multipart form whose files are stored
        now); the files of item ``item`` that the write leaves unheld are
        removed after it. A write refused (4xx) removes the files stored for it."""
        media = self.service.media
        if media is None:
            yield await read_json(call) if body else None
            return
        before = None
        if item is not None:
            before = await self.service.stored_or_none(item, access)
        document: Any = None
        stored: list[ObjectId] = []
        if body:
            if call.mimetype == FORM_DATA:
                length = call.headers.get("Content-Length")
                declared = int(length) if length is not None and length.isdigit() else None
                document, stored = await media.read_form(
                    call.headers.get("Content-Type") or "", declared, call.chunks()
                )
            elif call.mimetype == "application/json" or call.mimetype.endswith("+json"):
                document = await read_json(call)
                media.refuse_files(document)
            else:
                raise UnsupportedMediaType(
                    "send JSON (application/json), or fields and files as multipart/form-data "
                    f"(got {call.mimetype or 'none'})"
                )
        try:
            yield document
        except ApiError as error:
            # Refused (4xx): nothing was written. A 5xx may hide a write that
            # happened: its files stay (an orphan at worst, never a dangling id).
            if error.status < 500:
                await _tidy(media.discard(stored), "the refused write's files")
            raise
        if item is not None:
            # The write succeeded, and its answer says so whatever happens here.
            async def remove_replaced() -> None:
                after = await self.service.stored_or_none(item, access)
                await media.replaced(before, after)

            await _tidy(remove_replaced(), "the files the write replaced")


async def _tidy(work: Awaitable[None], what: str) -> None:
    """Remove files no document holds; failing (MongoDB unreachable), leave them
    to ``shoal media gc`` rather than turn the request's answer into an error."""
    try:
        await work
    except Exception:
        logger.warning("%s stay in GridFS (shoal media gc removes them)", what, exc_info=True)
