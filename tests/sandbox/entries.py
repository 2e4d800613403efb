"""Entry functions for the sandbox tests: each tries one thing inside a confined child.

Imported by the fork server (it receives the test process's sys.path). `dispatch` is the
one entry: params["do"] names the attempt, so one Sandbox serves every test.
"""
from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
import threading
import time

from tests.sandbox import hostile

libc = ctypes.CDLL(None, use_errno=True)


def echo(inputs, params):
    return [bytes(view) for view in inputs]


def concat(inputs, params):
    return [b"".join(bytes(v) for v in inputs) + params.get("suffix", "").encode()]


def read_passwd(inputs, params):
    with open("/etc/passwd", "rb") as f:
        return [f.read()]


def write_tmp(inputs, params):
    with open("/tmp/notrace-sandbox-escape", "wb") as f:
        f.write(b"escaped")
    return [b"wrote"]


def write_cwd(inputs, params):
    with open(os.path.join(params["cwd"], "notrace-sandbox-escape"), "wb") as f:
        f.write(b"escaped")
    return [b"wrote"]


def connect(inputs, params):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", params["port"]))
    return [b"connected"]


def execve(inputs, params):
    os.execv("/bin/sh", ["/bin/sh", "-c", "echo escaped"])


def fork(inputs, params):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return [b"forked"]


def kill_parent(inputs, params):
    os.kill(os.getppid(), 9)
    return [b"killed"]


def kill_pid(inputs, params):
    os.kill(params["pid"], 9)
    return [b"killed"]


def ptrace(inputs, params):
    PTRACE_ATTACH = 16
    if libc.ptrace(PTRACE_ATTACH, os.getppid(), None, None) != 0:
        return [b"refused:" + os.strerror(ctypes.get_errno()).encode()]
    return [b"attached"]


def environment(inputs, params):
    seen = repr(dict(os.environ)).encode()
    try:
        with open(f"/proc/{params['server_pid']}/environ", "rb") as f:
            seen += f.read()
    except OSError as exc:
        seen += f"|{type(exc).__name__}".encode()
    return [seen]


def mount(inputs, params):
    if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) != 0:
        return [b"refused:" + os.strerror(ctypes.get_errno()).encode()]
    return [b"mounted"]


def unshare(inputs, params):
    CLONE_NEWNS = 0x00020000
    if libc.unshare(CLONE_NEWNS) != 0:
        return [b"refused:" + os.strerror(ctypes.get_errno()).encode()]
    return [b"unshared"]


def setuid_root(inputs, params):
    os.setuid(0)
    return [b"root"]


def allocate(inputs, params):
    hog = bytearray(params["mb"] << 20)
    return [bytes(len(hog).to_bytes(8, "little"))]


def malloc_and_touch(inputs, params):
    """Allocate from C and crash on failure, like a C library that ignores NULL."""
    size = params["mb"] << 20
    libc.malloc.restype = ctypes.c_void_p
    ptr = libc.malloc(ctypes.c_size_t(size))
    ctypes.memset(ptr, 1, size)          # NULL when the limit refused it: SIGSEGV
    return [b"touched"]


def spin(inputs, params):
    end = time.monotonic() + params.get("s", 3600)
    x = 0
    while time.monotonic() < end:
        x += 1
    return [b"spun"]


def sleep(inputs, params):
    time.sleep(params["s"])
    return [b"slept"]


def big_output(inputs, params):
    return [b"x" * (params["mb"] << 20), b"y"]


def threads(inputs, params):
    results = []
    workers = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return [repr(sorted(results)).encode()]


def prints(inputs, params):
    print("hello on stdout " * 1000)
    print("hello on stderr " * 1000, file=sys.stderr)
    os.write(1, b"\x00\x01raw bytes on fd 1" * 1000)
    sys.stdout.flush()
    return [b"printed"]


def nothing(inputs, params):
    return None


def exit3(inputs, params):
    os._exit(3)


def raises(inputs, params):
    raise ValueError("bad thing in /home/someone/secret.pdf happened")


def segfault(inputs, params):
    ctypes.string_at(0)


def bad_return(inputs, params):
    return 42


def inputs_info(inputs, params):
    """Prove inputs are read-only memoryviews of the exact bytes."""
    out = []
    for view in inputs:
        try:
            view[0:1] = b"Z"
            writable = b"writable"
        except TypeError:
            writable = b"readonly"
        out.append(writable + b":" + bytes(view))
    return out


def urandom_file(inputs, params):
    with open("/dev/urandom", "rb") as f:
        return [f.read(16)]


def fd_count(inputs, params):
    return [repr(sorted(int(n) for n in os.listdir("/proc/self/fd"))).encode()]


def identity(inputs, params):
    return [repr((os.getuid(), os.geteuid(), os.getgid())).encode()]


def params_size(inputs, params):
    return [str(len(params["blob"])).encode()]


def memory_words_then_segfault(inputs, params):
    """stderr is the job's own: words about memory on it are no evidence."""
    os.write(2, b"MemoryError\nstd::bad_alloc\nCannot allocate memory\n")
    ctypes.string_at(0)


def kill_me_at(inputs, params):
    """Touch params["mb"] MB (below the limit), then wait to be killed from outside."""
    hog = bytearray(params["mb"] << 20)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    time.sleep(params.get("s", 30))
    return [b"survived"]


