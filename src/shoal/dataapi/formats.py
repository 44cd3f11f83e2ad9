"""The Data API's two data formats: Extended JSON in, JSON or canonical EJSON out.

Requests are read as MongoDB Extended JSON (relaxed or canonical) whatever their
``Content-Type``, as the hosted service read them: ``{"$oid": …}``,
``{"$date": …}`` and the other wrappers become BSON values, so a ``$oid`` filter
matches. PyMongo's ``bson.json_util`` does the parsing and the canonical EJSON
answers (docs/decisions/0010-data-api.md).

Plain JSON answers render BSON values as the hosted service's "Data Formats"
page lists them: an ObjectId as its hex string, a date as ISO 8601 in UTC with
milliseconds (``2022-01-12T02:33:23.067Z``), a Decimal128 as its decimal string,
64-bit integers as numbers, binary data as ``{"Subtype", "Data"}`` (base64),
regular expressions as ``{"Pattern", "Options"}``, timestamps as ``{"T", "I"}``,
MinKey and MaxKey as ``{}``. Doubles that JSON cannot hold are the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.
"""

from __future__ import annotations

import base64
import decimal
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from bson import DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.binary import Binary
from bson.errors import BSONError
from bson.json_util import CANONICAL_JSON_OPTIONS, JSONMode, JSONOptions
from bson.json_util import dumps as ejson_dumps
from bson.json_util import loads as ejson_loads

from ..errors import BadRequest

JSON_MEDIA_TYPE = "application/json"
EJSON_MEDIA_TYPE = "application/ejson"

#: Relaxed and canonical EJSON both parse; dates come back aware, in UTC.
_READ_OPTIONS = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC)

_REGEX_FLAGS = (
    ("i", re.IGNORECASE),
    ("l", re.LOCALE),
    ("m", re.MULTILINE),
    ("s", re.DOTALL),
    ("x", re.VERBOSE),
)


def read_body(data: bytes) -> Any:
    """A request body as BSON values; 400 when it is not (Extended) JSON."""
    if not data.strip():
        raise BadRequest(
            "the request body is empty; send a JSON object with dataSource, database "
            "and collection",
            code="InvalidParameter",
        )
    try:
        text = data.decode("utf-8")
        return ejson_loads(text, json_options=_READ_OPTIONS)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text", code="InvalidParameter") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        OverflowError,
        BSONError,
        decimal.InvalidOperation,
    ) as error:
        # json's decode errors are ValueErrors; json_util raises the others for
        # a malformed wrapper ({"$oid": "xyz"}, {"$date": "yesterday"},
        # {"$numberDecimal": "abc"}).
        raise BadRequest(
            f"the request body is not valid Extended JSON: {error}", code="InvalidParameter"
        ) from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply", code="InvalidParameter") from None


def render_ejson(body: Any) -> bytes:
    """Canonical Extended JSON: every number and date wrapped (``{"$numberInt": "1"}``)."""
    return ejson_dumps(body, json_options=CANONICAL_JSON_OPTIONS).encode()


def render_json(body: Any) -> bytes:
    """Plain JSON, BSON values rendered as the hosted Data API rendered them."""
    return orjson.dumps(plain(body))


def plain(value: Any) -> Any:
    """``value`` with every BSON value replaced by its plain-JSON form."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, Int64):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso_date(value)
    if isinstance(value, Decimal128 | decimal.Decimal):
        return str(value)
    if isinstance(value, Binary):
        return {"Subtype": value.subtype, "Data": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, bytes):
        return {"Subtype": 0, "Data": base64.b64encode(value).decode()}
    if isinstance(value, uuid.UUID):
        return {"Subtype": 4, "Data": base64.b64encode(value.bytes).decode()}
    if isinstance(value, Regex | re.Pattern):
        return {"Pattern": value.pattern, "Options": _regex_options(value.flags)}
    if isinstance(value, Timestamp):
        return {"T": value.time, "I": value.inc}
    if isinstance(value, MinKey | MaxKey):
        return {}
    if isinstance(value, DBRef):
        return plain(dict(value.as_doc()))
    return str(value)


def iso_date(moment: datetime) -> str:
    """``2022-01-12T02:33:23.067Z``: UTC, milliseconds, as the Data API wrote dates."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _regex_options(flags: int | str) -> str:
    if isinstance(flags, str):
        return flags
    return "".join(letter for letter, flag in _REGEX_FLAGS if flags & flag)
