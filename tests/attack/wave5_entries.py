"""Entries for tests/attack/test_wave5_redteam.py: a hostile job that holds its inputs'
sealed memfds (sandbox.inputs keeps them open) and tries to change, move or find more
of them; a probe of which source pdf_source gives notrace's operations in a child; and
jobs that lean on what os.fork's Python hooks used to do (threads, logging, random,
tempfile names, signal state)."""
from __future__ import annotations

import concurrent.futures
import ctypes
import concurrent.futures.thread  # noqa: F401  (imported lazily by the pool)
import errno
import fcntl
import json
import logging
import mmap
import os
import random
import signal
import tempfile
import threading

import pikepdf

from notrace.operations._common import pdf_source, source_mode
from notrace.operations.child import run as notrace_entry

from sandbox import inputs as job_inputs
from sandbox.layers.rlimits import NOFILE
from tests.sandbox import entries as sandbox_entries

_F_SEAL_ALL = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def _attempt(action) -> str:
    """'done' when `action` succeeded, else the errno name it failed with."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    except (ValueError, TypeError) as exc:
        return type(exc).__name__
    return "done"


def _memfds() -> dict[int, dict]:
    """Every descriptor of this child that is a sealable file (a memfd), with its size,
    seals and access mode."""
    found = {}
    for fd in range(NOFILE):
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError:
            continue
        found[fd] = {"size": os.fstat(fd).st_size, "seals": seals,
                     "accmode": fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE}
    return found


def tamper(inputs, params):
    """Try the ways params["tries"] names to change every memfd this child holds (its
    inputs' kept fds, their mappings' dups, its output): write, grow, shrink, allocate,
    map writable, reseal, reopen read-write, chmod (the tries run now, in this
    iteration); then leave every one's file offset far from 0 (an open file description
    is shared by all its holders). Report what each attempt did."""
    kept = {job_inputs.fileno(view) for view in inputs} - {None}
    seen = {}
    for fd, facts in _memfds().items():
        size = facts["size"]
        tries = {
            "pwrite": lambda: _attempt(lambda: os.pwrite(fd, b"X", 0)),
            "write_end": lambda: _attempt(lambda: os.pwrite(fd, b"X", max(size - 1, 0))),
            "shrink": lambda: _attempt(lambda: os.ftruncate(fd, 0)),
            "grow": lambda: _attempt(lambda: os.ftruncate(fd, size + 4096)),
            "fallocate": lambda: _attempt(lambda: os.posix_fallocate(fd, 0, size + 4096)),
            "map_shared_write": lambda: _attempt(lambda: mmap.mmap(
                fd, size or 1, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)),
            "reopen_rw": lambda: _attempt(lambda: os.close(
                os.open(f"/proc/self/fd/{fd}", os.O_RDWR))),
            "fchmod": lambda: _attempt(lambda: os.fchmod(fd, 0o666)),
            "add_seal_seal": lambda: _attempt(lambda: fcntl.fcntl(
                fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL)),
        }
        tries = {name: tries[name]() for name in params["tries"]}
        _attempt(lambda: os.lseek(fd, (size or 1) * 7 + 12345, os.SEEK_SET))
        after = os.fstat(fd).st_size
        seen[str(fd)] = {**facts, "input": fd in kept, "tries": tries,
                         "size_after": after, "head": os.pread(fd, 16, 0).hex()}
    return [json.dumps({"memfds": seen, "inputs": len(inputs),
                        "kept": len(kept)}).encode()]


def memfd_census(inputs, params):
    """Which memfds this job can reach, with their first bytes: its inputs (through
    sandbox.inputs) and whatever else is open (a canary's, a library's)."""
    kept = {job_inputs.fileno(view) for view in inputs} - {None}
    census = []
    for fd, facts in _memfds().items():
        census.append({**facts, "fd": fd, "input": fd in kept,
                       "head": os.pread(fd, min(facts["size"], 64), 0).hex()})
    return [json.dumps({"census": census, "registered": len(job_inputs._FILES),
                        "open_fds": sum(1 for fd in range(NOFILE + 8) if _is_open(fd)),
                        "after_canary": len(_CANARIES)}).encode()]


def source_kinds(inputs, params):
    """What notrace's pdf_source gives pikepdf for each input in this child, and whether
    that source opens (the mapped path must be the one taken for object-dense inputs)."""
    kinds = []
    for view in inputs:
        source = pdf_source(view)
        mode = source_mode(source)
        with pikepdf.open(source, access_mode=mode) as pdf:
            pages = len(pdf.pages)
        kinds.append({"kind": type(source).__name__, "mode": str(mode), "pages": pages})
    return [json.dumps(kinds).encode()]


_CANARIES: list = []     # notrace_canary runs seen in this child (its canary, if it ran)


def notrace_run(inputs, params):
    """notrace's own entry, with the fds the child holds counted after it: 64 inputs on
    the mapped path must fit NOFILE."""
    outputs = notrace_entry(inputs, params["job"])
    if params.get("canary"):
        _CANARIES.append(1)
    open_fds = sum(1 for fd in range(NOFILE + 8) if _is_open(fd))
    return list(outputs) + [json.dumps({"open_fds": open_fds, "nofile": NOFILE}).encode()]


def copied_run(inputs, params):
    """notrace's entry as it ran before sandbox.inputs kept the fds: every input read
    through an io.BytesIO copy (nothing registered, so pdf_source finds no fd)."""
    job_inputs._FILES.clear()
    return notrace_entry(inputs, params["job"])


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def bare_fork_facts(inputs, params):
    """What a child forked without os.fork's hooks gets of Python's per-process state:
    a thread pool that runs, logging that does not deadlock, random and tempfile names of
    its own, the signal state a job may rely on (SIGTERM default, SIGINT's Python
    handler, nothing blocked)."""
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        squares = sorted(pool.map(lambda n: n * n, range(16)))
    logger = logging.getLogger("wave5.child")
    logger.addHandler(logging.NullHandler())
    done = threading.Event()

    def log_from_thread():
        for n in range(50):
            logger.warning("from a thread %d", n)
        done.set()
    worker = threading.Thread(target=log_from_thread)
    worker.start()
    for n in range(50):
        logger.warning("from the main thread %d", n)
    worker.join(5)
    return [json.dumps({
        "squares": squares == [n * n for n in range(16)],
        "logged": done.is_set() and not worker.is_alive(),
        "random": random.getrandbits(64),
        "temp_name": next(tempfile._get_candidate_names()),
        "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "sigint_python": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "threads_after": threading.active_count(),
    }).encode()]


def spin_in_threads(inputs, params):
    """Burn CPU in four threads at once until the CPU limit ends the child (SIGXCPU goes
    to the process, whichever thread runs)."""
    def burn():
        while True:
            sum(range(10_000))
    for _ in range(3):
        threading.Thread(target=burn, daemon=True).start()
    burn()


def segfault_in_thread(inputs, params):
    """A thread (not the main one) crashes the child."""
    def crash():
        ctypes.string_at(0)
    worker = threading.Thread(target=crash)
    worker.start()
    worker.join(5)
    return [b"survived"]


def dispatch(inputs, params):
    own = {"tamper": tamper, "memfd_census": memfd_census, "source_kinds": source_kinds,
           "notrace_run": notrace_run, "copied_run": copied_run, "bare_fork_facts": bare_fork_facts,
           "spin_in_threads": spin_in_threads, "segfault_in_thread": segfault_in_thread}
    handler = own.get(params["do"]) or getattr(sandbox_entries, params["do"])
    return handler(inputs, params)


def notrace_canary():
    """notrace's own canary job (notrace.canary), through notrace_run: the canary takes
    the mapped path like any job."""
    from notrace.canary import canary
    inputs, params = canary()
    return inputs, {"do": "notrace_run", "job": params, "canary": True}
