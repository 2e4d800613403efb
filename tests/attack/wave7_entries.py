"""Entries for tests/attack/test_wave7_redteam.py: hostile children of the arrangement in
which the caller holds each lent child's output memfd from the start and a child never
sends a descriptor.

Each entry abuses the output memfd the caller shares with the child (writes after an
error report, holes punched and bytes rewritten after an ok report, odd fcntl/ftruncate/
seal/mmap calls on it), or floods descriptors in flight on its job line. Anything else is
tests.attack.wave6_entries' (params["do"] names the entry).
"""
from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import socket
import struct
import time

from tests.attack import wave6_entries
from tests.attack.wave6_entries import _send_ok, _write_outputs
from tests.sandbox.hostile import channel, output_fd

SECRET = b"W7-SECRET-"                     # what a hostile child writes where none may read


def error_then_write(inputs, params):
    """Fill the output memfd with SECRET and a valid output table, report "error", then
    keep rewriting SECRET across the memfd for params["s"] seconds (it is the child's
    still: is any of it readable by anyone else?), then exit."""
    fd = output_fd()
    size = os.fstat(fd).st_size
    span = min(size, params.get("bytes", 1 << 20))
    _write_outputs([SECRET * (span // len(SECRET) // 2)])
    channel().send(b'{"type":"report","status":"error","error":"W7: hostile %d"}'
                   % os.getpid())
    end = time.monotonic() + params.get("s", 1.0)
    with mmap.mmap(fd, span) as window:
        block = (SECRET * (span // len(SECRET) + 1))[:span]
        while time.monotonic() < end:
            window[:] = block
            time.sleep(0.001)
    os._exit(0)


def ok_then_scribble(inputs, params):
    """A valid ok report of two outputs, then for params["s"] seconds: punch holes in the
    memfd (MADV_REMOVE), rewrite its bytes and table, change the open file's flags and
    offset (shared with the caller's descriptor): the caller reads meanwhile."""
    items = [b"A" * 5000, b"B" * 3000]
    _send_ok(channel(), items)
    fd = output_fd()
    length = 1 << 20
    end = time.monotonic() + params.get("s", 1.0)
    with mmap.mmap(fd, length) as window:
        flip = 0
        while time.monotonic() < end:
            flip ^= 1
            if flip:
                window.madvise(mmap.MADV_REMOVE, 0, length)
            else:
                window[:8016] = b"\xff" * 8016
            for flags in (os.O_APPEND | os.O_NONBLOCK, 0):
                try:
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
                except OSError:
                    pass
            try:
                os.lseek(fd, (1 << 20) * flip, os.SEEK_SET)
            except OSError:
                pass
    os._exit(0)


def _try(call) -> str:
    try:
        call()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "done"


def memfd_oddities(inputs, params):
    """Try what the child may do (seccomp refuses ftruncate and fallocate outright: a
    SIGSYS) to change its output memfd's shape or the caller's view of it, before its
    outputs are written the normal way: seals, holes punched over all of it
    (MADV_REMOVE), file status flags of the open file the caller shares (O_APPEND,
    O_NONBLOCK, O_DIRECT), its offset. Returns [what
    happened (JSON), its payload]: the caller must read exactly these."""
    fd = output_fd()
    size = os.fstat(fd).st_size
    done = {}
    for name, seal in (("write", fcntl.F_SEAL_WRITE), ("grow", fcntl.F_SEAL_GROW),
                       ("future_write", getattr(fcntl, "F_SEAL_FUTURE_WRITE", 16))):
        done["seal_" + name] = _try(lambda seal=seal: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seal))

    def punch() -> None:
        with mmap.mmap(fd, size) as window:
            window.madvise(mmap.MADV_REMOVE, 0, size - size % mmap.PAGESIZE)
    done["punch"] = _try(punch)

    for name, flag in (("append", os.O_APPEND), ("nonblock", os.O_NONBLOCK),
                       ("direct", getattr(os, "O_DIRECT", 0)),
                       ("all", os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_DIRECT", 0))):
        done["flags_" + name] = _try(lambda flag=flag: fcntl.fcntl(fd, fcntl.F_SETFL, flag))
    done["lseek"] = _try(lambda: os.lseek(fd, size * 4, os.SEEK_SET))
    done["size"] = os.fstat(fd).st_size
    done["was"] = size
    done["flags"] = fcntl.fcntl(fd, fcntl.F_GETFL)
    return [json.dumps(done, sort_keys=True).encode(), b"payload" * 1000]


def resize_output(inputs, params):
    """ftruncate (params["how"] == "ftruncate") or fallocate its output memfd: seccomp
    allows neither (SIGSYS), whatever the seals would say."""
    fd = output_fd()
    if params["how"] == "ftruncate":
        os.ftruncate(fd, 0)
    else:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size + (1 << 20))
    return [b"resized"]


def sigio_at(inputs, params):
    """Signal other processes without kill(): F_SETOWN, F_SETSIG SIGKILL and O_ASYNC on
    the stderr pipe (signalled each time the fork server drains it), aimed at the first
    of params["pids"] that is not itself, and on the job line (signalled when the caller
    closes its end), aimed at the second (or the first again); then write stderr and
    report an error naming the targets and what the kernel allowed. (The policy refuses
    the first step: the child dies by SIGSYS, a "violation".)"""
    targets = [pid for pid in params["pids"] if pid != os.getpid()]
    chan = channel()
    allowed = []
    for fd, target in ((2, targets[0]), (chan.fileno(), targets[1 % len(targets)])):
        steps = []
        for call in (lambda: fcntl.fcntl(fd, fcntl.F_SETOWN, target),
                     lambda: fcntl.fcntl(fd, 10, 9),              # F_SETSIG: SIGKILL
                     lambda: fcntl.fcntl(fd, fcntl.F_SETFL,
                                         fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)):
            steps.append(_try(call))
        allowed.append(",".join(steps))
    for _ in range(50):
        try:
            os.write(2, b"x" * 4096)
        except OSError:
            break
        time.sleep(0.005)
    chan.send(('{"type":"report","status":"error","error":"W7 sigio %s %s"}'
               % (",".join(map(str, targets[:2])), "/".join(allowed))).encode())
    end = time.monotonic() + params.get("s", 1.0)
    while time.monotonic() < end:
        try:
            os.write(2, b"y" * 4096)
        except OSError:
            pass
        time.sleep(0.01)
    os._exit(0)


def landlock_abi_5():
    """Fork-server warm-up: children confine themselves as on a kernel whose Landlock is
    ABI 5 at most (Linux 6.10/6.11; 6.1 LTS has ABI 3): no scopes, so no
    LANDLOCK_SCOPE_SIGNAL. Everything else of the sandbox is as it is."""
    from sandbox.layers import landlock
    real = landlock.abi_version
    landlock.abi_version = lambda: min(5, real())


def flood_fds(inputs, params):
    """Keep as many descriptors in flight as the kernel lets this user: messages of
    params["fds"] copies of one fd each, sent on the job line for params["s"] seconds
    (errors ignored: ETOOMANYREFS, a full line, a line closed), then hang."""
    chan = channel()
    count = params.get("fds", 253)                   # SCM_MAX_FD
    end = time.monotonic() + params.get("s", 2.0)
    while time.monotonic() < end:
        try:
            socket.send_fds(chan, [b"{}"], [1] * count, socket.MSG_DONTWAIT)
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                break
    time.sleep(params.get("hang", 30))
    return [b"never"]


def flood_fds_on_control(inputs, params):
    """The same flood on the control channel to the fork server, and on the line."""
    control = wave6_entries._control()
    end = time.monotonic() + params.get("s", 2.0)
    while time.monotonic() < end:
        for sock in (control, channel()):
            try:
                socket.send_fds(sock, [b"{}"], [1] * 253, socket.MSG_DONTWAIT)
            except OSError:
                pass
    time.sleep(params.get("hang", 30))
    return [b"never"]


def overfill(inputs, params):
    """One output of params["n"] bytes and its table, written straight into the output
    memfd (past what an honest child would write: the table's room after the cap), then
    an ok report."""
    from sandbox import trailer
    n = params["n"]
    table = trailer.encode([n])
    fd = output_fd()
    with mmap.mmap(fd, n + len(table)) as window:
        window[:n] = b"O" * n
        window[n:n + len(table)] = table
    channel().send(('{"type":"report","status":"ok","used":%d}' % (n + len(table))).encode())
    os._exit(0)


def big_canary():
    """A canary job (Sandbox(canary=...)) whose output spans many pages and ends
    mid-page: what the canary frees (child._free_pages) must be all of it."""
    return [b"C" * (3 * 1024 * 1024 + 123)], {"do": "big_canary_run"}


def big_canary_run(inputs, params):
    """Run as the canary: note that it ran in this child (canary_report tells), echo."""
    from tests.sandbox import entries as sandbox_entries
    sandbox_entries.canary_seen.update(pid=os.getpid(), confined="big", inputs=[])
    return [bytes(inputs[0])]


def dispatch(inputs, params):
    own = globals().get(params["do"])
    if callable(own) and params["do"] not in ("dispatch", "channel", "output_fd", "big_canary"):
        return own(inputs, params)
    return wave6_entries.dispatch(inputs, params)


#: fcntl calls the policy refuses (each makes the kernel signal a process for the
#: child), by name: (command, argument).
SIGNALLING_FCNTLS = {
    "F_SETOWN": (8, 1), "F_SETSIG": (10, 9), "F_SETOWN_EX": (15, 0),
    "F_SETLEASE": (1024, 1), "F_NOTIFY": (1026, 0), "F_SETFL_O_ASYNC": (4, os.O_ASYNC),
}


def fcntl_call(inputs, params):
    """One fcntl on its stderr pipe: params["name"] of SIGNALLING_FCNTLS, or
    "F_SETFL_O_NONBLOCK" (allowed: the control). Returns what it gave back."""
    if params["name"] == "F_SETFL_O_NONBLOCK":
        command, argument = fcntl.F_SETFL, os.O_NONBLOCK
    else:
        command, argument = SIGNALLING_FCNTLS[params["name"]]
    if params["name"] == "F_SETOWN_EX":           # struct f_owner_ex {int type; pid}
        argument = struct.pack("ii", 0, os.getpid())
    return [_try(lambda: fcntl.fcntl(2, command, argument)).encode()]