def dispatch(inputs, params):
    if params["do"] in ("speak", "forge_trailer", "report_with"):
        return getattr(hostile, params["do"])(inputs, params)
    return globals()[params["do"]](inputs, params)


def encrypt_warm_up():
    """Fork-server warm-up that makes qpdf open and cache /dev/urandom (see library_fds)."""
    import io
    import pikepdf
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.save(io.BytesIO(), encryption=pikepdf.Encryption(owner="o", user="u", R=6))


def encrypt(inputs, params):
    """AES-256 needs random bytes: from qpdf's cached /dev/urandom fd, never an input."""
    import io
    import pikepdf
    keys = []
    for _ in range(2):
        pdf = pikepdf.new()
        pdf.add_blank_page()
        out = io.BytesIO()
        pdf.save(out, encryption=pikepdf.Encryption(owner="o", user="u", R=6))
        keys.append(out.getvalue())
    return keys


def open_fd_warm_up():
    """A warm-up that leaks a regular fd: the fork server must refuse to fork with it."""
    global _leaked
    _leaked = os.open("/etc/hostname", os.O_RDONLY)



def many_outputs(inputs, params):
    return [str(i).encode() for i in range(params["n"])]


def hog_then_segfault(inputs, params):
    """Fill memory up to the limit, then die of a signal without reporting (like C code
    that ignores a failed malloc): the peak RSS is the evidence of memory."""
    hog = []
    try:
        while True:
            chunk = bytearray(4 << 20)
            for i in range(0, len(chunk), 4096):
                chunk[i] = 1
            hog.append(chunk)
    except MemoryError:
        pass
    ctypes.string_at(0)


# --- the canary (tests/sandbox/test_canary.py) ---------------------------------------
CANARY_MARK = b"CANARY-OUTPUT-"
canary_seen = {}        # what the last canary run in this process saw


def probe_canary():
    """A canary job (Sandbox(canary=...)): dummy input, and params asking for canary_probe."""
    return [CANARY_MARK + b"input"], {"do": "canary_probe"}


def failing_canary():
    return [], {"do": "raises"}


def canary_probe(inputs, params):
    """Run as the canary: note where and how confined it ran, answer a marked output."""
    try:
        read_passwd(inputs, params)
        confined = "read /etc/passwd"
    except OSError as exc:
        confined = f"refused: {type(exc).__name__}"
    canary_seen.update(pid=os.getpid(), confined=confined, inputs=[bytes(v) for v in inputs])
    return [CANARY_MARK * 1000]


def canary_report(inputs, params):
    """Run as a job: what the canary saw in this same child."""
    seen = dict(canary_seen, same_process=canary_seen.get("pid") == os.getpid())
    seen.pop("pid", None)
    seen["inputs"] = [item.decode() for item in seen.get("inputs", [])]
    return [json.dumps(seen).encode()]


big_heap: list[bytearray] = []     # filled in the fork server by big_heap_warm_up


def big_heap_warm_up():
    """Fork-server warm-up: a heap the size of a PDF stack's (32 MB of small objects),
    which sandbox.hugepages then maps with huge pages."""
    big_heap.extend(bytearray([i % 251]) * 1000 for i in range(32_000))


def scribble_heap(inputs, params):
    """Overwrite every byte of the fork server's heap objects (this child's copies)."""
    for item in big_heap:
        item[:] = b"\xff" * len(item)
    return [b"scribbled"]


def check_heap(inputs, params):
    """Whether this child sees the fork server's heap exactly as the warm-up left it."""
    intact = len(big_heap) == 32_000 and all(
        item == bytearray([i % 251]) * 1000 for i, item in enumerate(big_heap))
    return [b"intact" if intact else b"changed"]


def input_files(inputs, params):
    """What sandbox.inputs gives this job for each input (and for views that are none)."""
    import errno

    from sandbox import inputs as job_inputs
    seen = []
    for view in inputs:
        fd = job_inputs.fileno(view)
        entry = {"fd": fd is not None,
                 "slice_fd": len(view) > 1 and job_inputs.fileno(view[1:]) is not None}
        if fd is not None:
            entry["reads_the_same"] = os.pread(fd, len(view) + 16, 0) == bytes(view)
            import fcntl
            entry["sealed"] = bool(fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE)
            try:
                os.pwrite(fd, b"x", 0)
                entry["write"] = "wrote"
            except OSError as exc:
                entry["write"] = errno.errorcode.get(exc.errno, str(exc.errno))
        seen.append(entry)
    return [json.dumps({"inputs": seen, "known": len(job_inputs._FILES),
                        "after_canary": bool(canary_seen),
                        "copy_fd": job_inputs.fileno(memoryview(bytes(inputs[0])))
                        if inputs else None}).encode()]


def fork_facts(inputs, params):
    """What a child forked without os.fork's hooks (sandbox.spawner) sees of Python's
    per-process state: its own random sequence, itself as the main thread, threads that
    start and join."""
    import random

    box = []
    worker = threading.Thread(target=lambda: box.append(threading.get_ident()))
    worker.start()
    worker.join(5)
    return [json.dumps({"random": random.random(), "pid": os.getpid(),
                        "main": threading.current_thread() is threading.main_thread(),
                        "ident": threading.get_ident() == threading.main_thread().ident,
                        "thread_ran": len(box) == 1 and box[0] != threading.get_ident(),
                        "threads_after": threading.active_count()}).encode()]
