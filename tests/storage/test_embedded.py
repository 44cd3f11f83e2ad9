"""The embedded store `shoal serve` runs in development: a pid file left by a
store that was killed must not keep the next one from starting."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.storage.embedded import EmbeddedStore, running_store


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :][:1]


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that has exited and is not reaped yet: signal 0 still reaches it."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while _state(child.pid) != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.01)
    yield child.pid
    child.wait()


@pytest.mark.parametrize("holder", ["unrelated", "zombie", "gone"])
def test_a_stale_pid_file_does_not_stop_the_store(tmp_path: Path, holder: str, zombie: int) -> None:
    pid = {"unrelated": os.getpid(), "zombie": zombie, "gone": 2**22 + 1}[holder]
    if holder != "gone":
        os.kill(pid, 0)  # what nx-27017 checks: this process "runs"
    (tmp_path / "nx-27017.pid").write_text(str(pid))

    store = EmbeddedStore(tmp_path)
    try:
        uri = store.start()
        running = running_store(tmp_path)
        assert running is not None
        assert running.uri == uri
        assert (tmp_path / "nx-27017.pid").read_text().strip() == str(store.pid)
    finally:
        store.stop()


def test_the_pid_file_of_a_running_store_stays(tmp_path: Path) -> None:
    """A second start on the same data is refused while the first store runs."""
    first = EmbeddedStore(tmp_path)
    first.start()
    try:
        with pytest.raises(Exception, match="already running"):
            EmbeddedStore(tmp_path).start()
        assert (tmp_path / "nx-27017.pid").read_text().strip() == str(first.pid)
    finally:
        first.stop()
