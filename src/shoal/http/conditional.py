"""Conditional requests (RFC 9110): ``If-None-Match`` / ``If-Modified-Since``
for reads (304), ``If-Match`` for writes (428 without it), and the validators
(``ETag``, ``Last-Modified``) a response carries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..dates import http_date, parse_http_date
from ..errors import BadRequest, PreconditionRequired
from .call import Call, Reply


def etag_values(header: str) -> list[str]:
    """The entity tags of an ``If-Match`` / ``If-None-Match`` header, unquoted
    (weak ones compared as strong, as a GET's ``If-None-Match`` allows)."""
    values = []
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        values.append(part.strip('"'))
    return [value for value in values if value]


def required_etag(call: Call) -> str | None:
    """The ETag a write is conditional on (``If-Match``); None means ``*``."""
    header = call.headers.get("If-Match")
    if header is None or not header.strip():
        raise PreconditionRequired(
            "To edit a document its etag must be provided using the If-Match header"
        )
    values = etag_values(header)
    if "*" in values:
        return None
    if len(values) != 1:
        raise BadRequest("If-Match takes exactly one ETag for a document")
    return values[0]


def optional_etag(call: Call) -> str | None:
    """The ETag a write is conditional on, if the client sent ``If-Match``."""
    header = call.headers.get("If-Match")
    if header is None or not header.strip():
        return None
    return required_etag(call)


def is_not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified: Any
) -> bool:
    """Whether a client holding these validators has the current representation
    (``If-None-Match`` decides when present, as RFC 9110 says)."""
    if if_none_match is not None:
        values = etag_values(if_none_match)
        return "*" in values or etag in values
    if if_modified_since and last_modified is not None:
        parsed = parse_http_date(if_modified_since)
        if parsed is None or not isinstance(last_modified, datetime):
            return False
        return last_modified.replace(microsecond=0) <= parsed
    return False


def not_modified(call: Call, etag: str, last_modified: Any = None) -> bool:
    """Whether the client's cached copy is current."""
    headers = call.headers
    return is_not_modified(
        headers.get("If-None-Match"), headers.get("If-Modified-Since"), etag, last_modified
    )


def with_validators(reply: Reply, etag: str, last_modified: Any = None) -> Reply:
    """``reply`` with its ``ETag`` and, for a real date, ``Last-Modified``."""
    reply.headers["ETag"] = f'"{etag}"'
    # Only a real date: documents written by other tools may hold anything.
    if isinstance(last_modified, datetime):
        reply.headers["Last-Modified"] = http_date(last_modified)
    return reply


def not_modified_reply(etag: str, last_modified: Any = None) -> Reply:
    """A 304 with the validators the client already holds."""
    return with_validators(Reply(304), etag, last_modified)
