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
resource with an override has its own, which its change streams count in too.
Over the limit: 429 with ``Retry-After``; every limited response carries
``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``.

While Redis is unreachable, limits fail open (requests pass, uncounted) unless
``rate_limits.fail_open`` is false (then 503).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from quart import Quart, Response, current_app, g, request
from quart_rate_limiter import (
    QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE,
    QUART_RATE_LIMITER_LIMITS_ATTRIBUTE,
    RateLimit,
    RateLimiter,
)

from ..config import RateLimitSettings, Settings, parse_rate
from ..dataapi import action_endpoints
from ..errors import ServiceUnavailable, TooManyRequests
from ..hashing import sha256_hex
from ..http.methods import SAFE_METHODS
from ..metrics import RATE_LIMIT_REJECTIONS
from ..resources import resource_endpoints, stream_endpoint
from ..state import Breaker, Rate, RateVerdict, SharedState, StateUnavailable
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


def _rates(settings: RateLimitSettings | None) -> dict[str, Rate]:
    rates: dict[str, Rate] = {}
    if settings is None:
        return rates
    for name in ("read", "write"):
        text = getattr(settings, name)
        if text is not None:
            rates[name] = Rate(*parse_rate(text))
    return rates


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


class SharedRateLimiter(RateLimiter):
    """quart-rate-limiter's ``RateLimiter`` with an atomic, shared GCRA check.

    Limits come from the config (global and per resource) and from the
    library's decorators on any route; all of a request's limits are checked
    and counted together in one round trip.
    """

    def __init__(self, settings: Settings, state: SharedState) -> None:
        super().__init__(key_function=self.caller)
        self.state = state
        self.fail_open = settings.rate_limits.fail_open
        self.trusted_proxies = settings.trusted_proxies
        self.global_rates = _rates(settings.rate_limits)
        self.resource_rates = {
            name: _rates(resource.rate_limits) for name, resource in settings.resources.items()
        }
        # The resource behind each resource endpoint (see api/resources.py); its
        # change streams count as the reads they are, in its buckets.
        self.endpoint_resources: Mapping[str, str] = {
            endpoint: name
            for name in settings.resources
            for endpoint in (
                *resource_endpoints(name),
                stream_endpoint(name, item=False),
                stream_endpoint(name, item=True),
            )
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

    async def caller(self) -> str:
        """Who is counted: the API key or user, else the client's address."""
        return await caller_key(self.trusted_proxies)

    def _plan(self, endpoint: str) -> _Plan:
        """What limits a route has (worked out on its first request: routes and
        their decorators do not change while the app serves)."""
        if endpoint in EXEMPT_ENDPOINTS:
            return _EXEMPT
        view = current_app.view_functions.get(endpoint)
        if view is None or getattr(view, QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE, False):
            return _EXEMPT
        kind = self.endpoint_kinds.get(endpoint) or method_class(request.method)
        resource = self.endpoint_resources.get(endpoint)
        own = self.resource_rates.get(resource, {}) if resource is not None else {}
        decorated: list[RateLimit] = [
            *getattr(view, QUART_RATE_LIMITER_LIMITS_ATTRIBUTE, []),
            *getattr(
                current_app.blueprints.get(request.blueprint or ""),
                QUART_RATE_LIMITER_LIMITS_ATTRIBUTE,
                [],
            ),
        ]
        rate = own.get(kind) or self.global_rates.get(kind)
        bucket = resource if resource is not None and kind in own else "*"
        return rate, kind, decorated, bucket

    async def limits(self) -> list[tuple[str, Rate]]:
        """The (key, rate) pairs the current request counts against."""
        endpoint = request.endpoint
        if endpoint is None:
            return []
        plan = self._plans.get((endpoint, request.method))
        if plan is None:
            plan = self._plans[(endpoint, request.method)] = self._plan(endpoint)
        if plan[0] is None and not plan[2]:
            return []
        rate, kind, decorated, bucket = plan
        caller = _digest(await self.caller())
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

    async def before_request(self) -> None:
        """Count the request against its limits; 429 when one is exhausted."""
        if not current_app.config["QUART_RATE_LIMITER_ENABLED"]:
            return
        limits = await self.limits()
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
        g.rate_limit_verdict = min(verdicts, key=lambda v: (v.remaining, -v.reset))
        if refused:
            verdict, rate = max(refused, key=lambda pair: pair[0].retry_after)
            g.rate_limit_verdict = verdict
            RATE_LIMIT_REJECTIONS.labels(method_class(request.method)).inc()
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

    async def after_request(self, response: Response) -> Response:
        """Describe the limit closest to refusing in ``RateLimit-*`` headers."""
        verdict: RateVerdict | None = g.get("rate_limit_verdict")
        if verdict is not None:
            response.headers["RateLimit-Limit"] = str(verdict.limit)
            response.headers["RateLimit-Remaining"] = str(verdict.remaining)
            response.headers["RateLimit-Reset"] = str(math.ceil(verdict.reset))
        return response


def get_rate_limiter(app: Quart) -> SharedRateLimiter:
    limiter: SharedRateLimiter = app.extensions[EXTENSION_KEY]
    return limiter
