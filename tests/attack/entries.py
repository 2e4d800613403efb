"""Attacker code for the attack tests: what an exploited parser in a child may do.

Imported by the fork server (before any fork). `dispatch` runs params["do"] from here,
or else from tests.sandbox.entries (speak, forge_trailer, concat, ...), so one Sandbox
serves every attack (tests.attack.child_entry drives them through a real HTTP server).
"""
from __future__ import annotations

import json
import mmap
import os
import socket
import threading
import time

from tests.sandbox import entries as sandbox_entries
from tests.sandbox import hostile

#: How an upload starts that is an attack order (tests.attack.child_entry).
ATTACK_MAGIC = b"%ATTACK\n"


def thread_flood(inputs, params):
    """Start threads until the kernel says no (a pids cgroup, RLIMIT_NPROC), hold them
    for params["hold_s"], then answer normally."""
    threading.stack_size(64 * 1024)
    release = threading.Event()
    started = 0
    for _ in range(params.get("max", 400)):
        try:
            threading.Thread(target=release.wait, daemon=True).start()
        except RuntimeError:
            break
        started += 1
    time.sleep(params.get("hold_s", 1.0))
    release.set()
    return [str(started).encode()]


def stderr_flood(inputs, params):
    """Write params["mb"] MiB to stderr as fast as possible, then answer."""
    block = b"E" * 65536
    for _ in range(params["mb"] * 16):
        os.write(2, block)
    return [b"flooded"]


def report_then(inputs, params):
    """Report ok with one output, then stay alive doing params["then"]: "hang",
    "scribble" (rewrite the output memfd in a loop) or "reports" (more reports)."""
    from sandbox import trailer
    body = b"first"
    fd = hostile.output_fd()
    blob = body + trailer.encode([len(body)])
    with mmap.mmap(fd, len(blob)) as window:
        window[:] = blob
    chan = hostile.channel()
    report = ('{"type":"report","status":"ok","used":%d}' % len(blob)).encode()
    chan.send(report)
    end = time.monotonic() + params.get("for_s", 30)
    with mmap.mmap(fd, 1 << 20) as window:
        while time.monotonic() < end:
            if params["then"] == "scribble":
                window[:len(body)] = b"XXXXX"
            elif params["then"] == "reports":
                try:
                    chan.send(report)
                except OSError:
                    pass
            time.sleep(0.001)
    os._exit(0)


def sleep_then_report(inputs, params):
    """Sleep until params["s"] seconds into the job, then answer normally."""
    time.sleep(params["s"])
    return [b"late"]


def close_channel(inputs, params):
    """Close the job channel (params["how"] "close") or shut it down ("SHUT_RDWR"),
    then params["then"]: "return" (the report cannot go) or "hang"."""
    chan = hostile.channel()
    if params["how"] == "close":
        chan.close()
    else:
        chan.shutdown(getattr(socket, params["how"]))
    if params.get("then") == "return":
        return [b"after close"]
    time.sleep(60)


def answer(inputs, params):
    """Answer params["outputs"], each a list of text pieces (a piece: a string, or
    [string, times] repeated), then, if params["body_mb"], a body of that many MiB."""
    outputs = ["".join(p if isinstance(p, str) else p[0] * p[1] for p in pieces).encode()
               for pieces in params["outputs"]]
    if params.get("body_mb"):
        outputs.append(b"%PDF-" + bytes((params["body_mb"] << 20) - 5))
    return outputs


def answer_bytes(inputs, params):
    """Answer params["hex"], each output given as hex."""
    return [bytes.fromhex(item) for item in params["hex"]]


def answer_if_given(inputs, params):
    """Answer params["given"] (outputs as hex) when the job's params carry
    params["key"] in their "params", else params["absent"]: what a child was told."""
    held = params.get("job", {}).get("params", {})
    return answer_bytes(inputs, {"hex": params["given" if params["key"] in held else "absent"]})


def safe_pixels(inputs, params):
    """safe's phase 1 gone wrong: pixel streams the server's check accepts, of a document
    of params["pages"] (default 1) white pages params["points"] square at params["dpi"],
    from the job's `first` on, as many as fit the job's budget (params["per_batch"]: at
    most that many); its first output, which the server ignores, is params["next"], an
    order for the phase-2 child that maps this output memfd as its input (None: none)."""
    from notrace.operations import pixelstream
    job = params.get("job", {})
    total, first = params.get("pages", 1), job.get("first", 0)
    side = params["points"] * params["dpi"] // 72
    page = pixelstream.PAGE_HEADER.size + side * side * pixelstream.BYTES_PER_PIXEL
    fit = (job.get("budget", 1 << 40) - pixelstream.STREAM_HEADER.size) // page
    count = max(1, min(total - first, fit, params.get("per_batch", total)))
    stream = bytearray(pixelstream.pack_stream_header(total, first, count))
    for _ in range(count):
        stream += pixelstream.pack_page_header(side, side, params["points"], params["points"])
        stream += b"\xff" * (side * side * pixelstream.BYTES_PER_PIXEL)
    if params.get("next") is None:   # phase 2 is notrace's own
        return [b"{}", stream]
    return [ATTACK_MAGIC + json.dumps(params["next"]).encode(), stream]


def dispatch(inputs, params):
    own = globals().get(params["do"])
    if callable(own) and params["do"] != "dispatch":
        return own(inputs, params)
    return sandbox_entries.dispatch(inputs, params)
