"""Landlock: the child opens no file but policy.readable_files (read-only), creates,
writes, truncates or removes nothing, binds and connects no TCP port, and signals or
reaches (abstract unix sockets) no process outside its own Landlock domain.

probe() runs in the fork server; apply() in the child, after Rlimits and before Seccomp
(seccomp lets path calls through only because Landlock answers them). Raw system calls
through ctypes: glibc 2.36 has no wrappers.
Limits of Landlock itself: stat/access/readlink are not access rights, so the child can
still learn whether a path exists and its metadata (never its content); fds opened
before apply() (job channel, memfds) keep working, as intended.
"""
from __future__ import annotations

import ctypes
import os

from sandbox.layers import _sys
from sandbox.layers.base import ChildContext, Layer, LayerError, LayerStatus

# Same numbers on x86_64 and aarch64 (the generic syscall table).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

# <linux/landlock.h>: filesystem rights, with the ABI that introduced each.
ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13       # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14    # ABI 3
ACCESS_FS_IOCTL_DEV = 1 << 15   # ABI 5
ACCESS_NET_BIND_TCP = 1 << 0    # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1                # ABI 6

_FS_ABI1 = (1 << 13) - 1  # the 13 rights of ABI 1

#: (first ABI, filesystem rights, network rights, scopes) added by that ABI.
_BY_ABI = (
    (1, _FS_ABI1, 0, 0),
    (2, ACCESS_FS_REFER, 0, 0),
    (3, ACCESS_FS_TRUNCATE, 0, 0),
    (4, 0, ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP, 0),
    (5, ACCESS_FS_IOCTL_DEV, 0, 0),
    (6, 0, 0, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL),
)


class _RulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr; it grew with the ABI: pass only the known prefix."""

    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),  # ABI 4
                ("scoped", ctypes.c_uint64)]              # ABI 6


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version; raises OSError if Landlock is absent/disabled."""
    return _sys.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)


def _ruleset_attr(abi: int) -> tuple[_RulesetAttr, int]:
    """Every right this ABI knows is handled (denied unless a rule grants it); the size
    of the struct the kernel of that ABI expects."""
    attr = _RulesetAttr()
    for since, fs, net, scopes in _BY_ABI:
        if abi >= since:
            attr.handled_access_fs |= fs
            attr.handled_access_net |= net
            attr.scoped |= scopes
    if abi >= 6:
        size = _RulesetAttr.scoped.offset + 8
    elif abi >= 4:
        size = _RulesetAttr.scoped.offset
    else:
        size = _RulesetAttr.handled_access_net.offset
    return attr, size


def _allow_read(ruleset_fd: int, path: str) -> None:
    """Grant READ_FILE on one file. O_PATH: the rule names the inode, nothing is read."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(ACCESS_FS_READ_FILE, fd)
        _sys.syscall(_SYS_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH,
                     ctypes.c_void_p(ctypes.addressof(rule)), 0)
    finally:
        os.close(fd)


def missing_rules(abi: int) -> str:
    """What an older kernel's Landlock cannot refuse (seccomp alone stands there): said,
    since "active" would otherwise read as the whole of this layer."""
    missing = []
    if abi < 4:
        missing.append("TCP bind/connect (ABI 4, Linux 6.7)")
    if abi < 6:
        missing.append("signal and abstract-socket scopes (ABI 6, Linux 6.12)")
    return "; without " + " or ".join(missing) if missing else ""


class Landlock(Layer):
    name = "landlock"

    def probe(self) -> LayerStatus:
        """In the fork server: is Landlock enabled, and which ABI."""
        try:
            abi = abi_version()
        except OSError as exc:  # ENOSYS: not built; EOPNOTSUPP: not in the lsm= list
            return LayerStatus(self.name, False, f"Landlock unavailable: {exc}")
        return LayerStatus(self.name, True, f"Landlock ABI {abi}" + missing_rules(abi))

    def apply(self, ctx: ChildContext) -> None:
        """In the child, single-threaded (a Landlock domain binds only the calling
        thread), with no_new_privs already set by Privileges."""
        try:
            threads = int(_sys.proc_status_field("Threads"))
            if threads != 1:
                raise LayerError(f"landlock: child has {threads} threads, needs exactly 1")
            attr, size = _ruleset_attr(abi_version())
            ruleset_fd = _sys.syscall(_SYS_CREATE_RULESET,
                                      ctypes.c_void_p(ctypes.addressof(attr)), size, 0)
            try:
                for path in ctx.policy.readable_files:
                    if os.path.exists(path):
                        _allow_read(ruleset_fd, path)
                _sys.syscall(_SYS_RESTRICT_SELF, ruleset_fd, 0)
            finally:
                os.close(ruleset_fd)
        except OSError as exc:
            raise LayerError(f"landlock: {exc}") from exc
