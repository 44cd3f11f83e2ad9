"""``Idempotency-Key`` on the writes of resources (POST of a collection; PATCH,
PUT and DELETE of an item) and on the Data API's write actions: a retry gets
the first answer.

A client that cannot tell whether its write went through (a timeout, a dropped
connection) sends it again with the same ``Idempotency-Key`` header; Shoal does
the write once and answers the retry with the first response (status, body,
``Location``, ``ETag``), marked ``Idempotent-Replayed: true``::

    curl -X POST /books -H 'Idempotency-Key: 5b0e…' -d '{"title": "Dune"}'

A key belongs to one caller (API key or user, else client address), one method
and one path. The record lives in shared state for ``idempotency.ttl`` seconds
(default 24 h). The same key with another body → 422; while the first request
is still running, a second one → 409 (retry it shortly); a key that is empty,
longer than 255 characters or not printable ASCII → 400.

The first request claims the key with ``SET NX`` (a marker that lapses after
``idempotency.lock_ttl`` seconds, should its worker die), so that concurrent
requests with the key get 409 while it runs. The marker carries a nonce of the
claiming request: when the Redis client sends the ``SET NX`` again after a
lost reply (as the Cluster client does on a connection error), the request
finds its own marker and keeps its claim instead of answering itself 409.
Answers that say nothing about the body (5xx, 401, 403, 408, 412, 428, 429)
release the key instead of being kept, so the client can retry. Without
Redis, a request with a key gets 503: doing the write without the guarantee is
what the client asked not to.

The record of an answer cannot be written in the same step as the write (one
is in Redis, the other in MongoDB), so a worker can die between the two. What
makes the write happen once anyway is the write itself: its new ids and ETags
are derived from the key's scope (``write_key``, ``shoal.resources.once``), so
a retry after the claim has lapsed finds the write done and answers with it.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass

import orjson
from quart import Quart

from ..auth import Auth
from ..config import Settings
from ..dataapi import action_endpoints
from ..errors import BadRequest, Conflict, ServiceUnavailable, UnprocessableEntity
from ..hashing import sha256_hex
from ..http.call import Answer, Call, Reply, ReplyHeaders
from ..resources.once import HEADER, WriteKey
from ..resources.routes import RouteTable
from ..state import SharedState, StateUnavailable
from .base import Policy
from .caller import caller_key

logger = logging.getLogger("shoal.idempotency")

EXTENSION_KEY = "shoal.idempotency"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = re.compile(r"[\x20-\x7e]{1,255}")
#: Headers of the first response that a replay repeats.
KEPT_HEADERS = ("Content-Type", "Location", "ETag", "Last-Modified")
#: Answers that are not kept: the request may well succeed when tried again.
NOT_KEPT = frozenset({401, 403, 408, 412, 428, 429})
#: The methods a key applies to on a Data API action that writes (resources'
#: routes say theirs: ``Route.keyed``).
KEYED_ACTION_METHODS = frozenset({"POST"})


@dataclass(frozen=True)
class _Claim:
    key: str
    fingerprint: str


class Idempotency(Policy):
    """The extension: claims a key before the view, keeps the answer after it."""

    def __init__(
        self, settings: Settings, state: SharedState, routes: RouteTable, auth: Auth
    ) -> None:
        self.state = state
        self.auth = auth
        self.ttl = settings.idempotency.ttl
        self.lock_ttl = settings.idempotency.lock_ttl
        self.trusted_proxies = settings.trusted_proxies
        #: Endpoint → the methods a key applies to there.
        self.endpoints: dict[str, frozenset[str]] = {}
        for route in routes:
            keyed = frozenset(method for method in route.methods if route.keyed(method))
            if keyed:
                self.endpoints[route.qualified_endpoint] = keyed
        for endpoint, action in action_endpoints(settings.data_api).items():
            if action.writes:
                self.endpoints[endpoint] = KEYED_ACTION_METHODS

    def init_app(self, app: Quart) -> None:
        """Register the extension; the app factory registers its request hooks
        (``before_request``, ``after_request``) in the pipeline's order."""
        app.extensions[EXTENSION_KEY] = self

    async def before(self, call: Call) -> Reply | None:
        """Before the view: replay a kept answer, refuse, or claim the key."""
        supplied = call.headers.get(HEADER)
        if supplied is None or call.method not in self.endpoints.get(
            call.endpoint or "", frozenset()
        ):
            return None
        if not KEY_PATTERN.fullmatch(supplied):
            raise BadRequest(f"{HEADER} must be 1 to 255 printable ASCII characters")
        caller = await caller_key(self.auth, call, self.trusted_proxies)
        key = claim_key(caller, call.method, call.path, supplied)
        fingerprint = sha256_hex(await call.body())
        marker = orjson.dumps({"fp": fingerprint, "claim": secrets.token_hex(8)})
        try:
            existing = await self.state.set_or_get(key, marker, ttl=self.lock_ttl)
        except StateUnavailable:
            raise ServiceUnavailable(
                f"requests with an {HEADER} need shared state (Redis), which is unreachable; "
                "retry shortly"
            ) from None
        if existing is None or existing == marker:
            call.state["idempotency_claim"] = _Claim(key, fingerprint)
            return None
        meta_raw, _, kept_body = existing.partition(b"\n")
        meta = orjson.loads(meta_raw)
        if meta["fp"] != fingerprint:
            raise UnprocessableEntity(
                f"this {HEADER} was already used with a different request body; "
                "use a new key for a new request"
            )
        if "status" not in meta:
            raise Conflict(
                f"a request with this {HEADER} is still in progress; retry shortly",
                headers={"Retry-After": "1"},
            )
        reply = Reply(meta["status"], kept_body, ReplyHeaders(meta["headers"]))
        reply.headers[REPLAYED_HEADER] = "true"
        return reply

    async def after(self, call: Call, answer: Answer) -> None:
        """After the view: keep the answer for ``ttl``, or release the key."""
        claim: _Claim | None = call.state.get("idempotency_claim")
        if claim is None:
            return
        try:
            if answer.status >= 500 or answer.status in NOT_KEPT:
                await self.state.delete(claim.key)
                return
            kept = answer.headers
            headers = {name: kept[name] for name in KEPT_HEADERS if name in kept}
            meta = {"fp": claim.fingerprint, "status": answer.status, "headers": headers}
            body = await answer.data()
            await self.state.set(claim.key, orjson.dumps(meta) + b"\n" + body, ttl=self.ttl)
        except StateUnavailable:
            # The write is done and this answer still goes out; only a retry
            # after the claim lapses could repeat it.
            logger.error("the answer to an %s request could not be kept (Redis down)", HEADER)


def claim_key(caller: str, method: str, path: str, supplied: str) -> str:
    """The shared-state key under which ``caller``'s ``supplied`` key for
    ``method path`` is claimed and its answer kept (one Cluster slot per key)."""
    return "idem:" + sha256_hex(f"{caller}\0{method}\0{path}\0{supplied}")


def write_key(call: Call) -> WriteKey | None:
    """The request's claimed key, as the write it guards uses it (the key's
    ids and ETags), or None when the request has no key."""
    claim: _Claim | None = call.state.get("idempotency_claim")
    return WriteKey(claim.key) if claim is not None else None
