"""What a process holds: the memfds with data in them, by name (whose they are)."""
from __future__ import annotations

import contextlib
import os


def memfd_paths(pid: int | str = "self") -> list[str]:
    """Every memfd `pid` holds, empty or not, as /proc paths one can open."""
    paths = []
    with contextlib.suppress(OSError):                 # the process is gone
        for fd in os.listdir(f"/proc/{pid}/fd"):
            path = f"/proc/{pid}/fd/{fd}"
            with contextlib.suppress(OSError):         # closed meanwhile
                if os.readlink(path).startswith("/memfd:"):
                    paths.append(path)
    return paths


def memfds(pid: int | str = "self") -> list[str]:
    """The memfds `pid` holds open that hold data. An empty one (no page: st_blocks 0)
    is an idle child's output memfd, lent with the child before any job touched it."""
    names = []
    for path in memfd_paths(pid):
        with contextlib.suppress(OSError):             # closed meanwhile
            if os.stat(path).st_blocks:
                names.append(os.readlink(path))
    return names
