"""A `shoal serve` worker takes what its start-up made out of the cyclic
garbage collector's reach once it serves, so a full collection walks only what
requests made (``python -m benchmarks.gc_pauses`` measures the pauses)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.app import create_app
from shoal.cli.worker import freeze_start_up
from tests.utils.settings import make_settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_start_up_is_frozen_and_what_requests_make_is_still_collected(unfrozen: None) -> None:
    app = create_app(make_settings("mongodb://127.0.0.1:9", None))
    assert gc.get_freeze_count() == 0

    freeze_start_up()

    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the modules, the app, its config, schemas and routes
    assert app.url_map is not None
    # Garbage made after start-up, in a cycle, is still the collector's.
    cycle: list[Any] = [{"made": "by a request"}]
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
    assert gc.get_freeze_count() == frozen
