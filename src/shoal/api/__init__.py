"""HTTP blueprints, one module per concern, gathered by ``register_blueprints``."""

from __future__ import annotations

from quart import Quart

from .auth import auth
from .health import health


def register_blueprints(app: Quart) -> None:
    app.register_blueprint(health)
    app.register_blueprint(auth)
