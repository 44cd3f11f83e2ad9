"""What the commands print for a person at a terminal, beside their results."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """A warning line on stderr (``WARNING: …``), printed at once."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)
