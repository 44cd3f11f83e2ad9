"""Every blueprint, registered in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart

from ..auth import get_auth
from ..dataapi import DataApi
from ..resources import Resources
from .auth import auth
from .data_api import data_api_blueprint
from .health import health
from .resources import ResourceViews, resource_blueprint

if TYPE_CHECKING:  # imported by create_app when a resource streams
    from ..resources.changes import ChangeFeeds


def register_blueprints(
    app: Quart,
    resources: Resources,
    feeds: ChangeFeeds | None,
    data_api: DataApi,
    views: dict[str, ResourceViews],
) -> None:
    app.register_blueprint(health)
    app.register_blueprint(auth)
    if data_api.enabled:
        app.register_blueprint(data_api_blueprint(data_api, get_auth(app)))
    app.register_blueprint(resource_blueprint(resources, feeds, views))
