"""Query parsing rules that HTTP tests do not reach one by one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from bson import ObjectId

from shoal.errors import BadRequest
from shoal.resources.query import (
    META_FIELDS,
    QueryRules,
    parse_list_query,
    parse_projection,
    parse_sort,
    parse_where,
)

RULES = QueryRules(
    pagination_limit=50, default_max_results=25, count=True, allow_regex=False, max_depth=4
)


def test_defaults() -> None:
    query = parse_list_query({}, RULES)
    assert (query.page, query.max_results, query.count, query.skip) == (1, 25, "auto", 0)
    assert query.cursor is None
    assert query.filter == {}
    assert query.sort is None
    assert query.projection is None


def test_skip_follows_page_and_max_results() -> None:
    assert parse_list_query({"page": "3", "max_results": "10"}, RULES).skip == 20


def test_id_strings_become_object_ids_in_where() -> None:
    oid = ObjectId()
    where = parse_where(f'{{"_id": {{"$in": ["{oid}", "not-an-id"]}}}}', RULES)
    assert where == {"_id": {"$in": [oid, "not-an-id"]}}


def test_rfc1123_dates_become_datetimes_on_meta_date_fields() -> None:
    where = parse_where('{"_updated": {"$gte": "Tue, 24 Nov 2026 10:00:00 GMT"}}', RULES)
    assert where == {"_updated": {"$gte": datetime(2026, 11, 24, 10, tzinfo=UTC)}}
    # Ordinary fields keep their strings.
    assert parse_where('{"title": "Tue, 24 Nov 2026 10:00:00 GMT"}', RULES) == {
        "title": "Tue, 24 Nov 2026 10:00:00 GMT"
    }


def test_depth_limit_counts_nesting() -> None:
    assert parse_where('{"a": {"$in": [1]}}', RULES)
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_where('{"$and": [{"$or": [{"a": {"$in": [1]}}]}]}', RULES)


def test_regex_allowed_only_by_rule() -> None:
    permissive = QueryRules(50, 25, True, True, 4)
    assert parse_where('{"t": {"$regex": "^a", "$options": "i"}}', permissive)
    with pytest.raises(BadRequest):
        parse_where('{"t": {"$regex": "^a"}}', RULES)


def test_sort_forms() -> None:
    assert parse_sort("a,-b, +c") == [("a", 1), ("b", -1), ("c", 1)]
    assert parse_sort('[("a", -1), ("b", 1)]') == [("a", -1), ("b", 1)]
    with pytest.raises(BadRequest):
        parse_sort("[__import__('os')]")
    with pytest.raises(BadRequest):
        parse_sort('[("a", True)]')


def test_inclusion_projection_keeps_meta_fields() -> None:
    projection = parse_projection('{"title": 1}', RULES)
    assert projection == {"title": 1, **dict.fromkeys(META_FIELDS, 1)}


def test_exclusion_projection_cannot_hide_meta_fields() -> None:
    assert parse_projection('{"author": 0, "_etag": 0}', RULES) == {"author": 0}
    assert parse_projection('{"_etag": 0}', RULES) is None
