"""What a process holds: the memfds with data in them, by name (whose they are)."""
from __future__ import annotations

import os


def memfds(pid: int | str = "self") -> list[str]:
    """The memfds `pid` holds open that hold data. An empty one (no page: st_blocks 0)
    is an idle child's output memfd, lent with the child before any job touched it."""
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("/memfd:") and os.stat(f"/proc/{pid}/fd/{fd}").st_blocks:
                names.append(target)
        except OSError:                          # closed meanwhile
            continue
    return names
