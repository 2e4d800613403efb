"""Result: how one job ended. One function turns a child's end into a Result.

Runs in the fork server (classify) and in the server (Result objects).
"""
from __future__ import annotations

import dataclasses
import os
import signal

#: The contract's closed set of final statuses.
STATUSES = ("ok", "error", "timeout", "cpu", "memory", "output_too_large",
            "violation", "crashed", "busy")

# Words a dying process leaves on stderr when it ran out of memory: CPython's fatal
# "Cannot allocate memory"/MemoryError, libstdc++'s std::bad_alloc, glibc's malloc aborts.
_MEMORY_MARKERS = (b"MemoryError", b"bad_alloc", b"Cannot allocate memory",
                   b"out of memory", b"malloc(): ", b"mmap failed")


@dataclasses.dataclass(frozen=True)
class Stats:
    """Resource usage of the child that ran the job."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Result:
    """The final status of one job, why, what it produced and what it cost.

    status: one of STATUSES; the first cause wins.
    reason: short human text explaining the status (never user data).
    error: for "error", the exception class and message, truncated, paths removed.
    exit_code / signal: how the child process ended (None when it did not run).
    """

    status: str
    reason: str = ""
    outputs: list[bytes] = dataclasses.field(default_factory=list)
    error: str | None = None
    stats: Stats = Stats()
    exit_code: int | None = None
    signal: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown Result.status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def classify_exit(wait_status: int, *, killed_for_deadline: bool, cpu_s: float,
                  cpu_limit_s: float, stderr_tail: bytes) -> tuple[str, str]:
    """(status, reason) for a child that died without reporting a result.

    The first cause wins: a deadline kill is "timeout" whatever the signal says.
    """
    if killed_for_deadline:
        return "timeout", "killed at its wall-clock deadline"
    if os.WIFEXITED(wait_status):
        code = os.WEXITSTATUS(wait_status)
        if _mentions_memory(stderr_tail):
            return "memory", f"exited with status {code} out of memory"
        return "crashed", f"exited with status {code} without a result"
    sig = os.WTERMSIG(wait_status)
    name = _signal_name(sig)
    if sig == signal.SIGSYS:
        return "violation", "made a system call its policy forbids (SIGSYS)"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= cpu_limit_s):
        return "cpu", "exceeded its CPU time limit"
    if sig == signal.SIGXFSZ:
        return "output_too_large", "wrote past its file size limit (SIGXFSZ)"
    if sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) and _mentions_memory(stderr_tail):
        return "memory", f"died of {name} after running out of memory"
    if sig == signal.SIGKILL:
        # Not our deadline kill, not the CPU hard limit: the one other sender of SIGKILL
        # to a confined child is the kernel's OOM killer (a cgroup memory limit).
        return "memory", "killed by SIGKILL below its CPU limit (the kernel's OOM killer)"
    return "crashed", f"killed by {name}"


def _mentions_memory(stderr_tail: bytes) -> bool:
    return any(marker in stderr_tail for marker in _MEMORY_MARKERS)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
