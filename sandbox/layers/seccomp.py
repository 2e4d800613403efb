r"""Seccomp: the child may make only the system calls listed here; any other kills it.

probe() runs in the fork server; apply() in the child, last of all layers (the other
layers need calls this filter refuses: setresuid, unshare, landlock_*). The default
action is KILL_PROCESS: the child dies by SIGSYS, which the fork server reports as a
"violation".

The list is the measured need of a warm child (one that has already imported and run
pikepdf, pypdf, zlib and Pillow once, as the fork server's warm-up does) doing a job:
merge two PDFs, encrypt with AES-256, extract text, make a PNG with Pillow, in the main
thread and in a second thread. That job is tests/sandbox/test_layers.py::
test_workload_runs_confined; to measure again, trace it and list what the confined child
and its thread called after the filter was loaded (the first pid is pytest's own):

    strace -f -qq -o trace.txt .venv/bin/pytest -q -p no:cacheprovider \
        tests/sandbox/test_layers.py -k workload
    P=$(head -1 trace.txt | cut -d' ' -f1)
    awk '/SECCOMP_SET_MODE_FILTER.*= 0$/{on=1} on' trace.txt | grep -v "^$P " \
        | grep -oE '^[0-9]+ +[a-z_0-9]+\(' | cut -d' ' -f2- | sort | uniq -c

Measured (CPython 3.11.7, glibc 2.36, qpdf 12.4.2, x86_64): brk, mmap, munmap, mprotect,
madvise, futex, read, write, gettid, rt_sigaction, rt_sigprocmask, exit, exit_group; for
the thread clone3 (refused: glibc falls back to clone), clone, set_robust_list, rseq; and
for the first encryption openat("/dev/urandom") (qpdf fopen()s it once and keeps the
FILE), newfstatat(fd, "", AT_EMPTY_PATH) and ioctl(TCGETS) (glibc's stdio asks isatty
before buffering a file). The rest of the list is what the same libraries may call on
other inputs or paths (lseek, poll on the job channel, getrandom, ...): each harmless to
a process that can open nothing and reach no one.
A library that imports a module lazily needs openat too (pypdf imports pypdf.filters on
first use): that is why path calls reach Landlock, which refuses them, instead of killing
the child: the job then fails with a Python error that names the missing file.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
import termios

from sandbox.layers import _sys
from sandbox.layers.base import ChildContext, Layer, LayerError, LayerStatus

try:
    import pyseccomp as seccomp
    _IMPORT_ERROR = ""
except (ImportError, RuntimeError) as exc:  # RuntimeError: libseccomp.so.2 not found
    seccomp = None  # type: ignore[assignment]
    _IMPORT_ERROR = str(exc)

#: Allowed with any arguments. Names are x86_64's; calls this architecture lacks
#: (open, stat, time, ... on aarch64) are left out of the filter.
ALLOWED = (
    # I/O on fds the child already has (job channel, memfds, stderr pipe).
    "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close",
    "close_range", "fstat", "dup", "dup2", "dup3",
    "poll", "ppoll", "select", "pselect6",
    # The job channel is an inherited unix socket; no socket can be created or connected.
    # sendmsg can pass fds (SCM_RIGHTS) to the fork server: it must close any it receives.
    "recvmsg", "recvfrom", "sendmsg", "sendto",
    # Memory.
    "mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "mincore", "msync",
    # Threads and their synchronization (thread creation: see clone in ALLOWED_IF).
    "futex", "futex_waitv", "set_robust_list", "rseq", "membarrier", "sched_yield",
    "sched_getaffinity", "exit",
    # Signals to itself (sending them: see kill/tgkill/tkill in ALLOWED_IF).
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    # The kernel restarts an interrupted sleep through it: refusing it would kill a job
    # that got SIGXCPU while sleeping.
    "restart_syscall",
    # Read-only facts about itself and the clock.
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid",
    "getresuid", "getresgid", "getgroups", "clock_gettime", "clock_getres",
    "clock_nanosleep", "nanosleep", "gettimeofday", "time", "getrandom", "getrusage",
    "times", "sysinfo", "uname", "getcwd",
    # Limits can only be lowered: no capability can raise a hard limit.
    "getrlimit", "setrlimit",
    "exit_group",
)

#: Calls that take a path: allowed when Landlock decides about paths (it refuses them all
#: but policy.readable_files), else answered EACCES so a lazy import fails as a Python
#: error rather than killing the job. (Landlock does not cover stat/access/readlink: with
#: it, a job can learn whether a path exists, never read what is in it.)
PATH_CALLS = (
    "openat", "open", "stat", "newfstatat", "statx", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat", "getdents64",
)

_CLONE_THREAD = 0x00010000
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
# | CLONE_NEWPID | CLONE_NEWNET: a thread never needs a new namespace.
_CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000
_AT_EMPTY_PATH = 0x1000
#: ioctl requests made on fds the child has: TCGETS is isatty(), asked by Python of every
#: file it wraps and by glibc's stdio before buffering one (qpdf's /dev/urandom: measured);
#: bytes available; close-on-exec (os.set_inheritable).
_IOCTLS = (termios.TCGETS, termios.FIONREAD, termios.FIOCLEX, termios.FIONCLEX)
#: prctl options that only read state or name a thread. Not PR_SET_DUMPABLE or
#: PR_SET_PDEATHSIG: those would undo what the Privileges layer set.
_PR_SET_NAME, _PR_GET_NAME = 15, 16
_PRCTLS = (_sys.PR_GET_PDEATHSIG, _sys.PR_GET_DUMPABLE, _PR_SET_NAME, _PR_GET_NAME,
           _sys.PR_GET_SECCOMP, _sys.PR_CAPBSET_READ, _sys.PR_GET_NO_NEW_PRIVS)

#: fcntl commands, by number (<linux/fcntl.h>, x86_64 and aarch64 alike). Refused:
#: F_SETOWN (8), F_SETSIG (10), F_SETOWN_EX (15), F_SETLEASE (1024), F_NOTIFY (1026) and
#: F_SETFL with O_ASYNC: each has the kernel send a signal for the child (SIGIO, or the
#: one F_SETSIG names, SIGKILL included) to a process of its choosing, on its stderr
#: pipe's or its job line's next event: any process of its uid (its neighbours; as an
#: unprivileged user the fork server and the caller too). Only Landlock's signal scope
#: (ABI 6, Linux 6.12) stops that otherwise. Unknown (future) commands are refused too.
_FCNTLS = (0, 1, 2, 3, 5, 6, 7, 9, 11, 16, 17, 36, 37, 38, 1025, 1027, 1028, 1030, 1031,
           1032, 1033, 1034, 1035, 1036, 1037, 1038)
_F_SETFL = 4

#: Allowed only with some arguments, with the condition (the rules: _add_conditional).
ALLOWED_IF = {
    "fcntl": "any command but those that make the kernel signal a process for it "
             "(F_SETOWN, F_SETOWN_EX, F_SETSIG, F_SETLEASE, F_NOTIFY, O_ASYNC)",
    "clone": "flags include CLONE_THREAD and no CLONE_NEW*: threads, never processes",
    "kill": "pid == own pid",
    "tkill": "tid == own pid (the main thread)",
    "tgkill": "tgid == own pid (its own threads)",
    "prlimit64": "pid 0 or own pid",
    "ioctl": "request TCGETS, FIONREAD, FIOCLEX or FIONCLEX",
    "prctl": "option PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_NAME, PR_GET_NAME, "
             "PR_GET_SECCOMP, PR_CAPBSET_READ or PR_GET_NO_NEW_PRIVS",
}

#: Refused with an errno instead of a kill. clone3 cannot be filtered by flags (they are
#: in memory): ENOSYS, not EPERM, makes glibc fall back to clone, which can be.
ERRNO = {"clone3": errno.ENOSYS}


def names() -> tuple[str, ...]:
    """Every call a child may make with some arguments (sorted): ALLOWED, ALLOWED_IF and
    PATH_CALLS. clone3 (ERRNO) is not in it: it is answered, never executed."""
    return tuple(sorted({*ALLOWED, *ALLOWED_IF, *PATH_CALLS}))


def _exists(name: str) -> bool:
    return seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0


def _add_conditional(rules: "seccomp.SyscallFilter", own_pid: int) -> None:
    """The rules of ALLOWED_IF. Several rules for one call are alternatives."""
    allow, arg, eq = seccomp.ALLOW, seccomp.Arg, seccomp.EQ
    rules.add_rule(allow, "clone", arg(0, seccomp.MASKED_EQ, _CLONE_THREAD | _CLONE_NEW_ANY,
                                       _CLONE_THREAD))
    for name in ("kill", "tkill", "tgkill"):
        rules.add_rule(allow, name, arg(0, eq, own_pid))
    for pid in (0, own_pid):
        rules.add_rule(allow, "prlimit64", arg(0, eq, pid))
    for request in _IOCTLS:
        rules.add_rule(allow, "ioctl", arg(1, eq, request))
    for option in _PRCTLS:
        rules.add_rule(allow, "prctl", arg(0, eq, option))
    for command in _FCNTLS:
        rules.add_rule(allow, "fcntl", arg(1, eq, command))
    rules.add_rule(allow, "fcntl", arg(1, eq, _F_SETFL),
                   arg(2, seccomp.MASKED_EQ, os.O_ASYNC, 0))


def _add_path_calls(rules: "seccomp.SyscallFilter", landlock_applied: bool) -> None:
    if landlock_applied:
        for name in filter(_exists, PATH_CALLS):
            rules.add_rule(seccomp.ALLOW, name)
        return
    refuse = seccomp.ERRNO(errno.EACCES)
    for name in filter(_exists, PATH_CALLS):
        # newfstatat(fd, "", AT_EMPTY_PATH) and statx likewise are how glibc does fstat():
        # keep that, refuse stat by path.
        flags_arg = {"newfstatat": 3, "statx": 2}.get(name)
        if flags_arg is None:
            rules.add_rule(refuse, name)
            continue
        by_fd, by_path = (seccomp.Arg(flags_arg, seccomp.MASKED_EQ, _AT_EMPTY_PATH, value)
                          for value in (_AT_EMPTY_PATH, 0))
        rules.add_rule(seccomp.ALLOW, name, by_fd)
        rules.add_rule(refuse, name, by_path)


def build_filter(own_pid: int, landlock_applied: bool) -> "seccomp.SyscallFilter":
    """The child's filter, not yet loaded (probe() builds one too, to check it builds)."""
    rules = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    # A call through another ABI (int 0x80, x32) would bypass the x86_64 rules: kill the
    # whole process for it, not just the thread (libseccomp's default).
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    # Apply to every thread, should one exist despite the fork server's promise.
    rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    for name in filter(_exists, ALLOWED):
        rules.add_rule(seccomp.ALLOW, name)
    for name, err in ERRNO.items():
        rules.add_rule(seccomp.ERRNO(err), name)
    _add_conditional(rules, own_pid)
    _add_path_calls(rules, landlock_applied)
    return rules


