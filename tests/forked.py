"""A real child process forked from the test process: killed for real, started warm.

Tests that kill a run at a dangerous point need a process of its own (no
``finally`` of the test runs in it, and SIGKILL or ``os._exit`` leaves what
a crash leaves). Forked after the test process has imported poisonguard and
its libraries, the child starts in milliseconds instead of spending 10 s of
CPU importing them again.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class Child:
    pid: int
    stderr: Path


def fork(target: Callable[[], None], stderr: Path) -> Child:
    """Run ``target()`` in a forked child; its stderr goes to ``stderr``.

    The child exits 0 when ``target`` returns, and 2 with ``error: ...`` on
    its stderr when it raises; it never returns into pytest.
    """
    pid = os.fork()
    if pid:
        return Child(pid, stderr)
    code = 2
    try:
        descriptor = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(descriptor, 2)
        sys.stderr = open(2, "w", closefd=False)
        try:
            target()
            code = 0
        except Exception as error:
            print(f"error: {error}", file=sys.stderr)
        sys.stderr.flush()
    finally:
        os._exit(code)


def wait(child: Child, timeout: float = 240) -> tuple[int, str]:
    """The child's exit code (``-9`` when SIGKILLed) and what it wrote to stderr."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status), child.stderr.read_text()
        if time.monotonic() > deadline:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            raise AssertionError(f"child {child.pid} still running after {timeout} s")
        time.sleep(0.02)
