"""What a caller may read of a document: one FieldMask, asked by every path."""

from __future__ import annotations

import pytest

from shoal.errors import BadRequest
from shoal.resources.visibility import EVERYTHING, FieldMask, filter_fields

META = ("_id", "_etag")
DOCUMENT = {
    "_id": 1,
    "_etag": "e",
    "name": "Ann",
    "salary": 5,
    "team": {"lead": "Bo", "budget": 9},
    "reviews": [{"by": "Cy", "score": 3}, {"by": "Di", "score": 4}],
}


def test_an_exclusion_hides_its_fields_at_any_depth_and_leaves_the_original() -> None:
    mask = FieldMask.from_projection({"salary": 0, "team.budget": 0, "reviews.score": 0}, META)
    shown = mask.apply(DOCUMENT)
    assert shown == {
        "_id": 1,
        "_etag": "e",
        "name": "Ann",
        "team": {"lead": "Bo"},
        "reviews": [{"by": "Cy"}, {"by": "Di"}],
    }
    assert DOCUMENT["salary"] == 5
    assert DOCUMENT["team"] == {"lead": "Bo", "budget": 9}


def test_an_inclusion_shows_only_its_fields_and_the_meta_fields() -> None:
    mask = FieldMask.from_projection({"name": 1, "reviews.by": 1}, META)
    assert mask.apply(DOCUMENT) == {
        "_id": 1,
        "_etag": "e",
        "name": "Ann",
        "reviews": [{"by": "Cy"}, {"by": "Di"}],
    }


@pytest.mark.parametrize(
    ("projection", "readable", "unreadable"),
    [
        ({"salary": 0}, ["name", "team.lead", "_etag"], ["salary", "salary.x"]),
        ({"team.budget": 0}, ["team.lead"], ["team", "team.budget"]),  # team holds it
        ({"name": 1}, ["name", "_id"], ["salary", "team.lead"]),
        ({"team.lead": 1}, ["team.lead"], ["team", "team.budget"]),
    ],
)
def test_a_field_is_readable_only_if_nothing_of_it_is_hidden(
    projection: dict[str, int], readable: list[str], unreadable: list[str]
) -> None:
    mask = FieldMask.from_projection(projection, META)
    assert [name for name in readable if mask.readable(name)] == readable
    assert [name for name in unreadable if mask.readable(name)] == []


def test_a_filter_naming_a_hidden_field_anywhere_is_refused() -> None:
    mask = FieldMask.from_projection({"salary": 0}, META)
    mask.check_filter({"name": "Ann", "team.lead": {"$ne": "x"}}, "where")
    mask.check_filter({"reviews": {"$elemMatch": {"salary": 1}}}, "where")  # reviews.salary
    for filter in (
        {"salary": {"$gt": 1}},
        {"$or": [{"name": "x"}, {"$and": [{"salary": 1}]}]},
        {"$text": {"$search": "5"}},  # may search the hidden field
    ):
        with pytest.raises(BadRequest) as refused:
            mask.check_filter(filter, "where")
        assert refused.value.message.startswith("where cannot use")
    EVERYTHING.check_filter({"$text": {"$search": "5"}}, "where")  # nothing hidden


def test_the_fields_a_filter_names() -> None:
    filter = {"$or": [{"a": 1}, {"b": {"$elemMatch": {"c": 1, "$or": [{"d": 2}]}}}]}
    assert list(filter_fields(filter)) == ["a", "b", "b.c", "b.d"]


def test_stages_drop_what_is_hidden() -> None:
    assert FieldMask.from_projection({"salary": 0}, META).stages() == [{"$project": {"salary": 0}}]
    assert FieldMask.from_projection({"name": 1}, META).stages() == [
        {"$project": {"_etag": 1, "_id": 1, "name": 1}}
    ]
    assert EVERYTHING.stages() == []


def test_apply_within_takes_hidden_fields_out_of_copies_anywhere() -> None:
    mask = FieldMask.from_projection({"salary": 0}, META)
    made = {"_id": 1, "copy": {"name": "Ann", "salary": 5}, "all": [{"salary": 6, "n": 1}]}
    assert mask.apply_within(made) == {"_id": 1, "copy": {"name": "Ann"}, "all": [{"n": 1}]}


def test_union_hides_what_either_hides() -> None:
    a = FieldMask.from_projection({"salary": 0}, META)
    b = FieldMask.from_projection({"name": 1, "salary": 1}, META)
    both = a.union(b)
    assert not both.readable("salary")
    assert not both.readable("team")
    assert both.readable("name")
