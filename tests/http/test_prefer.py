"""Parsing ``Prefer`` (RFC 7240): known preferences only, the first of each."""

from __future__ import annotations

import pytest

from shoal.http.prefer import parse_prefer


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["return=minimal"], {"return": "minimal"}),
        (
            ['Return="Representation"; x=1, count=exact'],
            {"return": "representation", "count": "exact"},
        ),
        (["return=minimal", "return=representation"], {"return": "minimal"}),
        (["handling=strict, count=maybe"], {}),
        ([""], {}),
    ],
)
def test_prefer_headers_parse_as_rfc_7240_says(
    headers: list[str], expected: dict[str, str]
) -> None:
    assert parse_prefer(headers) == expected
