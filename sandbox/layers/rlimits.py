"""Rlimits: kernel resource limits of a child (memory, CPU, files, fds).

probe() runs in the fork server; apply() in the child before its job arrives;
tighten_for_job() in the child once it knows the job's own, possibly tighter, limits;
current_vm_bytes() in the child before Landlock (it reads /proc by path).
Every limit set here lowers the hard limit too, so the job cannot raise it back.
"""
from __future__ import annotations

import math
import resource

from sandbox.layers import _sys
from sandbox.layers.base import ChildContext, Layer, LayerError, LayerStatus
from sandbox.limits import Limits

#: Input files one job may hand to its child, each as one fd.
MAX_JOB_FDS = 64
#: Headroom above the job's fds: stdio, job channel, stderr pipe, output memfds, and what
#: the libraries open on already-open fds (dup).
_FD_HEADROOM = 32
#: Each input holds three fds at most: its own (kept for the entry, sandbox.inputs), its
#: mapping's dup, and the dup of a library's own mapping of it (pikepdf's mmap access).
NOFILE = 3 * MAX_JOB_FDS + _FD_HEADROOM

_MIB = 1 << 20

# Limits that are zero for every job: no file may grow (outputs go into memfds the parent
# sized), no core dumps, no locked memory, no POSIX message queues.
_ZERO_LIMITS = (resource.RLIMIT_FSIZE, resource.RLIMIT_CORE, resource.RLIMIT_MEMLOCK,
                resource.RLIMIT_MSGQUEUE)


def _min_limit(a: int, b: int) -> int:
    """The smaller of two rlimit values, where RLIM_INFINITY is larger than anything."""
    if a == resource.RLIM_INFINITY:
        return b
    if b == resource.RLIM_INFINITY:
        return a
    return min(a, b)


def _lower(which: int, soft: int, hard: int) -> None:
    """Set a limit to (soft, hard), but never above what it already is: only lowers."""
    old_soft, old_hard = resource.getrlimit(which)
    new_hard = _min_limit(old_hard, hard)
    new_soft = _min_limit(_min_limit(old_soft, soft), new_hard)
    resource.setrlimit(which, (new_soft, new_hard))


def _cpu_seconds_used() -> int:
    """CPU seconds this process has used so far, rounded up (RLIMIT_CPU counts them)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return math.ceil(usage.ru_utime + usage.ru_stime)


def _limit_memory_and_cpu(limits: Limits, baseline_vm_bytes: int) -> None:
    """RLIMIT_AS = baseline + memory_mb; RLIMIT_CPU soft = used + cpu_s, SIGKILL one later.

    SIGXCPU comes at the soft limit; if the job ignores it, the hard limit kills.
    """
    address_space = baseline_vm_bytes + limits.memory_mb * _MIB
    _lower(resource.RLIMIT_AS, address_space, address_space)
    cpu_soft = _cpu_seconds_used() + math.ceil(limits.cpu_s)
    _lower(resource.RLIMIT_CPU, cpu_soft, cpu_soft + 1)


def tighten_for_job(limits: Limits, baseline_vm_bytes: int) -> None:
    """In the child, once a job brought its own limits: lower AS and CPU (never raises
    them: a job may only tighten). CPU counts from now: used so far + limits.cpu_s."""
    _limit_memory_and_cpu(limits, baseline_vm_bytes)


def current_vm_bytes() -> int:
    """This process's address-space size (VmSize), the base RLIMIT_AS adds to.

    Reads /proc/self/status by path: call in the child before Landlock.
    """
    value, unit = _sys.proc_status_field("VmSize").split()
    if unit != "kB":
        raise ValueError(f"unexpected VmSize unit {unit!r}")
    return int(value) * 1024


class Rlimits(Layer):
    """Memory (address space), CPU time, file size, fds, core, memlock, message queues."""

    name = "rlimits"

    def probe(self) -> LayerStatus:
        """In the fork server: setrlimit exists everywhere."""
        return LayerStatus(self.name, True, f"AS, CPU, FSIZE 0, NOFILE {NOFILE}, CORE 0, "
                                            "MEMLOCK 0, MSGQUEUE 0")

    def apply(self, ctx: ChildContext) -> None:
        """In the child, before its job arrives."""
        try:
            _limit_memory_and_cpu(ctx.limits, ctx.baseline_vm_bytes)
            for which in _ZERO_LIMITS:
                _lower(which, 0, 0)
            _lower(resource.RLIMIT_NOFILE, NOFILE, NOFILE)
        except (OSError, ValueError) as exc:
            raise LayerError(f"rlimits: {exc}") from exc
