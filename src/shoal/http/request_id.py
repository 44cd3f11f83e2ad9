"""Request ids: every request gets one (the client's ``X-Request-ID`` if sane,
else a new one), kept in the ASGI scope for logs and errors, and echoed on the
response by the edge."""

from __future__ import annotations

import logging
import os
import re

from quart import has_request_context, request

from .asgi import Scope

#: Where the request id lives in the ASGI scope (Quart keeps the scope on the request).
REQUEST_ID = "shoal.request_id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def assign_request_id(scope: Scope, supplied: bytes | None) -> str:
    """Give the request in ``scope`` its id: ``supplied`` if sane, else a new one."""
    rid = supplied.decode() if supplied and _SANE_ID.match(supplied) else os.urandom(16).hex()
    scope[REQUEST_ID] = rid
    return rid


def request_id() -> str | None:
    """The id of the request being served, if any."""
    if not has_request_context():
        return None
    value = request.scope.get(REQUEST_ID)
    return value if isinstance(value, str) else None


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being served, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True
