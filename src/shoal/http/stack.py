"""The ASGI middleware stack, built in one place from an ordered list (as
Starlette's ``build_middleware_stack`` does)::

    app.asgi_app = build_stack(app.asgi_app, [outermost, ..., innermost])

A request passes the middleware from the first of the list to the last, then
reaches the app; its response passes them in the opposite order.
"""

from __future__ import annotations

from collections.abc import Sequence

from .asgi import ASGIApp, Middleware


def build_stack(app: ASGIApp, middleware: Sequence[Middleware]) -> ASGIApp:
    """``app`` wrapped in ``middleware``, the first of the list outermost."""
    for wrap in reversed(middleware):
        app = wrap(app)
    return app
