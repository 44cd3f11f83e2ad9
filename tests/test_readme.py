"""The README's quick tour, run as a script (``tests.utils.doctour``): the
commands it shows, against `shoal serve` on a temporary copy of the example,
print what it says they print.

The run substitutes only what a reader substitutes: the server's address, the
password typed at the prompt (on stdin), and the ``KEY=`` line (the key the
command before printed). Nothing is written into the checkout: the example is
copied, and scratch files go to a temporary ``TMPDIR``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from shoal.system import free_port
from tests.utils.doctour import ADDRESS, Tour, check, steps_of
from tests.utils.doctour import run as run_tour
from tests.utils.processes import ServeProcess, clean_env, shoal_command

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PASSWORD = "a tour password"


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
    steps = steps_of(README.read_text(encoding="utf-8"))
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
        tour = Tour(steps, address=server.bind)
        outputs = run_tour(tour, tour_copy, tour_copy.parent / "scratch", stdin=PASSWORD + "\n")
    finally:
        server.cleanup()

    for step, printed in zip(steps, outputs, strict=True):
        check(step, printed)
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
    steps = steps_of(README.read_text(encoding="utf-8"))
    login = [step for step in steps if step.text.startswith(("LOGIN=", "TOKEN=", "[ -n"))]
    assert len(login) == 3, [step.text for step in steps]
    server = ServeProcess(
        tour_copy, config="examples/bookstore/shoal.yaml", bind=f"127.0.0.1:{free_port()}"
    )
    try:
        server.start()
        server.wait_ready()
        text = "PASSWORD='not the password'\n" + "\n".join(
            step.text.replace(ADDRESS, server.bind) for step in login
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
