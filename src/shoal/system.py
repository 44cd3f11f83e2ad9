"""What Shoal asks of the operating system: a free loopback port, child
processes that never outlive the process that started them, and stopping a
child process it started."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from typing import Any

#: Set by `shoal serve` for its workers: the pid they must not outlive.
SERVE_PID_VARIABLE = "SHOAL_SERVE_PID"

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def follow_serve_process() -> None:
    """In a worker of `shoal serve`: die with it, even when it is killed outright."""
    parent = os.environ.get(SERVE_PID_VARIABLE)
    if not parent:
        return
    die_with_parent()
    if os.getppid() != int(parent):  # the parent died before we asked
        os._exit(1)


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it is still there after ``timeout``
    seconds. Returns once it is gone."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill_process(process: subprocess.Popen[Any]) -> None:
    """Stop a child at once, as a crash would (SIGKILL). Returns once it is gone."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
