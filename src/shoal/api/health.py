"""Liveness and readiness probes.

``/healthz``: the process answers. ``/readyz``: MongoDB and shared state are
reachable right now; both checks run on every call, so the answer recovers by
itself when a dependency comes back. While the worker drains before stopping,
``/readyz`` answers 503 at once, so a load balancer stops sending to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from quart import Blueprint, Response, current_app
from quart_schema import document_response, security_scheme

from ..errors import ApiError
from ..http.errors import error_response
from ..http.lifecycle import get_lifecycle
from ..openapi import document_errors
from ..openapi.components import PUBLIC
from ..openapi.models import Health, NotReady, Readiness
from ..resources import get_resources
from ..state import get_state
from ..storage import get_storage

health = Blueprint("health", __name__)

#: Seconds each dependency has to answer a readiness check.
CHECK_TIMEOUT = 2.0


@health.get("/healthz")
@security_scheme(PUBLIC)
@document_response(Health)
@document_errors()  # exempt from rate limits: it answers 200 whenever the process runs
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(name: str, probe: Awaitable[None]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except ApiError as error:
        return name, error.message
    except TimeoutError:
        return name, f"{name} did not answer within {CHECK_TIMEOUT:g}s"
    return name, "ok"


@health.get("/readyz")
@security_scheme(PUBLIC)
@document_response(Readiness)
@document_response(NotReady, 503)
@document_errors()  # its 503 is documented above (with the checks); no rate limits
async def readyz() -> Response | dict[str, object]:
    if get_lifecycle(current_app).draining:
        return error_response(
            503, "not ready: shutting down", headers={"Retry-After": "5"}, checks={}
        )
    state = get_state(current_app)
    results = dict(
        await asyncio.gather(
            _check("mongodb", get_storage(current_app).ping(timeout=CHECK_TIMEOUT)),
            _check(state.name, state.ping()),
        )
    )
    problems = get_resources(current_app).index_problems
    if problems:
        results["indexes"] = "; ".join(f"{name}: {why}" for name, why in sorted(problems.items()))
    failed = sorted(name for name, outcome in results.items() if outcome != "ok")
    if failed:
        reasons = [
            "indexes refused by MongoDB" if name == "indexes" else f"{name} unreachable"
            for name in failed
        ]
        return error_response(
            503,
            f"not ready: {', '.join(reasons)}",
            headers={"Retry-After": "5"},
            checks=results,
        )
    return {"status": "ready", "checks": results}
