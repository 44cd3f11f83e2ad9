"""The README's quick tour, run as a script: the commands it shows, against
`shoal serve` on a temporary copy of the example, print what it says they print.

The tour's blocks are the ```sh blocks after a ``<!-- tour`` marker. Lines
marked ``# →`` are what the command above prints; ids, keys, times and ``…``
match anything. The run substitutes only what a reader substitutes: the server's
address (``http://127.0.0.1:8000`` → a free port), the password typed at the
prompt (on stdin), and the ``KEY=`` line (the key the command before printed).
Nothing is written into the checkout: the example is copied, and scratch files
go to a temporary ``TMPDIR``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shoal.system import free_port
from tests.utils.processes import ServeProcess, clean_env, shoal_command

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TOUR_ADDRESS = "http://127.0.0.1:8000"
PASSWORD = "a tour password"
PROMISE = "# → "


@dataclass
class Step:
    """One command of the tour and what the README says it prints."""

    lines: list[str]
    promised: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def tour_blocks(readme: str) -> list[str]:
    """The ```sh blocks that follow a ``<!-- tour`` marker."""
    return re.findall(r"<!-- tour[^>]*-->\n```sh\n(.*?)```", readme, re.S)


def tour_steps(block: str) -> list[Step]:
    """A block's commands (a line ending in ``\\`` or ``|`` goes on), each with
    the ``# →`` lines that follow it or close its last line."""
    steps: list[Step] = []
    continued = False
    for line in block.splitlines():
        stripped = line.strip()
        if stripped.startswith(PROMISE):
            steps[-1].promised.append(stripped.removeprefix(PROMISE))
        elif not stripped or stripped.startswith("#"):
            continue
        elif continued:
            steps[-1].lines.append(line)
        else:
            steps.append(Step([line]))
        if stripped and not stripped.startswith("#"):
            code, _, trailing = line.partition(f"  {PROMISE}")
            if trailing:
                steps[-1].promised.append(trailing.strip())
            continued = code.rstrip().endswith(("\\", "|"))
    return steps


_VARYING = [
    (re.compile(r"\b[0-9a-f]{24}\b"), "<id>"),
    (re.compile(r"shoal_[A-Za-z0-9_-]{20,}"), "<key>"),
    (re.compile(r"\b\d+\.\d+ s\b"), "<seconds>"),
]


def _normal(text: str) -> str:
    for pattern, name in _VARYING:
        text = pattern.sub(name, text)
    return text


def matches(promised: str, printed: str) -> bool:
    """Whether a printed line is the promised one (``…`` stands for anything)."""
    pattern = ".*".join(re.escape(part) for part in _normal(promised).split("…"))
    return re.fullmatch(pattern, _normal(printed)) is not None


def script(steps: list[Step], url: str) -> str:
    """The tour as one bash script, a marker printed before each step."""
    out = ["set -euo pipefail"]
    for number, step in enumerate(steps):
        out.append(f"echo '@@@ step {number}'")
        text = step.text.replace(TOUR_ADDRESS, url)
        if text.startswith("KEY="):
            # A reader pastes the key the command before printed.
            text = "KEY=$(sed -n 's/^shoal_/shoal_/p' \"$TOUR_OUTPUT\" | tail -n 1)"
        out.append(text)
    return "\n".join(out) + "\n"


@pytest.fixture
def tour_copy(tmp_path: Path) -> Path:
    """A directory that looks like the checkout to the tour: the example's config
    and `.venv/bin/shoal` (the installed command)."""
    root = tmp_path / "checkout"
    (root / "examples" / "bookstore").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "bookstore" / "shoal.yaml", root / "examples" / "bookstore")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "shoal").symlink_to(shoal_command())
    (tmp_path / "scratch").mkdir()
    return root


def test_the_readme_tour_prints_what_it_promises(tour_copy: Path) -> None:
    readme = README.read_text(encoding="utf-8")
    steps = [step for block in tour_blocks(readme) for step in tour_steps(block)]
    assert len(steps) >= 10, "the tour's blocks were not found"
    assert sum(len(step.promised) for step in steps) >= 8

    server = ServeProcess(
        tour_copy,
        config="examples/bookstore/shoal.yaml",
        bind=f"127.0.0.1:{free_port()}",
    )
    try:
        server.start()
        server.wait_ready()
        output = tour_copy.parent / "tour.out"
        env = clean_env({"TMPDIR": str(tour_copy.parent / "scratch"), "TOUR_OUTPUT": str(output)})
        with output.open("w") as sink:
            result = subprocess.run(
                ["bash", "-c", script(steps, server.url)],
                cwd=tour_copy,
                env=env,
                input=PASSWORD + "\n",
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
                check=False,
            )
        printed = output.read_text()
        assert result.returncode == 0, printed
    finally:
        server.cleanup()

    outputs = re.split(r"^@@@ step \d+\n", printed, flags=re.M)[1:]
    assert len(outputs) == len(steps), printed
    for step, out in zip(steps, outputs, strict=True):
        if not step.promised:
            continue
        lines = out.rstrip("\n").splitlines()
        assert len(lines) == len(step.promised), f"{step.text}\nprinted:\n{out}"
        for promised, line in zip(step.promised, lines, strict=True):
            assert matches(promised, line), f"{step.text}\npromised: {promised}\nprinted:  {line}"

    # The scratch file went to TMPDIR, the server's files beside the copied config.
    assert not (tour_copy / "books.jsonl").exists()
    assert list((tour_copy.parent / "scratch").glob("*.jsonl"))
    assert (tour_copy / "examples" / "bookstore" / ".shoal" / "secret_key").is_file()
    # The server's console: Shoal's own notices or JSON lines, no raw library text.
    for line in server.stderr().splitlines():
        assert line.startswith("WARNING: ") or json.loads(line), line


def test_a_wrong_password_in_the_tour_prints_the_reason_not_a_traceback(
    tour_copy: Path,
) -> None:
    """The tour's login lines, with a password no user has: the reader sees the
    server's answer, and no Python traceback."""
    readme = README.read_text(encoding="utf-8")
    steps = [step for block in tour_blocks(readme) for step in tour_steps(block)]
    login = [step for step in steps if step.text.startswith(("LOGIN=", "TOKEN=", "[ -n"))]
    assert len(login) == 3, [step.text for step in steps]
    server = ServeProcess(
        tour_copy, config="examples/bookstore/shoal.yaml", bind=f"127.0.0.1:{free_port()}"
    )
    try:
        server.start()
        server.wait_ready()
        text = "PASSWORD='not the password'\n" + "\n".join(
            step.text.replace(TOUR_ADDRESS, server.url) for step in login
        )
        result = subprocess.run(
            ["bash", "-c", text],
            cwd=tour_copy,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.cleanup()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["_error"]["message"] == "wrong user name or password"