# The child's filter depends on its pid (kill, tkill, tgkill, prlimit64), known only after
# the fork. libseccomp takes milliseconds to build and compile it; so the fork server
# compiles it ONCE with this stand-in pid (above any pid_max, at most 2**22, so it cannot
# collide with a real one) and each child writes its own pid into those comparisons.
_PID_STANDIN = 0x3FFF_FFF1
_BPF_INSN = struct.Struct("=HBBI")            # struct sock_filter: code, jt, jf, k
_BPF_JMP_JEQ_K = 0x05 | 0x10 | 0x00           # BPF_JMP | BPF_JEQ | BPF_K
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1                # every thread, as libseccomp's load() does
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(os.uname().machine)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@functools.lru_cache(maxsize=2)
def compiled(landlock_applied: bool) -> bytes:
    """In the fork server: the filter's BPF program, with _PID_STANDIN for the pid."""
    rules = build_filter(_PID_STANDIN, landlock_applied)
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb", closefd=True) as sink:
            rules.export_bpf(sink)
        with os.fdopen(read_end, "rb", closefd=False) as source:
            program = source.read()
    finally:
        os.close(read_end)
    if not program or len(program) % _BPF_INSN.size:
        raise OSError(errno.EINVAL, "libseccomp exported no BPF program")
    return program


