"""How an access's row filter joins a lookup: side by side where it can (one
implicit ``$and``, as MongoDB reads a filter's top-level fields), an explicit
``$and`` where two parts name the same key; both select the same documents."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.resources import Access
from shoal.resources.access import conjoin

NORTH, OPEN = {"region": "north"}, {"region": "north", "status": {"$ne": "closed"}}


@pytest.mark.parametrize(
    ("filters", "joined"),
    [
        (({"_id": 7}, {"qty": {"$gte": 0}}), {"_id": 7, "qty": {"$gte": 0}}),
        (({"_id": 7}, {}), {"_id": 7}),
        (({}, {}), {}),
        ((NORTH, OPEN), {"$and": [NORTH, OPEN]}),
        (
            ({"$or": [{"a": 1}]}, {"$or": [{"b": 1}]}),
            {"$and": [{"$or": [{"a": 1}]}, {"$or": [{"b": 1}]}]},
        ),
        (
            ({"_id": 7}, {"owner": "u1"}, {"_deleted": {"$ne": True}}),
            {"_id": 7, "owner": "u1", "_deleted": {"$ne": True}},
        ),
    ],
)
def test_filters_are_joined_side_by_side_unless_a_key_repeats(
    filters: tuple[dict[str, Any], ...], joined: dict[str, Any]
) -> None:
    assert conjoin(*filters) == joined


def test_a_restricted_lookup_keeps_the_id_at_the_top() -> None:
    access = Access().narrowed({"owner": "u1"})
    assert access.restrict({"_id": 7}) == {"_id": 7, "owner": "u1"}
    assert access.restrict({"owner": "u2"}) == {"$and": [{"owner": "u2"}, {"owner": "u1"}]}
