"""Rate limits shared by every instance: GCRA, one atomic step in shared state.

Built on quart-rate-limiter (see docs/decisions/0006-rate-limiting.md): its
``RateLimit`` values and its ``rate_limit``, ``rate_exempt`` and
``limit_blueprint`` decorators work on your own routes as its documentation
says. What changes is the check: the library reads a bucket, decides, then
writes it back (two instances can both read "one left" and both pass), so
``SharedRateLimiter`` replaces its two request hooks with one call to
``SharedState.rate_limit``, a Lua script in Redis that checks and counts every
limit of a request at once::

    rate_limits: {read: "1000/minute", write: "100/minute"}
    resources:
      books:
        rate_limits: {write: "10/minute"}   # books' writes: their own, tighter bucket

A caller is counted by API key, else by user, else by client address (behind
the ``trusted_proxies`` only, ``X-Forwarded-For`` is believed). Reads (GET,
HEAD, OPTIONS) and writes (the other methods) have separate buckets; a Data API
action counts as the read or write it is, though every action is a POST. A route
without a resource override shares one bucket per caller and class ("*"); a
resource with an override has its own. Over the limit: 429 with
``Retry-After``; every limited response carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset``.

While Redis is unreachable, limits fail open (requests pass, uncounted) unless
``rate_limits.fail_open`` is false (then 503).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from quart import Quart
from quart_rate_limiter import (
    QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE,
    QUART_RATE_LIMITER_LIMITS_ATTRIBUTE,
    RateLimit,
    RateLimiter,
)

from ..auth import Auth
from ..config import Settings, parse_rate
from ..dataapi import action_endpoints
from ..errors import ServiceUnavailable, TooManyRequests
from ..hashing import sha256_hex
from ..http.call import Answer, Call, current_call
from ..http.methods import SAFE_METHODS
from ..metrics import RATE_LIMIT_REJECTIONS
from ..resources.routes import RouteTable
from ..state import Breaker, Rate, RateVerdict, SharedState, StateUnavailable
from .base import Policy
from .caller import caller_key

logger = logging.getLogger("shoal.ratelimit")

EXTENSION_KEY = "shoal.ratelimit"
#: Probes a load balancer calls all the time: never limited.
EXEMPT_ENDPOINTS = frozenset({"health.healthz", "health.readyz"})


#: A route's limits: its configured rate (or None), the method class, the
#: decorators' limits, and the configured rate's bucket.
_Plan = tuple[Rate | None, str, list[RateLimit], str]
_EXEMPT: _Plan = (None, "read", [], "*")


def method_class(method: str) -> str:
    """``read`` for GET, HEAD and OPTIONS; ``write`` for every other method."""
    return "read" if method in SAFE_METHODS else "write"


def _describe(rate: Rate) -> str:
    period = f"{rate.period:g} s"
    for seconds, unit in ((86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if rate.period == seconds:
            period = unit
            break
    return f"{rate.count} per {period}"


def _digest(value: str) -> str:
    # Callers appear hashed, so no address or user id is readable in Redis keys.
    return sha256_hex(value)[:32]


class SharedRateLimiter(Policy, RateLimiter):
    """quart-rate-limiter's ``RateLimiter`` with an atomic, shared GCRA check.

    Limits come from the config (global and per resource) and from the
    library's decorators on any route; all of a request's limits are checked
    and counted together in one round trip.
    """

    def __init__(
        self, settings: Settings, state: SharedState, routes: RouteTable, auth: Auth
    ) -> None:
        super().__init__(key_function=self.caller)
        self.state = state
        self.auth = auth
        self.fail_open = settings.rate_limits.fail_open
        self.trusted_proxies = settings.trusted_proxies
        self.global_limits = settings.rate_limits
        self.resource_limits = {
            name: resource.rate_limits for name, resource in settings.resources.items()
        }
        # The resource behind each resource endpoint (the route table).
        self.endpoint_resources: Mapping[str, str] = {
            route.qualified_endpoint: route.resource.name for route in routes
        }
        # Data API actions are all POSTs: each counts as the read or write it is.
        self.endpoint_kinds: Mapping[str, str] = {
            endpoint: "write" if action.writes else "read"
            for endpoint, action in action_endpoints(settings.data_api).items()
        }
        self.breaker = Breaker()
        self._plans: dict[tuple[str, str], _Plan] = {}

    def init_app(self, app: Quart, enabled: bool = True) -> None:
        """Register the extension; the app factory registers its request hooks
        (``before_request``, ``after_request``) in the pipeline's order."""
        app.extensions[EXTENSION_KEY] = self
        app.config.setdefault("QUART_RATE_LIMITER_ENABLED", enabled)
        self.app = app

    async def caller(self, call: Call | None = None) -> str:
        """Who is counted: the API key or user, else the client's address (of
        ``call``, or of the current Quart request: the library's key function)."""
        return await caller_key(self.auth, call or current_call(), self.trusted_proxies)

    def _plan(self, endpoint: str, method: str, blueprint: str | None) -> _Plan:
        """What limits a route has (worked out on its first request: routes and
        their decorators do not change while the app serves)."""
        if endpoint in EXEMPT_ENDPOINTS:
            return _EXEMPT
        view = self.app.view_functions.get(endpoint)
        if view is None or getattr(view, QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE, False):
            return _EXEMPT
        kind = self.endpoint_kinds.get(endpoint) or method_class(method)
        resource = self.endpoint_resources.get(endpoint)
        decorated: list[RateLimit] = [
            *getattr(view, QUART_RATE_LIMITER_LIMITS_ATTRIBUTE, []),
            *getattr(
                self.app.blueprints.get(blueprint or ""),
                QUART_RATE_LIMITER_LIMITS_ATTRIBUTE,
                [],
            ),
        ]
        rate, bucket = self.configured(resource, kind)
        return rate, kind, decorated, bucket

    def configured(self, resource: str | None, kind: str) -> tuple[Rate | None, str]:
        """The configured limit of a class of requests, of a resource or of
        any route (None: no limit), and its bucket: the resource's own where it
        overrides the class, else the one all routes share ("*")."""
        own = self.resource_limits.get(resource) if resource is not None else None
        text, its_own = self.global_limits.rate_of(kind, own)
        if text is None:
            return None, "*"
        rate = Rate(*parse_rate(text))
        return rate, resource if its_own and resource is not None else "*"

    async def limits(self, call: Call) -> list[tuple[str, Rate]]:
        """The (key, rate) pairs ``call`` counts against."""
        endpoint = call.endpoint
        if endpoint is None:
            return []
        plan = self._plans.get((endpoint, call.method))
        if plan is None:
            plan = self._plans[(endpoint, call.method)] = self._plan(
                endpoint, call.method, call.blueprint
            )
        if plan[0] is None and not plan[2]:
            return []
        rate, kind, decorated, bucket = plan
        caller = _digest(await self.caller(call))
        limits: list[tuple[str, Rate]] = []
        if rate is not None:
            limits.append((f"rl:{{{caller}}}:{bucket}:{kind}:{rate.count}/{rate.period:g}", rate))
        for limit in decorated:
            skip = limit.skip_function or self.skip_function
            if skip is not None and await skip():
                continue
            who = caller if limit.key_function is None else _digest(await limit.key_function())
            period = limit.period.total_seconds()
            key = f"rl:{{{who}}}:route:{endpoint}:{limit.count}/{period:g}"
            limits.append((key, Rate(limit.count, period)))
        return limits

    async def before(self, call: Call) -> None:
        """Count the request against its limits; 429 when one is exhausted."""
        if not self.app.config["QUART_RATE_LIMITER_ENABLED"]:
            return
        limits = await self.limits(call)
        if not limits:
            return
        verdicts = await self._count(limits)
        if verdicts is None:
            return
        refused = [
            (verdict, rate)
            for verdict, (_, rate) in zip(verdicts, limits, strict=True)
            if not verdict.allowed
        ]
        # The headers describe the limit closest to refusing (the IETF draft's advice).
        call.state["rate_limit_verdict"] = min(verdicts, key=lambda v: (v.remaining, -v.reset))
        if refused:
            verdict, rate = max(refused, key=lambda pair: pair[0].retry_after)
            call.state["rate_limit_verdict"] = verdict
            RATE_LIMIT_REJECTIONS.labels(method_class(call.method)).inc()
            retry_after = max(1, math.ceil(verdict.retry_after))
            raise TooManyRequests(
                f"too many requests: the limit is {_describe(rate)}; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    async def _count(self, limits: list[tuple[str, Rate]]) -> list[RateVerdict] | None:
        """The verdicts, or None when shared state is down and limits fail open."""
        if self.breaker.closed:
            try:
                return await self.state.rate_limit(limits)
            except StateUnavailable:
                self.breaker.trip()
                logger.warning(
                    "rate limits unavailable (shared state unreachable); %s",
                    "letting requests through" if self.fail_open else "refusing requests",
                )
        if self.fail_open:
            return None
        raise ServiceUnavailable(
            "rate limits cannot be checked because shared state (Redis) is unreachable; "
            "retry shortly",
            retry_after=int(self.breaker.pause) + 1,
        )

    async def after(self, call: Call, answer: Answer) -> None:
        """Describe the limit closest to refusing in ``RateLimit-*`` headers."""
        verdict: RateVerdict | None = call.state.get("rate_limit_verdict")
        if verdict is not None:
            answer.headers["RateLimit-Limit"] = str(verdict.limit)
            answer.headers["RateLimit-Remaining"] = str(verdict.remaining)
            answer.headers["RateLimit-Reset"] = str(math.ceil(verdict.reset))


def get_rate_limiter(app: Quart) -> SharedRateLimiter:
    limiter: SharedRateLimiter = app.extensions[EXTENSION_KEY]
    return limiter