def for_pid(program: bytes, pid: int) -> bytes:
    """The compiled program with the stand-in pid replaced by `pid` in every comparison."""
    patched = bytearray(program)
    for offset in range(0, len(patched), _BPF_INSN.size):
        code, jt, jf, k = _BPF_INSN.unpack_from(patched, offset)
        if code == _BPF_JMP_JEQ_K and k == _PID_STANDIN:
            _BPF_INSN.pack_into(patched, offset, code, jt, jf, pid)
    return bytes(patched)


def _load(program: bytes) -> None:
    """In the child: install a BPF program as the seccomp filter of all its threads."""
    if _SYS_SECCOMP is None:
        raise OSError(errno.ENOSYS, f"no seccomp syscall number for {os.uname().machine}")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _BPF_INSN.size, ctypes.cast(buffer, ctypes.c_void_p))
    _sys.syscall(_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC,
                 ctypes.c_void_p(ctypes.addressof(fprog)))


def _libseccomp_version() -> str:
    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib = ctypes.CDLL("libseccomp.so.2")  # the soname pyseccomp loaded; no ldconfig run
    lib.seccomp_version.restype = ctypes.POINTER(Version)
    version = lib.seccomp_version().contents
    return f"{version.major}.{version.minor}.{version.micro}"


class Seccomp(Layer):
    name = "seccomp"

    def probe(self) -> LayerStatus:
        """In the fork server: libseccomp loads, the kernel has seccomp filters, and the
        filter builds (it is not loaded here)."""
        if seccomp is None:
            return LayerStatus(self.name, False, f"libseccomp unavailable: {_IMPORT_ERROR}")
        try:
            _sys.prctl(_sys.PR_GET_SECCOMP)  # EINVAL: kernel without CONFIG_SECCOMP
            build_filter(os.getpid(), landlock_applied=True)
            version = _libseccomp_version()
        except OSError as exc:
            return LayerStatus(self.name, False, f"seccomp unavailable: {exc}")
        return LayerStatus(self.name, True,
                           f"libseccomp {version}, allow-list of {len(names())} calls")

    def prepare(self) -> None:
        """In the fork server: compile both variants of the filter once (see compiled)."""
        for landlock_applied in (True, False):
            compiled(landlock_applied)

    def apply(self, ctx: ChildContext) -> None:
        """In the child, last: after it, the child can only compute on its fds."""
        if seccomp is None:
            raise LayerError(f"seccomp: libseccomp unavailable: {_IMPORT_ERROR}")
        try:
            _load(for_pid(compiled("landlock" in ctx.applied), os.getpid()))
        except OSError as exc:
            raise LayerError(f"seccomp: {exc}") from exc
