"""Item ids in URLs and bodies: ObjectIds, strings and integers."""

from __future__ import annotations

import pytest
from bson import ObjectId

from shoal.errors import NotFound
from shoal.resources.ids import IdRule


def test_object_ids_by_default() -> None:
    rule = IdRule("_id", None)
    oid = ObjectId()
    assert rule.parse(str(oid)) == oid
    with pytest.raises(NotFound):
        rule.parse("nope")
    assert isinstance(rule.generate(), ObjectId)
    assert rule.from_body("zz") == (None, "must be a 24-hex-character ObjectId")


def test_string_ids_are_the_clients_unless_uuids() -> None:
    rule = IdRule("_id", {"type": "string"})
    assert rule.parse("red") == "red"
    assert rule.parse("0123456789ab0123456789ab") == "0123456789ab0123456789ab"
    assert rule.generate() is None
    assert rule.from_body("") == (None, "must be a non-empty string")
    uuids = IdRule("_id", {"type": "string", "format": "uuid"})
    generated = uuids.generate()
    assert isinstance(generated, str)
    assert len(generated) == 36


def test_integer_ids() -> None:
    rule = IdRule("_id", {"type": "integer"})
    assert rule.parse("42") == 42
    assert rule.parse("-7") == -7
    for text in ("4.2", "x", "99999999999999999999"):
        with pytest.raises(NotFound):
            rule.parse(text)
    assert rule.from_body(True) == (None, "must be a whole number")
    assert rule.from_body(5) == (5, None)
