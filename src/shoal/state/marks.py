"""Stamps (``SharedState.stamp``: the users' not-before marks) shared through a
file by the processes of one machine that have no Redis.

Without Redis, a server keeps its shared state in its own process, where
`shoal users disable` cannot reach it. The one thing such a command must get
across is the user's new not-before mark, and that is a stamp: so
``MemoryState`` with a ``MarksFile`` writes its stamps to the file (under a
lock, replacing the file at once), and reads the file again whenever it has
changed, before each read. A server and the commands of the same config file
(the same ``.shoal/`` directory) then agree on every mark from the next
request on, and a server started later honours the marks written before.

The file maps each full key to ``[stamp, expiry]`` (expiry in seconds since
the epoch); expired entries are dropped when the file is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: The file's name in the config's data directory (``.shoal/``).
MARKS_FILE = "user-marks.json"


class MarksFile:
    """One file of stamps, read when it changed and written under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None

    def changed(self) -> dict[str, tuple[int, float]] | None:
        """The live stamps ``{key: (stamp, expiry)}`` when the file changed since
        the last call (or was never read), else None. A missing or unreadable
        file holds none."""
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        signature = (status.st_ino, status.st_mtime_ns, status.st_size)
        if signature == self._seen:
            return None
        self._seen = signature
        return self._read()

    def stamp(self, key: str, at_least: int, ttl: float) -> int:
        """Store a stamp for ``key`` greater than the file's and than
        ``at_least - 1``, and the clock's milliseconds; returns it. Raises
        OSError when the file cannot be written."""
        with self._locked():
            marks = self._read()
            previous = marks.get(key, (0, 0.0))[0]
            value = max(time.time_ns() // 1_000_000, previous + 1, at_least)
            marks[key] = (value, time.time() + ttl)
            self._write(marks)
        return value

    def _read(self) -> dict[str, tuple[int, float]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        now = time.time()
        marks: dict[str, tuple[int, float]] = {}
        if isinstance(raw, dict):
            for key, entry in raw.items():
                try:
                    value, expires = int(entry[0]), float(entry[1])
                except (TypeError, ValueError, IndexError):
                    continue
                if expires > now:
                    marks[str(key)] = (value, expires)
        return marks

    def _write(self, marks: dict[str, tuple[int, float]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".marks-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump({key: list(entry) for key, entry in marks.items()}, file)
            # A reader sees the old file or the new one, never half of one.
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Two commands stamping at once: one waits, none loses its stamp."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
