"""Where the Data API is served: the routes of each action and their endpoint
names (``request.endpoint``), which the request policies look up."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DataApiSettings
from .requests import ACTIONS, Action

#: The blueprint that serves the Data API (api/data_api.py).
BLUEPRINT = "data_api"
#: The hosted service's versions; the same API under either.
HOSTED_VERSIONS = ("v1", "beta")


@dataclass(frozen=True)
class Route:
    """One action at one path, for one method. Actions are POSTs; GET with a
    body is taken as well (some of the hosted service's own examples use it),
    but only the POSTs of ``/action`` and of the hosted ``v1`` path are in the
    OpenAPI document (``documented``)."""

    path: str
    action: Action
    endpoint: str
    method: str = "POST"
    documented: bool = True

    @property
    def qualified_endpoint(self) -> str:
        return f"{BLUEPRINT}.{self.endpoint}"


def hosted_prefix(app_id: str, version: str = "v1") -> str:
    """``/app/<app_id>/endpoint/data/<version>``: a hosted base URL's path."""
    return f"/app/{app_id}/endpoint/data/{version}"


def routes(settings: DataApiSettings) -> list[Route]:
    """Every action route this config serves (none when the Data API is off)."""
    if not settings.enabled:
        return []
    bases = [("/action", "", True)]
    if settings.app_id is not None:
        for version in HOSTED_VERSIONS:
            bases.append(
                (
                    f"{hosted_prefix(settings.app_id, version)}/action",
                    f":{version}",
                    version == "v1",
                )
            )
    served: list[Route] = []
    for name, action in ACTIONS.items():
        for base, suffix, documented in bases:
            path = f"{base}/{name}"
            served.append(Route(path, action, f"{name}{suffix}", "POST", documented))
            served.append(Route(path, action, f"{name}{suffix}:get", "GET", documented=False))
    return served


def action_endpoints(settings: DataApiSettings) -> dict[str, Action]:
    """Qualified endpoint → the action it serves."""
    return {route.qualified_endpoint: route.action for route in routes(settings)}
