"""Low-level helpers shared by the layers: libc through ctypes, prctl, capabilities, /proc.

Runs anywhere; imported in the fork server, so that no library is loaded (and no file
opened) in a child after Landlock has closed the filesystem to it.
"""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import time

# Loaded once at import (fork server): a child under Landlock could not dlopen anything.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = (ctypes.c_int,) + (ctypes.c_ulong,) * 4
_libc.prctl.restype = ctypes.c_int

# <linux/prctl.h>; the stdlib exposes none of them.
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_GET_SECCOMP = 21
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

CAP_SETPCAP = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522  # 64-bit capability sets, as two 32-bit halves


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); raises OSError on failure, returns the (non-negative) result."""
    result = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        _raise_errno(f"prctl({option})")
    return result


def syscall(number: int, *args: int | ctypes.c_void_p | None) -> int:
    """A raw system call (for those glibc 2.36 has no wrapper for); raises OSError."""
    c_args = [arg if isinstance(arg, ctypes.c_void_p) else ctypes.c_long(arg or 0) for arg in args]
    result = _libc.syscall(ctypes.c_long(number), *c_args)
    if result < 0:
        _raise_errno(f"syscall {number}")
    return result


def unshare(flags: int) -> None:
    """unshare(2): os.unshare exists only from Python 3.12."""
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        _raise_errno("unshare")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capabilities() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread, as 64-bit masks (capget)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        _raise_errno("capget")
    return (data[0].effective | data[1].effective << 32,
            data[0].permitted | data[1].permitted << 32,
            data[0].inheritable | data[1].inheritable << 32)


def bounding_set() -> list[int]:
    """The capabilities still in this thread's bounding set, read with PR_CAPBSET_READ:
    no /proc needed (Landlock may have closed it), up to the running kernel's last cap."""
    return [cap for cap in range(last_capability() + 1) if prctl(PR_CAPBSET_READ, cap)]


@functools.lru_cache(maxsize=1)
def last_capability() -> int:
    """The highest capability this kernel knows (probed once, in the fork server)."""
    cap = 0
    while True:
        try:
            prctl(PR_CAPBSET_READ, cap + 1)
        except OSError:  # EINVAL: past the last capability
            return cap
        cap += 1


def drop_bounding_set() -> None:
    """Empty the bounding set, if this thread may (CAP_SETPCAP effective); verify.

    Without CAP_SETPCAP it is left as is: a process with no permitted capabilities and
    no_new_privs can never gain any from it (and seccomp refuses execve anyway).
    Runs in every child before Landlock: one drop per capability, then one read of
    CapBnd to verify (probing each capability again would double the cost).
    """
    present = bounding_set()        # reads are cheap; /proc/self/status costs ~1 ms
    if not present:
        return                      # already empty: inherited from the fork server
    if capabilities()[0] & (1 << CAP_SETPCAP):
        for cap in present:
            prctl(PR_CAPBSET_DROP, cap)
        left = bounding_set()
        if left:
            raise OSError(0, f"bounding set not empty after drop: {left}")


def clear_capabilities() -> None:
    """Empty the ambient, effective, permitted and inheritable sets; verify."""
    try:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # EINVAL: kernel without ambient capabilities (< 4.3), nothing to clear
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    if _libc.capset(ctypes.byref(header), (_CapData * 2)()) != 0:
        _raise_errno("capset")
    if capabilities() != (0, 0, 0):
        raise OSError(0, f"capabilities remain after capset: {capabilities()}")


def drop_all_capabilities() -> None:
    """Bounding set first: dropping from it needs CAP_SETPCAP, which capset then drops."""
    drop_bounding_set()
    clear_capabilities()


def arm_parent_death_signal(expected_ppid: int, signal_number: int) -> None:
    """Have the kernel send signal_number when the parent dies; fail if it already has.

    The kernel clears this setting on every credential change (setresuid, a new user
    namespace), so whoever changes credentials must arm it again afterwards. The ppid is
    compared after arming: if the parent died before, no signal will ever come.
    """
    prctl(PR_SET_PDEATHSIG, signal_number)
    if os.getppid() != expected_ppid:
        raise OSError(0, f"parent {expected_ppid} died before PR_SET_PDEATHSIG")


def set_undumpable() -> None:
    """No core dumps, no ptrace by same-uid processes, /proc/self owned by root.

    Credential changes reset it to the sysctl default: call after each of them.
    """
    prctl(PR_SET_DUMPABLE, 0)
    if prctl(PR_GET_DUMPABLE) != 0:
        raise OSError(0, "PR_SET_DUMPABLE 0 did not stick")


def proc_status_field(name: str) -> str:
    """One field of /proc/self/status, e.g. "VmSize" -> "123456 kB".

    Opens a file by path: call before Landlock is applied.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise KeyError(f"/proc/self/status has no {name!r}")


def wait_bounded(pid: int, timeout_s: float) -> int:
    """Wait for child pid at most timeout_s, then SIGKILL it and reap it: never unbounded.

    Returns the raw wait status (a killed-on-timeout child reports SIGKILL).
    """
    deadline = time.monotonic() + timeout_s
    delay_s = 0.001
    while time.monotonic() < deadline:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return status
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.05)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]  # SIGKILL cannot be blocked: this wait is short


# PyDLL, not CDLL: the call keeps the GIL, so the child starts holding it, as its parent
# was when it forked.
_libc_with_gil = ctypes.PyDLL(None, use_errno=True)
_libc_with_gil.fork.restype = ctypes.c_int


def fork_without_python_hooks() -> int:
    """fork(2) without os.fork()'s work around it: the import lock, the re-initialised
    runtime, thread and signal state, and every os.register_at_fork() hook (threading's,
    random's reseed, logging's). In a child of a process that imported a PDF stack that
    work took 0.5 ms of CPU and ~220 copy-on-write faults (references touched on pages
    shared with the parent), against 0.05 ms and 28 without (measured). Sound only in a
    SINGLE-THREADED caller (no lock can be held by a thread the child lacks) whose child
    needs none of those hooks: the spawner, which reseeds `random` itself. Returns the
    pid (0 in the child); raises OSError."""
    pid = _libc_with_gil.fork()
    if pid < 0:
        _raise_errno("fork")
    return pid
