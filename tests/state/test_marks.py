"""Stamps shared through a file (``shoal.state.marks``): what `shoal users`
writes without Redis and a server of the same config reads."""

from __future__ import annotations

import json
import time
from pathlib import Path

from shoal.state import MemoryState

KEY = "auth:{u1}:epoch"


async def test_a_stamp_made_in_one_process_is_seen_by_another(tmp_path: Path) -> None:
    marks = tmp_path / ".shoal" / "user-marks.json"
    server, command = MemoryState(marks=marks), MemoryState(marks=marks)
    assert await server.get(KEY) is None  # no file yet: no mark

    stamp = await command.stamp(KEY, ttl=60)

    assert await server.get(KEY) == str(stamp).encode()
    assert await server.get_many(KEY, "other") == [str(stamp).encode(), None]
    # Stamps only go up, whoever makes them.
    later = await server.stamp(KEY, ttl=60)
    assert later > stamp
    assert await command.get(KEY) == str(later).encode()


async def test_a_server_started_later_reads_the_marks_left_before(tmp_path: Path) -> None:
    marks = tmp_path / "user-marks.json"
    stamp = await MemoryState(marks=marks).stamp(KEY, ttl=60)
    assert await MemoryState(marks=marks).get(KEY) == str(stamp).encode()


async def test_expired_marks_are_dropped_and_a_broken_file_holds_none(tmp_path: Path) -> None:
    marks = tmp_path / "user-marks.json"
    marks.write_text(json.dumps({"shoal:" + KEY: [5, time.time() - 1]}), encoding="utf-8")
    assert await MemoryState(marks=marks).get(KEY) is None
    marks.write_text("{not json", encoding="utf-8")
    state = MemoryState(marks=marks)
    assert await state.get(KEY) is None
    stamp = await state.stamp(KEY, ttl=60)  # a broken file is written anew
    assert json.loads(marks.read_text())["shoal:" + KEY][0] == stamp
