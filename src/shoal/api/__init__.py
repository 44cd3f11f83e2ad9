"""HTTP blueprints, one module per concern, gathered by ``register_blueprints``."""

from .routes import register_blueprints

__all__ = ["register_blueprints"]
