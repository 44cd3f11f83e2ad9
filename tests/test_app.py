"""The app factory's pipeline: one ordered list of middleware, one of policies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from brotli_asgi import BrotliMiddleware
from quart import Quart

from shoal.api.lean import LeanPath
from shoal.app import create_app, policies
from shoal.config import ConfigError, read_config_file
from shoal.http.admission import Admission
from shoal.http.compression import WholeBody
from shoal.http.cors import Cors
from shoal.http.deadlines import BodyDeadline, SendDeadline
from shoal.http.edge import Edge
from shoal.http.fast_path import FastPath
from shoal.http.finish_writes import FinishWrites
from shoal.http.instance import InstanceHeader
from shoal.http.lifecycle import CloseWhenDraining
from shoal.http.metrics import RouteLabel
from shoal.policies.cache import ResponseCache, get_cache
from shoal.policies.idempotency import EXTENSION_KEY as IDEMPOTENCY_KEY
from shoal.policies.idempotency import Idempotency
from shoal.policies.ratelimit import SharedRateLimiter, get_rate_limiter
from tests.conftest import SettingsFactory
from tests.utils.auth import bearer, client_with, token_for
from tests.utils.http import create, fetch, if_match
from tests.utils.settings import example_resources


def cached_resources() -> dict[str, Any]:
    resources = example_resources()
    resources["books"]["cache_ttl"] = 60
    return resources


def _stack(app: Quart) -> list[type[Any]]:
    """The types of the ASGI layers in front of Quart, outermost first."""
    layers: list[type[Any]] = []
    layer: Any = app.asgi_app
    while hasattr(layer, "app"):
        layers.append(type(layer))
        layer = layer.app
    return layers


def test_the_middleware_runs_in_the_pipelines_order(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(resources=cached_resources(), instance={"header": True})
    assert _stack(create_app(settings)) == [
        BrotliMiddleware,  # compression, fed whole bodies by WholeBody
        WholeBody,
        Edge,
        InstanceHeader,
        CloseWhenDraining,
        SendDeadline,
        FastPath,
        BodyDeadline,
        Admission,
        FinishWrites,
        LeanPath,
    ]


def test_middleware_that_has_nothing_to_do_is_left_out(settings_factory: SettingsFactory) -> None:
    # No compression, no admission, and no resource to answer from the cache or leanly.
    settings = settings_factory(compression={"enabled": False}, admission={"enabled": False})
    settings = settings.model_copy(update={"resources": {}})
    assert _stack(create_app(settings)) == [
        Edge,
        CloseWhenDraining,
        SendDeadline,
        BodyDeadline,
        FinishWrites,
    ]


def test_policies_run_limits_then_idempotency_then_the_cache(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(resources=cached_resources())
    app = create_app(settings)
    cache = get_cache(app)
    ordered = policies(settings, get_rate_limiter(app), app.extensions[IDEMPOTENCY_KEY], cache)
    assert [type(policy) for policy in ordered] == [
        SharedRateLimiter,
        Idempotency,
        ResponseCache,
    ]


def test_the_route_label_comes_first_and_cors_last_in_the_one_ordered_list(
    settings_factory: SettingsFactory,
) -> None:
    """Every request hook of Shoal's comes from the ordered list: none is
    registered beside it (the metrics' route label and CORS were)."""
    settings = settings_factory(
        resources=cached_resources(),
        metrics={"token": "a-metrics-token-of-16+"},
        cors={"allow_origins": ["https://app.example"]},
    )
    app = create_app(settings)
    ordered = policies(
        settings, get_rate_limiter(app), app.extensions[IDEMPOTENCY_KEY], get_cache(app)
    )
    assert [type(policy) for policy in ordered] == [
        RouteLabel,
        SharedRateLimiter,
        Idempotency,
        ResponseCache,
        Cors,
    ]
    kinds = [type(policy) for policy in ordered]
    befores: list[Any] = list(app.before_request_funcs[None])
    afters: list[Any] = list(app.after_request_funcs[None])
    assert [type(hook.__self__) for hook in befores] == kinds
    assert [type(hook.__self__) for hook in afters] == kinds


# --- hooks named by the config -------------------------------------------------------

HOOKS_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hooks" / "shoal.yaml"


async def test_the_configs_hook_functions_get_the_app(
    settings_factory: SettingsFactory,
) -> None:
    """The hooks example, in process: its rules hold through HTTP."""
    example = read_config_file(HOOKS_EXAMPLE)
    settings = settings_factory(resources=example["resources"], hooks=example["hooks"])
    settings = settings.model_copy(update={"source": HOOKS_EXAMPLE})
    app = create_app(settings)
    async with app.test_app():
        clerk = client_with(app, bearer(await token_for(app, "clerk")))
        customer = await create(clerk, "customers", {"name": "Ann"})
        lines = [{"sku": "a", "quantity": 2, "price": 2.5}, {"sku": "b", "quantity": 1, "price": 1}]
        order = await create(clerk, "orders", {"customer": customer["_id"], "lines": lines})
        item = await fetch(clerk, "orders", order["_id"])
        assert item["total"] == 6.0
        assert item["placed_at"].endswith(" GMT")
        response = await clerk.patch(
            f"/orders/{order['_id']}", json={"status": "shipped"}, headers=if_match(item["_etag"])
        )
        assert response.status_code == 200
        shipped = await response.get_json()
        response = await clerk.patch(
            f"/orders/{order['_id']}", json={"lines": lines[:1]}, headers=if_match(shipped["_etag"])
        )
        assert response.status_code == 409
        response = await clerk.delete(f"/orders/{order['_id']}", headers=if_match(shipped["_etag"]))
        assert response.status_code == 403


def test_a_hook_module_that_cannot_be_imported_is_a_config_error(
    settings_factory: SettingsFactory,
) -> None:
    with pytest.raises(ConfigError, match="hooks: cannot import no_such_module"):
        create_app(settings_factory(hooks=["no_such_module:register"]))
    with pytest.raises(ConfigError, match="hooks: json has no function nothing"):
        create_app(settings_factory(hooks=["json:nothing"]))
    with pytest.raises(ConfigError, match="is not module:function"):
        settings_factory(hooks=["not a function"])


#: What a config loads only when it uses it: redis-py (redis.url), the change
#: streams and RE2 (a resource with streams: true), OpenTelemetry (tracing),
#: the embedded store (`shoal serve` without mongodb.uri, in its own process).
ON_DEMAND = {
    "redis",
    "re2",
    "shoal.state.redis",
    "shoal.resources.changes",
    "shoal.resources.events",
    "shoal.api.streams",
    "shoal.http.tracing",
    "opentelemetry",
    "shoal.storage.embedded",
}


def _loaded_by_create_app(config: dict[str, Any]) -> set[str]:
    """The modules a fresh interpreter holds once it has built the app of ``config``."""
    code = (
        "import json, sys; from shoal.app import create_app; "
        f"create_app(json.loads({json.dumps(config)!r})); print(chr(10).join(sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def test_a_config_that_uses_no_redis_streams_or_tracing_does_not_load_them() -> None:
    config = {
        "environment": "production",
        "secret_key": "s" * 32,
        "mongodb": {"uri": "mongodb://127.0.0.1:1"},
        "resources": {"books": {"schema": {"type": "object"}}},
    }
    loaded = _loaded_by_create_app(config)

    assert {"shoal.app", "pymongo", "shoal.state.memory"} <= loaded
    assert loaded.isdisjoint(ON_DEMAND)


def test_redis_and_streams_load_when_the_config_uses_them() -> None:
    config = {
        "environment": "production",
        "secret_key": "s" * 32,
        "mongodb": {"uri": "mongodb://127.0.0.1:1"},
        "redis": {"url": "redis://127.0.0.1:1"},
        "resources": {"books": {"schema": {"type": "object"}, "streams": True}},
    }
    loaded = _loaded_by_create_app(config)

    assert {"redis", "shoal.state.redis", "re2", "shoal.resources.changes"} <= loaded
    assert {"shoal.api.streams", "shoal.resources.events"} <= loaded
