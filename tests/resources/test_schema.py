"""Schema checks at start-up and document validation messages."""

from __future__ import annotations

from typing import Any

import pytest
from bson import Int64

from shoal.resources.schema import DocumentSchema
from shoal.schemas import SchemaProblem, check_schema


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array"}, "type: a resource schema must have type: object"),
        (
            {"type": "object", "properties": {"year": {"minimum": "zero"}}},
            'properties/year/minimum: "zero" is not of type "number"',
        ),
        (
            {"type": "object", "$schema": "http://json-schema.org/draft-07/schema#"},
            "$schema: only draft 2020-12",
        ),
        ({"type": "object", "properties": {"_owner": {}}}, "properties/_owner"),
    ],
)
def test_bad_schemas_name_the_path(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaProblem) as raised:
        check_schema(schema)
    assert message in str(raised.value)


def test_draft_2020_12_keywords_are_enforced() -> None:
    schema = DocumentSchema(
        {
            "type": "object",
            "properties": {
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
                "a": {"type": "string"},
                "b": {"type": "string"},
            },
            "dependentRequired": {"a": ["b"]},
        },
        allow_unknown=False,
    )
    assert schema.issues({"pair": ["x", 1]}) == {}
    assert schema.issues({"pair": [1, 1]}) == {"pair.0": '1 is not of type "string"'}
    assert "b" in str(schema.issues({"a": "x"}))


def test_formats_are_asserted() -> None:
    schema = DocumentSchema(
        {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
        allow_unknown=False,
    )
    assert schema.issues({"email": "a@example.org"}) == {}
    assert "email" in schema.issues({"email": "not an address"})


def test_values_read_back_from_mongodb_validate() -> None:
    schema = DocumentSchema(
        {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}}},
        allow_unknown=False,
    )
    assert schema.issues({"n": Int64(5)}) == {}
    assert schema.issues({"n": Int64(50)}) == {"n": "50 is greater than the maximum of 10"}


def test_defaults_fill_nested_objects_but_not_absent_ones() -> None:
    schema = DocumentSchema(
        {
            "type": "object",
            "properties": {
                "flag": {"type": "boolean", "default": True},
                "meta": {"type": "object", "properties": {"n": {"default": 1}}},
            },
        },
        allow_unknown=False,
    )
    assert schema.apply_defaults({}) == {"flag": True}
    assert schema.apply_defaults({"meta": {}}) == {"flag": True, "meta": {"n": 1}}
    assert schema.apply_defaults({"flag": False}) == {"flag": False}


def test_one_check_says_what_a_client_may_not_write() -> None:
    schema = DocumentSchema(
        {"type": "object", "properties": {"a": {"readOnly": True}, "b": {}, "owner": {}}},
        allow_unknown=False,
        readonly=["b"],
        server_fields=["owner"],
    )
    paths = ["a", "b.c", "c", "owner", "_etag", "_id"]
    assert schema.unwritable(paths) == {
        "a": "field is read-only",
        "b.c": "field is read-only",
        "owner": "field is set by the server",
        "_etag": "field is read-only",
        "_id": "field is read-only",
    }
    assert "_id" not in schema.unwritable(paths, client_id=True)
