"""The leak sweeps' collector: what one caller got back from every request."""

from __future__ import annotations

from typing import Any

import pytest


class Sweep:
    """Each answer's headers and body (an answer of 500 or more fails at once),
    and the log lines, as ``(what, text)`` pairs to search for what the caller
    may not see."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    async def send(self, what: str, response: Any) -> None:
        body = await response.get_data(as_text=True)
        assert response.status_code < 500, (what, body)
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.texts.append((what, f"{headers}\n\n{body}"))

    def add(self, what: str, text: str) -> None:
        self.texts.append((what, text))

    def logs(self, caplog: pytest.LogCaptureFixture) -> None:
        """The log lines so far (then cleared, for the next caller's sweep)."""
        self.add("logs", "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records))
        caplog.clear()
