"""Every blueprint, registered in one place."""

from __future__ import annotations

from quart import Quart

from ..resources import Resources
from ..resources.changes import ChangeFeeds
from .auth import auth
from .health import health
from .resources import resource_blueprint


def register_blueprints(app: Quart, resources: Resources, feeds: ChangeFeeds) -> None:
    app.register_blueprint(health)
    app.register_blueprint(auth)
    app.register_blueprint(resource_blueprint(resources, feeds))
