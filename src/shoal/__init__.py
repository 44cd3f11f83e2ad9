"""Shoal: a fast, async REST data API for MongoDB, built to scale out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:  # imported on first use, below
    from .app import create_app
    from .resources import shoal_hooks

__all__ = ["__version__", "create_app", "shoal_hooks"]


def __getattr__(name: str) -> object:
    # Importing the package (e.g. for the CLI or __version__) stays cheap.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "shoal_hooks":
        from .resources import shoal_hooks

        return shoal_hooks
    raise AttributeError(name)
