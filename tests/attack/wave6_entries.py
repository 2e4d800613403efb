"""Entries for tests/attack/test_wave6_redteam.py: hostile children of the lending design.

A child now speaks to the caller directly on its job line (`chan` in sandbox.child.main's
frame) and still holds its control channel to the fork server (`control` there). Each
entry here abuses one of them after the child has read its job: floods and descriptors
on the line, a line closed or emptied while the child lives on, messages out of turn on
the control channel, output bytes rewritten after the report. Anything else is
tests.sandbox.entries' (params["do"] names the entry).
"""
from __future__ import annotations

import mmap
import os
import socket
import struct
import sys
import time

from sandbox import trailer
from tests.sandbox import entries as sandbox_entries
from tests.sandbox.hostile import channel, output_fd


def _control() -> socket.socket:
    """The child's control channel to the fork server (`control` in child.main)."""
    frame = sys._getframe()
    while frame is not None:
        sock = frame.f_locals.get("control")
        if isinstance(sock, socket.socket) and frame.f_code.co_name == "main":
            return sock
        frame = frame.f_back
    raise RuntimeError("no control channel found")


def _write_outputs(items: list[bytes]) -> int:
    """Write items and their table into the output memfd; return the bytes used."""
    blob = b"".join(items) + trailer.encode([len(item) for item in items])
    with mmap.mmap(output_fd(), len(blob)) as window:
        window[:] = blob
    return len(blob)


def _report_ok(items: list[bytes]) -> bytes:
    return ('{"type":"report","status":"ok","used":%d}' % _write_outputs(items)).encode()


def _send_ok(chan: socket.socket, items: list[bytes]) -> None:
    """An ok report (no descriptor: the caller holds the output memfd already)."""
    chan.send(_report_ok(items))


def _then(params) -> None:
    then = params.get("then", "exit")
    if then == "hang":
        time.sleep(params.get("s", 30))
    os._exit(0)


def report_then_flood(inputs, params):
    """A valid report, then params["n"] more datagrams (reports of other bytes, junk, and
    with params["fds"] descriptors each), then exit or hang."""
    chan = channel()
    _send_ok(chan, [b"first"])
    junk = [b'{"type":"report","status":"error","error":"second"}', b"\xff" * 4000,
            b"", b'{"type":"ready","layers":[]}']
    fds = [os.dup(1) for _ in range(params.get("fds", 0))]
    for i in range(params.get("n", 1000)):
        data = junk[i % len(junk)]
        try:
            if fds:
                socket.send_fds(chan, [data or b"{}"], fds)
            else:
                chan.send(data)
        except OSError:
            break                              # the caller closed the line: cut off
    _then(params)


def fds_in_report(inputs, params):
    """The one report, with descriptors attached (its line end, its output memfd)."""
    chan = channel()
    report = _report_ok([b"with fds"])
    socket.send_fds(chan, [report], [chan.fileno(), output_fd(), 1, 2])
    _then(params)


def close_line(inputs, params):
    """Close (or half-close) the job line without a word, then live on."""
    chan = channel()
    how = params.get("how", "shutdown")
    if how == "shutdown":
        chan.shutdown(socket.SHUT_RDWR)
    elif how == "close":
        os.close(chan.fileno())
    elif how == "empty":
        chan.send(b"")                         # a zero-length datagram reads as EOF
    if params.get("report_after"):
        time.sleep(params["report_after"])
        try:
            _send_ok(chan, [b"late"])
        except OSError:
            pass
    _then(dict(params, then=params.get("then", "hang")))


def control_speaks(inputs, params):
    """Send params["what"] on the control channel to the fork server after the job was
    read, then (after params["wait"] s) return normally: a report follows on the line."""
    control = _control()
    what = params.get("what", "ready")
    try:
        if what == "ready":
            control.send(b'{"type":"ready","layers":[]}')
        elif what == "report":
            control.send(b'{"type":"report","status":"ok","used":0}')
        elif what == "worker":
            control.send(b'{"type":"worker","id":1}')
        elif what == "fds":
            socket.send_fds(control, [b'{"type":"ready","layers":[]}'], [1, 2])
        elif what == "big":
            control.send(b"x" * 60000)
        elif what == "empty":
            control.send(b"")
        elif what == "close":
            control.close()
        elif what == "flood":
            for _ in range(params.get("n", 10000)):
                try:
                    control.send(b'{"type":"ready","layers":[]}', socket.MSG_DONTWAIT)
                except OSError:
                    break
    except OSError:
        pass
    time.sleep(params.get("wait", 0))
    return [b"spoke:" + what.encode()]


def rewrite_after_report(inputs, params):
    """Report a valid output, then rewrite the output memfd for params["s"] seconds: the
    table (count, lengths, magic) and the bytes, over and over."""
    chan = channel()
    items = [b"A" * 5000, b"B" * 3000]
    _send_ok(chan, items)
    fd = output_fd()
    size = os.fstat(fd).st_size
    end = time.monotonic() + params.get("s", 1.5)
    with mmap.mmap(fd, min(size, 1 << 20)) as window:
        flip = 0
        while time.monotonic() < end:
            flip ^= 1
            window[:8016] = (b"\x00" if flip else b"\xff") * 8016
            window[8000:8016] = struct.pack("<Q", 10**6) + b"SBXOUTS1"
    os._exit(0)


def report_then_spin(inputs, params):
    """A valid report, then hold the CPU (never exits on its own)."""
    _send_ok(channel(), [b"answered"])
    x = 0
    while True:
        x += 1


def stderr_flood(inputs, params):
    """Write params["mb"] MB to stderr as fast as possible, then return normally."""
    chunk = b"E" * 65536
    for _ in range(params.get("mb", 64) * 16):
        try:
            os.write(2, chunk)
        except OSError:
            break
    return [b"flooded"]


def own_pid(inputs, params):
    return [str(os.getpid()).encode()]


def dispatch(inputs, params):
    own = globals().get(params["do"])
    if callable(own) and params["do"] not in ("dispatch", "channel", "output_fd"):
        return own(inputs, params)
    return sandbox_entries.dispatch(inputs, params)
