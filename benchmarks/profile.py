"""Sample a Shoal worker with py-spy while wrk drives it, and sum the samples.

py-spy writes collapsed stacks (``frame;frame;... count``, one line per stack);
``summarize`` turns them into the top functions by own time (the leaf frame)
and by inclusive time, and the share of samples by package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_STRIP = (
    re.compile(r"^.*/site-packages/"),
    re.compile(r"^.*/src/(?=shoal/)"),
    re.compile(r"^.*/lib/python3\.\d+/"),
    re.compile(r"^.*/(?=benchmarks/)"),
)


def short_path(path: str) -> str:
    """A frame's file without the machine-specific prefix (``shoal/app.py``)."""
    for pattern in _STRIP:
        shortened, count = pattern.subn("", path)
        if count:
            return shortened
    return path


def package_of(path: str) -> str:
    short = short_path(path)
    if short.startswith("<") or "/" not in short:
        return "stdlib" if short.endswith(".py") else short
    top = short.split("/", 1)[0]
    return top if top not in {"asyncio", "email", "logging", "json", "concurrent"} else "stdlib"


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    if match is None:
        return text.strip(), ""
    return match.group("function"), short_path(match.group("file"))


@dataclass
class Profile:
    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)

    def top(self, counter: Counter[str], count: int = 12) -> list[tuple[str, float]]:
        total = self.samples or 1
        return [(name, 100.0 * hits / total) for name, hits in counter.most_common(count)]

    def top_inclusive(self, count: int = 12) -> list[tuple[str, float]]:
        """Inclusive time, without the frames every sample passes through."""
        found = [(name, share) for name, share in self.top(self.inclusive, count + 40)]
        return [(name, share) for name, share in found if share < 90.0][:count]

    def to_json(self, count: int = 15) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "own": self.top(self.own, count),
            "inclusive": self.top_inclusive(count),
            "packages": self.top(self.packages, count),
        }


def summarize(collapsed: str) -> Profile:
    """Sum py-spy's raw (collapsed-stack) output."""
    profile = Profile()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(part) for part in stack.split(";") if part]
        if not frames:
            continue
        profile.samples += count
        function, path = frames[-1]
        profile.own[f"{function} ({path})"] += count
        # Time in uvloop's C code (polling, socket I/O, callbacks) shows as the
        # frame that entered it: the event loop's run.
        is_loop = function == "Runner.run" or path.startswith("uvloop/")
        profile.packages["event loop (uvloop)" if is_loop else package_of(path)] += count
        for name in {f"{function} ({path})" for function, path in frames}:
            profile.inclusive[name] += count
    return profile


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def record(pid: int, output: Path, *, duration: float, rate: int = 250) -> Profile | None:
    """Sample ``pid`` for ``duration`` seconds; None when py-spy is missing or fails.

    py-spy pauses the process for each sample (its default, blocking mode): without
    the pause, stacks read mid-switch between coroutines come out torn.
    """
    binary = py_spy()
    if binary is None:
        return None
    command = [
        binary,
        "record",
        f"--pid={pid}",
        f"--duration={max(1, round(duration))}",
        f"--rate={rate}",
        "--format=raw",
        "--function",
        f"--output={output}",
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if completed.returncode != 0 or not output.is_file():
        print(f"py-spy failed: {completed.stderr.strip()}", file=sys.stderr)
        return None
    return summarize(output.read_text())


def format_profile(title: str, profile: Profile, count: int = 12) -> str:
    lines = [f"{title}: {profile.samples} samples"]
    lines.append(
        "  by package (own time): "
        + ", ".join(f"{name} {share:.0f}%" for name, share in profile.top(profile.packages, 8))
    )
    lines.append("  top own time:")
    lines += [f"    {share:5.1f}%  {name}" for name, share in profile.top(profile.own, count)]
    lines.append("  top inclusive time:")
    lines += [f"    {share:5.1f}%  {name}" for name, share in profile.top_inclusive(count)]
    return "\n".join(lines)
