"""A command run on a pseudo-terminal of its own, as a person at a terminal runs
it: the terminal is its controlling terminal, so a prompt reads from it and
Ctrl-C (``\\x03``) and Ctrl-D (``\\x04``) mean what they mean to a person."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

CTRL_C = b"\x03"
CTRL_D = b"\x04"


def _take_the_terminal() -> None:
    # In the child, after setsid (start_new_session) and with the terminal on
    # stdin: make it the controlling terminal, as a login shell's is.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``Terminal(args, cwd=…, env=…)``: ``expect`` text, ``send`` keys, ``wait``."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        master, slave = pty.openpty()
        try:
            self.process = subprocess.Popen(
                list(args),
                cwd=cwd,
                env=dict(env),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=_take_the_terminal,
            )
        finally:
            os.close(slave)
        self.master = master
        self.output = b""

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout`` seconds; False at the end."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the command closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30.0) -> None:
        """Wait until the command has printed ``text``."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            if time.monotonic() >= deadline or not self._read(0.1):
                raise AssertionError(f"{text!r} never came; the terminal shows:\n{self.text}")

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float = 30.0) -> int:
        """Read to the end and return the exit status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.1):
            pass
        return self.process.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        with contextlib.suppress(OSError):
            os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def answer(argv: list[str]) -> int:
    """``terminal.py --answer PASSWORD -- COMMAND…``: run COMMAND on a terminal,
    type PASSWORD at each password prompt, then print what the terminal showed
    and exit with COMMAND's status (the docs' tours run prompting commands so)."""
    password = argv[argv.index("--answer") + 1]
    command = argv[argv.index("--") + 1 :]
    answered = 0
    with Terminal(command, cwd=Path.cwd(), env=os.environ) as terminal:
        while terminal._read(0.1):
            prompts = len(re.findall(r"Password(?: again)?: ", terminal.text))
            if prompts > answered:
                terminal.send(password.encode() + b"\n")
                answered = prompts
        status = terminal.wait()
    sys.stdout.write(terminal.text)
    return status


if __name__ == "__main__":
    sys.exit(answer(sys.argv))
