"""What the commands print for a person at a terminal, beside their results."""

from __future__ import annotations

import sys

#: Exit statuses of every command.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: What a shell reports for a command ended by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def warn(message: str) -> None:
    """A warning line on stderr (``WARNING: …``), printed at once."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)
