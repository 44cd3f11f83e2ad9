"""ETags, merges and field-name rules."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from shoal.dates import now
from shoal.resources.documents import document_etag, etag_key, merge_patch, name_issues

KEY = etag_key("a secret")


def test_etag_ignores_key_order_and_meta_fields() -> None:
    a = {"title": "x", "nested": {"b": 1, "a": 2}}
    b = {"nested": {"a": 2, "b": 1}, "title": "x", "_id": ObjectId(), "_etag": "old"}
    assert document_etag(a, KEY) == document_etag(b, KEY)
    assert document_etag(a, KEY) != document_etag({"title": "y", "nested": {"b": 1, "a": 2}}, KEY)


def test_etag_cannot_be_computed_without_the_secret() -> None:
    """Else a reader could test guesses of a field it cannot see (a salary)
    against a document's ETag: sha1 of the content is what Eve serves."""
    import hashlib

    import orjson

    document = {"name": "Ann", "salary": 123_456}
    encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    plain = hashlib.sha1(encoded, usedforsecurity=False).hexdigest()
    assert document_etag(document, KEY) != plain
    assert document_etag(document, KEY) != document_etag(document, etag_key("another secret"))


def test_now_has_millisecond_precision_like_bson() -> None:
    assert now().microsecond % 1000 == 0


def test_etag_changes_with_a_soft_delete_and_a_version() -> None:
    content = {"title": "x"}
    live = document_etag({**content, "_deleted": False}, KEY)
    assert live == document_etag(content, KEY)  # turning soft delete on keeps ETags
    assert document_etag({**content, "_deleted": True}, KEY) != live
    assert document_etag({**content, "_version": 2}, KEY) != document_etag(
        {**content, "_version": 3}, KEY
    )


def test_merge_patch_dotted_and_nested() -> None:
    document: dict[str, Any] = {"a": {"b": 1, "c": 2}, "x": 1}
    assert merge_patch(document, {"a.b": 5, "d.e": 1, "a": {"c": 3}}) == {}
    assert document == {"a": {"b": 5, "c": 3}, "x": 1, "d": {"e": 1}}


def test_merge_patch_into_a_non_object_is_an_issue() -> None:
    document: dict[str, Any] = {"x": 1}
    assert merge_patch(document, {"x.y": 2}) == {"x.y": "x is not an object"}


def test_name_issues() -> None:
    assert name_issues({"ok": {"$bad": 1}, "a.b": 1, "list": [{"$x": 1}]}) == {
        "ok.$bad": "invalid field name",
        "a.b": "field names cannot contain '.'",
        "list.0.$x": "invalid field name",
    }
    assert name_issues({"a.b": 1}, dotted_top_level=True) == {}
    assert name_issues({"a.$b": 1}, dotted_top_level=True) == {"a.$b": "invalid field name"}
