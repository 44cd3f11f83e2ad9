"""Log lines: one JSON object each, with the request id of the request served."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from quart import Quart

from shoal.http.request_id import RequestIdFilter
from shoal.logs import JsonFormatter


def _handler(records: list[str]) -> logging.Handler:
    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


async def test_a_line_inside_a_request_carries_its_id(app: Quart) -> None:
    records: list[str] = []
    logger = logging.getLogger("shoal.test")
    handler = _handler(records)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @app.get("/log-something")
    async def log_something() -> str:
        logger.info("inside", extra={"resource": "books"})
        return "ok"

    try:
        response = await app.test_client().get(
            "/log-something", headers={"X-Request-ID": "req-123"}
        )
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 200
    inside, outside = (json.loads(line) for line in records)
    assert inside["message"] == "inside"
    assert inside["request_id"] == "req-123"
    assert inside["resource"] == "books"
    assert inside["level"] == "INFO"
    assert "request_id" not in outside


def test_a_traceback_stays_inside_its_json_line() -> None:
    records: list[str] = []
    logger = logging.getLogger("shoal.test.errors")
    handler = _handler(records)
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    (line,) = records
    assert "\n" not in line
    entry = json.loads(line)
    assert "RuntimeError: boom" in entry["traceback"]


@pytest.fixture
def app() -> Quart:
    from shoal.app import create_app

    # No connections are made: the route above touches neither MongoDB nor Redis.
    return create_app({"environment": "development", "mongodb": {"uri": "mongodb://127.0.0.1:1"}})


def test_a_library_warning_becomes_a_json_line_not_raw_text() -> None:
    """PyJWT warns about a short HMAC key; once logging is configured, the warning
    reaches stderr as a JSON log line."""
    code = (
        "import jwt; from shoal.logs import configure_logging; configure_logging(); "
        "jwt.encode({'sub': 'x'}, 'short', algorithm='HS256')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    entry = json.loads(lines[0])
    assert entry["logger"] == "py.warnings"
    assert entry["level"] == "WARNING"
    assert "InsecureKeyLengthWarning" in entry["message"]
