"""JSON log lines, one object per line on stderr (with request ids, stamped
by ``shoal.http.request_id.RequestIdFilter``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

_RESERVED = {*vars(logging.makeLogRecord({})), "asctime", "message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", filters: Sequence[logging.Filter] = ()) -> None:
    """Send Shoal's and hypercorn's logs to stderr as JSON lines, through
    ``filters`` (idempotent: one handler, each kind of filter once).

    Python warnings (a library's ``DeprecationWarning``, PyJWT's key warnings)
    become log records of the ``py.warnings`` logger, so they reach stderr as
    JSON lines too, never as raw text."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            break
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    present = {type(existing) for existing in handler.filters}
    for extra in filters:
        if type(extra) not in present:
            handler.addFilter(extra)
    root.setLevel(level)
