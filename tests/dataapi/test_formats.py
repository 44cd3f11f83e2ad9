"""Plain-JSON answers render BSON values as the hosted Data API's "Data
Formats" page lists them, including the types the MongoDB stand-in cannot
store (so they are checked here, on the renderer, rather than over HTTP)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

from shoal.dataapi import read_body, render_ejson, render_json
from shoal.errors import BadRequest


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (ObjectId("5d505646cf6d4fe581014ab2"), "5d505646cf6d4fe581014ab2"),
        (datetime(2022, 1, 12, 2, 33, 23, 67000, tzinfo=UTC), "2022-01-12T02:33:23.067Z"),
        (datetime(2022, 6, 7), "2022-06-07T00:00:00.000Z"),
        (Decimal128("9823.1297"), "9823.1297"),
        (10.5, 10.5),
        (10, 10),
        (Int64(2022), 2022),
        (
            Binary(bytes.fromhex("e67803a39588be8a95731a21e27d7391"), 5),
            {"Subtype": 5, "Data": "5ngDo5WIvoqVcxoh4n1zkQ=="},
        ),
        (b"\x00\x01", {"Subtype": 0, "Data": "AAE="}),
        (uuid.UUID(int=1), {"Subtype": 4, "Data": "AAAAAAAAAAAAAAAAAAAAAQ=="}),
        (Regex("^H", "i"), {"Pattern": "^H", "Options": "i"}),
        (re.compile("^H", re.IGNORECASE | re.MULTILINE), {"Pattern": "^H", "Options": "im"}),
        (Timestamp(1565545664, 1), {"T": 1565545664, "I": 1}),
        (MinKey(), {}),
        (MaxKey(), {}),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (None, None),
        (True, True),
        ([1, {"a": ObjectId("5d505646cf6d4fe581014ab2")}], [1, {"a": "5d505646cf6d4fe581014ab2"}]),
    ],
)
def test_plain_json_of_each_bson_type(value: Any, rendered: Any) -> None:
    assert json.loads(render_json({"v": value})) == {"v": rendered}


def test_the_data_formats_page_example() -> None:
    ejson = (
        '{"Name":"Mango","Year":{"$numberLong":"2022"},"Weight":{"$numberDecimal":"9823.1297"},'
        '"Date":{"$date":{"$numberLong":"1641954803067"}}}'
    )
    document = read_body(ejson.encode())
    assert json.loads(render_json(document)) == {
        "Name": "Mango",
        "Year": 2022,
        "Weight": "9823.1297",
        "Date": "2022-01-12T02:33:23.067Z",
    }
    assert json.loads(render_ejson(document)) == json.loads(ejson)


def test_canonical_ejson_wraps_every_number() -> None:
    assert json.loads(render_ejson({"n": 1, "x": 1.5, "big": 2**40})) == {
        "n": {"$numberInt": "1"},
        "x": {"$numberDouble": "1.5"},
        "big": {"$numberLong": str(2**40)},
    }


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe", b"{", b'{"a": {"$numberLong": "x"}}', b'{"a": {"$numberDecimal": "abc"}}'],
)
def test_an_unreadable_body_is_a_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        read_body(body)
    assert caught.value.code == "InvalidParameter"
