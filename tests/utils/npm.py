"""npm packages installed from the registry into a test's temporary folder
(never into the repository): an install that fails fails the test."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


def npm_install(folder: Path, packages: Sequence[str]) -> Path:
    """``npm install`` the pinned ``packages`` into ``folder``; returns ``folder``."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed (Node.js 20 with npm is needed)"
    installed = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
            str(folder),
            *packages,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, (
        f"npm install {' '.join(packages)} failed:\n{installed.stderr}"
    )
    return folder


def node() -> str:
    """The ``node`` executable (Node.js 20)."""
    found = shutil.which("node")
    assert found is not None, "node is not installed (Node.js 20 is needed)"
    return found
