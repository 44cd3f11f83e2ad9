"""Change streams over Server-Sent Events, for resources with ``streams: true``::

    GET /<resource>/_stream         every change the caller may see
    GET /<resource>/<id>/_stream    the changes of one document

Each event is one SSE message: ``id`` is its resume token, ``event`` the
operation (insert, update, replace, delete) and ``data`` a JSON object with
the ``operation``, the ``_id`` and, except for a delete, the ``document`` as a
read renders it. A client that reconnects with ``Last-Event-ID`` (browsers'
EventSource does) resumes after that event on any instance; when MongoDB can no
longer resume there, the stream starts with a ``reset`` event instead. A
comment line every ``streams.heartbeat`` seconds keeps idle connections open;
``end`` says why the server ended a stream (the client reconnects).

The caller's credentials are checked again while the stream lasts (at most once
a second, before an event and at each heartbeat): once they expire or are
revoked (a logout, a revoked key, a user disabled or changed), the stream ends,
and no event is sent more than a second after that.

One caller (API key, user, or client address, as rate limits count them) holds
at most ``streams.max_per_caller`` streams on a worker; one more gets 429.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from quart import Response, current_app, request

from ..auth import get_auth
from ..config import get_settings
from ..errors import BadRequest, ServiceUnavailable
from ..http.call import current_call
from ..policies.caller import caller_key
from ..resources import ResourceService
from ..resources.changes import ChangeFeeds
from ..resources.events import (
    Change,
    matcher,
    parse_stream_where,
    resume_token,
    with_departures,
)
from ..resources.render import render_item
from ..resources.visibility import FieldMask

View = Callable[..., Awaitable[Response]]

#: Events whose encoded message a stream route keeps for its other subscribers.
RENDERED_EVENTS = 256
#: Longest ``Last-Event-ID`` accepted (MongoDB's tokens are a few hundred bytes).
MAX_EVENT_ID = 1024
#: Seconds a check of the caller's credentials holds for, on an open stream.
RECHECK_AFTER = 1.0
REVOKED = "the credentials of this stream expired or were revoked; reconnect with valid ones"


Encode = Callable[[Any], str]


def sse(event: str, data: str, event_id: str | None = None) -> bytes:
    """One Server-Sent Events message (``data`` is one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def last_event_id() -> str | None:
    """The event a reconnecting client saw last (``Last-Event-ID``, or the
    ``last_event_id`` query argument for clients that cannot set headers)."""
    value = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if not value:
        return None
    if len(value) > MAX_EVENT_ID or not value.isascii() or not value.isprintable():
        raise BadRequest("Last-Event-ID is not an event id of this stream")
    return value


def stream_view(service: ResourceService, feeds: ChangeFeeds, *, item: bool) -> View:
    resource = service.resource
    heartbeat = feeds.settings.heartbeat

    async def view(item_id: str | None = None) -> Response:
        auth = get_auth(current_app)
        call = current_call()
        access = await auth.authorize(call, resource, "GET", item=item)
        principal = await auth.current_principal(call)
        checked = time.monotonic()

        async def still_allowed() -> bool:
            nonlocal checked
            if principal is None or time.monotonic() - checked < RECHECK_AFTER:
                return True
            checked = time.monotonic()
            return await auth.still_valid(principal)

        where_text = request.args.get("where")
        where = parse_stream_where(where_text, resource.rules) if where_text else None
        access.fields.check_filter(where, "where")
        target = None
        if item_id is not None:
            # 404 unless the caller may see it; events name documents by _id.
            shown = await service.get(resource.ids.parse(item_id), access)
            target = shown["_id"]
        after = last_event_id()
        if after is not None:
            resume_token(after)  # a malformed id is a 400 now, not a broken stream
        feeds.check_capacity()  # 503 now, rather than a stream that ends at once
        await feeds.check_supported(resource.name)  # 501 without change streams
        caller = await caller_key(auth, call, get_settings(current_app).trusted_proxies)
        release = feeds.reserve(caller)  # 429 past the caller's streams; last check
        # The resource's own documents only (datasource.filter); deleted ones
        # come as deletes (see ChangeFeed._change).
        base = resource.base_filter(include_deleted=True)
        matches = matcher(access, where, target, base)
        #: Changes that take a document out of a subscriber with rules' view:
        #: sent as deletes (``with_departures``).
        departed: set[str] = set()
        if access.ruled:
            matches = with_departures(matches, departed)
        encode: Encode = current_app.json.dumps  # the generator runs after the view

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                async with feeds.subscribe(resource.name, matches, after) as (subscription, lost):
                    if lost:
                        message = "the events after Last-Event-ID are no longer available"
                        yield sse("reset", encode({"message": message}))
                    while True:
                        try:
                            change = await asyncio.wait_for(subscription.next(), heartbeat)
                        except TimeoutError:
                            change = None
                            if await still_allowed():
                                yield b": keep-alive\n\n"
                                continue
                        if change is not None and not await still_allowed():
                            change = None
                        if change is None:
                            ended = subscription.ended or REVOKED
                            yield sse("end", encode({"message": ended}))
                            return
                        if change.id in departed:
                            departed.discard(change.id)
                            change = replace(change, operation="delete", document=None)
                        yield event_message(change, access.fields, encode)
            except ServiceUnavailable as error:
                yield sse("end", encode({"message": error.message}))
            finally:
                release()

        stream = events()
        # An answer never sent (its client gone first) never runs the generator's
        # finally: the caller's stream is given back when the generator goes.
        weakref.finalize(stream, release)
        response = Response(stream, mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
        response.timeout = None  # the stream lasts as long as the client stays
        return response

    # Every subscriber of the route who may read the same fields gets the same
    # message for an event: it is rendered and encoded once (the last few
    # events are kept, by id, operation and fields).
    messages: OrderedDict[tuple[str, str, FieldMask], bytes] = OrderedDict()

    def event_message(change: Change, fields: FieldMask, encode: Encode) -> bytes:
        # By operation too: a change one subscriber gets as a departure (a
        # delete) is an update to another.
        key = (change.id, change.operation, fields)
        encoded = messages.get(key)
        if encoded is None:
            body = encode(render(change, fields))
            encoded = messages[key] = sse(change.operation, body, change.id)
            if len(messages) > RENDERED_EVENTS:
                messages.popitem(last=False)
        return encoded

    def render(change: Change, fields: FieldMask) -> dict[str, Any]:
        body: dict[str, Any] = {"operation": change.operation, "_id": change.document_id}
        if change.document is not None and change.operation != "delete":
            body["document"] = render_item(resource, fields.apply(change.document))
        return body

    return view
