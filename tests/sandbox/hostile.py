"""Hostile entries: attacker code in a confined child, speaking on its own job channel.

Imported by tests.sandbox.entries (so by the fork server, before any fork). Each entry
finds the child's job line to the caller and sends it bytes of the test's choosing: the
caller must end that job and nothing else.
"""
from __future__ import annotations

import os
import socket
import stat
import struct
import sys


def channel() -> socket.socket:
    """The job line, taken from the frame of sandbox.child.main up the stack (the
    policy forbids making a socket object from a bare fd: the child keeps its own)."""
    frame = sys._getframe()
    while frame is not None:
        chan = frame.f_locals.get("chan")
        if isinstance(chan, socket.socket):
            return chan
        frame = frame.f_back
    raise RuntimeError("no channel found")


def report_ok(used: int) -> None:
    """Send a forged ok report of `used` bytes (the caller holds the output memfd)."""
    channel().send(('{"type":"report","status":"ok","used":%d}' % used).encode())


def output_fd() -> int:
    """The output memfd: the largest regular file left open that may be written (inputs
    stay open, sealed against writes; params are closed once read)."""
    import fcntl
    best, best_size = None, -1
    for fd in range(3, 256):
        try:
            info = os.fstat(fd)
            sealed = fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and not sealed and info.st_size > best_size:
            best, best_size = fd, info.st_size
    if best is None:
        raise RuntimeError("no output memfd found")
    return best


def build(pieces) -> bytes:
    """A message from pieces: bytes as hex, or [hex, times] repeated (so params stay small)."""
    out = bytearray()
    for piece in pieces:
        if isinstance(piece, str):
            out += bytes.fromhex(piece)
        else:
            out += bytes.fromhex(piece[0]) * piece[1]
    return bytes(out)


def speak(inputs, params):
    """Send params["messages"] (each {"pieces", "fds", "times"}) on the channel, then
    end as params["then"] says: "return" (a normal report follows), "exit" or "hang"."""
    chan = channel()
    for message in params["messages"]:
        data = build(message["pieces"])
        fds = [os.dup(1) for _ in range(message.get("fds", 0))]
        for _ in range(message.get("times", 1)):
            try:
                if fds:
                    socket.send_fds(chan, [data], fds)
                else:
                    chan.send(data)
            except OSError:
                pass                     # too big for the socket, or we were cut off
        for fd in fds:
            os.close(fd)
    then = params.get("then", "return")
    if then == "exit":
        os._exit(0)
    if then == "hang":
        import time
        time.sleep(60)
    return [b"hostile"]


def forge_trailer(inputs, params):
    """Write params["data"] (hex) and a hand-made output table into the output memfd,
    then report params["used"] bytes used (default: all written) and exit."""
    import mmap

    from sandbox import trailer
    body = bytes.fromhex(params.get("data", ""))
    lengths = params["lengths"]
    count = params.get("count", len(lengths))
    magic = bytes.fromhex(params["magic"]) if "magic" in params else trailer.MAGIC
    blob = body + struct.pack(f"<{len(lengths)}Q", *lengths) + struct.pack("<Q", count) + magic
    with mmap.mmap(output_fd(), len(blob)) as window:
        window[:] = blob
    used = params.get("used", len(blob))
    report_ok(used)
    os._exit(0)


def report_with(inputs, params):
    """Write one real output ("mine") and its table, then report ok carrying
    params["fds"]: names of descriptors to hand over with it: "output" (its output
    memfd), "input" (the job's first input's memfd), "stderr", "line" (the job line
    itself); [] hands over none, as a real report does. Then exit."""
    import mmap

    from sandbox import inputs as job_inputs
    from sandbox import trailer
    body = b"mine"
    blob = body + trailer.encode([len(body)])
    out = output_fd()
    with mmap.mmap(out, len(blob)) as window:
        window[:] = blob
    named = {"output": out, "stderr": 2, "line": channel().fileno(),
             "input": job_inputs.fileno(inputs[0]) if inputs else 2}
    report = ('{"type":"report","status":"ok","used":%d}' % len(blob)).encode()
    if params["fds"]:
        socket.send_fds(channel(), [report], [named[name] for name in params["fds"]])
    else:
        channel().send(report)
    os._exit(0)
