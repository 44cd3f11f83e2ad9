"""Dates as MongoDB stores them and as HTTP and Eve write them (RFC 1123)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime


def now() -> datetime:
    """The current time as MongoDB stores it (UTC, millisecond precision)."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def http_date(value: datetime) -> str:
    """RFC 1123 date as HTTP and Eve use it; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_datetime(value.astimezone(UTC), usegmt=True)


def parse_http_date(value: str) -> datetime | None:
    """An RFC 1123 date (as Shoal renders them) or None."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
