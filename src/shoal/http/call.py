"""One request and its answer, as Shoal's pipeline sees them, whichever way the
request came in.

A resource's request is served on the lean path (``api/lean.py``), straight
from the ASGI messages, or on the full path, through Quart, when something
needs Quart's request (a developer's request hook, say). Both run the same
policies and views, on a ``Call`` and a ``Reply``:

- ``Call``: the method, path, query arguments, headers, cookies, the client and
  the body of a request, its route, and ``state``, what the policies and the
  view note about it (the caller, its access, an Idempotency-Key's claim...).
  ``Call.from_scope`` builds one from ASGI; ``current_call()`` gives the one of
  the current Quart request (built once, kept in ``g``).
- ``Reply``: a status, headers and a body. ``send_reply`` sends one on ASGI;
  ``to_response`` makes it Quart's ``Response``.
- ``Answer``: what a policy reads and changes of an answer after the view,
  which both a ``Reply`` and Quart's ``Response`` (through ``quart_answer``)
  give.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qsl

from quart import Response, g, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_cookie

from ..errors import PayloadTooLarge
from .asgi import Receive, Scope, Send
from .request_id import REQUEST_ID

if TYPE_CHECKING:  # Quart's request type, for the full path only
    from quart import Request


class Headers:
    """A request's headers: looked up case-insensitively, several values per name."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in raw:
            self._values.setdefault(name.decode("latin-1").lower(), []).append(
                value.decode("latin-1")
            )

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Headers from (name, value) strings (Quart's request headers)."""
        headers = cls()
        for name, value in pairs:
            headers._values.setdefault(name.lower(), []).append(value)
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values.get(name.lower())
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return list(self._values.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def items(self) -> Iterator[tuple[str, str]]:
        for name, values in self._values.items():
            for value in values:
                yield name, value


class Call:
    """One request, on either path (see the module's docstring)."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        args: MultiDict[str, str],
        headers: Headers,
        remote_addr: str,
        scheme: str,
        endpoint: str | None,
        view_args: dict[str, str],
        blueprint: str | None,
        request_id: str | None,
        max_body: int | None = None,
        receive: Receive | None = None,
        quart: Request | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.args = args
        self.headers = headers
        self.remote_addr = remote_addr
        self.scheme = scheme
        #: The route's endpoint (``resources.books:item``), None if none matched.
        self.endpoint = endpoint
        self.view_args = view_args
        self.blueprint = blueprint
        self.request_id = request_id
        #: What the policies and the view note about the request.
        self.state: dict[str, Any] = {}
        #: Quart's request, on the full path (event hooks that take Eve's
        #: ``request`` get it); None on the lean path.
        self.quart = quart
        self._max_body = max_body
        self._receive = receive
        self._body: bytes | None = None
        self._cookies: Mapping[str, str] | None = None

    @classmethod
    def from_scope(
        cls,
        scope: Scope,
        receive: Receive,
        *,
        endpoint: str,
        view_args: dict[str, str],
        blueprint: str,
        max_body: int,
    ) -> Call:
        """The call of an ASGI request the lean path serves."""
        query: bytes = scope["query_string"]
        client = scope.get("client")
        return cls(
            method=scope["method"],
            path=scope["path"],
            args=MultiDict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
            if query
            else MultiDict(),
            headers=Headers(scope["headers"]),
            # As Quart names a peer the server does not name (its test client).
            remote_addr=client[0] if client else "<local>",
            scheme=scope.get("scheme", "http"),
            endpoint=endpoint,
            view_args=view_args,
            blueprint=blueprint,
            request_id=scope.get(REQUEST_ID),
            max_body=max_body,
            receive=receive,
        )

    @classmethod
    def from_quart(cls, incoming: Request) -> Call:
        """The call of the current Quart request (``current_call`` keeps it)."""
        return cls(
            method=incoming.method,
            path=incoming.path,
            args=incoming.args,
            headers=Headers.of(incoming.headers.items()),
            remote_addr=incoming.remote_addr or "<local>",
            scheme=incoming.scheme,
            endpoint=incoming.endpoint,
            view_args=dict(incoming.view_args or {}),
            blueprint=incoming.blueprint,
            request_id=cast(str | None, incoming.scope.get(REQUEST_ID)),
            quart=incoming,
        )

    @property
    def host(self) -> str:
        return self.headers.get("Host") or ""

    @property
    def mimetype(self) -> str:
        """The body's media type, lower case, without parameters."""
        content_type = self.headers.get("Content-Type") or ""
        return content_type.split(";", 1)[0].strip().lower()

    @property
    def cookies(self) -> Mapping[str, str]:
        if self._cookies is None:
            if self.quart is not None:
                self._cookies = self.quart.cookies
            else:
                self._cookies = parse_cookie(self.headers.get("Cookie") or "")
        return self._cookies

    async def body(self) -> bytes:
        """The whole body (read once; 413 beyond ``max_body_bytes``)."""
        if self._body is not None:
            return self._body
        if self.quart is not None:
            data = cast(bytes, await self.quart.get_data(cache=True, as_text=False))
            self._body = data
            return data
        assert self._receive is not None
        length = self.headers.get("Content-Length")
        limit = self._max_body
        if limit is not None and length is not None and length.isdigit() and int(length) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if self._max_body is not None and size > self._max_body:
                raise _too_large(self._max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, a piece at a time, never held whole (a
        multipart upload's; its reader bounds its size). On the lean path the
        body deadline paces it (``deadlines.BodyDeadline``). A body already
        read whole (``body()``: an ``Idempotency-Key``'s fingerprint) is
        given in one piece."""
        if self._body is not None:
            yield self._body
            return
        if self.quart is not None:
            # Quart bounds the body by its MAX_CONTENT_LENGTH (max_body_bytes).
            try:
                async for data in self.quart.body:
                    yield data
            except RequestEntityTooLarge:
                limit = self.quart.max_content_length
                raise _too_large(limit if limit is not None else 0) from None
            return
        assert self._receive is not None
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


class ClientGone(Exception):
    """The client left before its body arrived: nothing to answer."""


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {limit} bytes (max_body_bytes)")


def current_call() -> Call:
    """The ``Call`` of the current Quart request, built on first use."""
    call: Call | None = g.get("shoal_call")
    if call is None:
        call = g.shoal_call = Call.from_quart(request)
    return call


class ReplyHeaders:
    """An answer's headers, by lower-case name (one value each; ``Vary``
    gathers its values)."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = {}
        for name, value in (values or {}).items():
            self[name] = value

    def __setitem__(self, name: str, value: str) -> None:
        self._values[name.lower()] = value

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __delitem__(self, name: str) -> None:
        del self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)

    def items(self) -> Iterator[tuple[str, str]]:
        return iter(self._values.items())

    def vary(self, name: str) -> None:
        """Add ``name`` to ``Vary``."""
        present = [part.strip() for part in (self.get("Vary") or "").split(",") if part.strip()]
        if name.lower() not in (part.lower() for part in present):
            self["Vary"] = ", ".join([*present, name])


@dataclass
class Reply:
    """An answer of the pipeline: status, headers and body."""

    status: int = 200
    body: bytes = b""
    headers: ReplyHeaders = field(default_factory=ReplyHeaders)

    async def data(self) -> bytes:
        return self.body


class AnswerHeaders(Protocol):
    """What a policy does to an answer's headers (``ReplyHeaders`` and Quart's)."""

    def __setitem__(self, name: str, value: str) -> None: ...

    def __getitem__(self, name: str) -> str: ...

    def __contains__(self, name: object) -> bool: ...

    def get(self, name: str, default: str | None = None) -> str | None: ...


class Answer(Protocol):
    """An answer as the policies see it after the view: a ``Reply``, or Quart's
    ``Response`` through ``quart_answer``."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> AnswerHeaders: ...

    async def data(self) -> bytes: ...


class QuartAnswer:
    """Quart's ``Response`` as an ``Answer``."""

    def __init__(self, response: Response) -> None:
        self.response = response

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> AnswerHeaders:
        return cast(AnswerHeaders, self.response.headers)

    async def data(self) -> bytes:
        return await self.response.get_data(as_text=False)


def to_response(reply: Reply) -> Response:
    """A ``Reply`` as Quart's ``Response`` (the full path answers with it)."""
    response = Response(reply.body, status=reply.status)
    if "content-type" not in reply.headers:
        del response.headers["Content-Type"]
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response


async def from_response(response: Response) -> Reply:
    """Quart's ``Response`` as a ``Reply`` (after a hook that takes Eve's
    ``response`` has had it)."""
    reply = Reply(response.status_code, await response.get_data(as_text=False))
    for name, value in response.headers.items():
        if name.lower() != "content-length":
            reply.headers[name] = value
    return reply


async def send_reply(send: Send, reply: Reply) -> None:
    """Send ``reply`` on ASGI, its headers in the order Quart sends them
    (``Content-Type``, ``Content-Length``, then the others). A HEAD's body is
    sent too, as Quart sends it: the server leaves it out (and the compressor
    keeps its length right)."""
    body = b"" if reply.status in (204, 304) else reply.body
    headers: list[tuple[bytes, bytes]] = []
    content_type = reply.headers.get("Content-Type")
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    headers.append((b"content-length", str(len(body)).encode()))
    headers += [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in reply.headers.items()
        if name != "content-type"
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
