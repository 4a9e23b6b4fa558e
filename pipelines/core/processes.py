"""Which process holds something: owner strings and whether their process still lives.

Runs, output claims and watch leases record their owner as ``host:pid``
(optionally followed by ``:token``). A later process may take over what a
dead one left, but only on the same machine, where it can tell.
"""
from __future__ import annotations

import os
import socket


def this_process() -> str:
    """``host:pid`` of the current process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_gone(owner: str) -> bool:
    """True when ``owner`` names a process of this machine that no longer exists.

    Anything else (another machine, this very process, a live or
    unreadable process, a malformed owner) counts as alive: taking over
    from a live process would be worse than waiting for one.
    """
    parts = str(owner).split(":")
    if len(parts) < 2 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
