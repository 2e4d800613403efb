"""The life of one child: confine, wait for one job, run it, report, exit.

Runs in a child freshly forked by the fork server. Everything here happens after the
fork and before exit; nothing returns to the caller (every path ends in os._exit).
The child is confined completely before it receives a single byte of its job.

Two sockets: `control`, to the fork server, says once that the child is confined and
ready; `chan`, the child's job line, goes straight to the caller (the fork server lends
the caller its other end), which sends the one job and reads the one report on it.

The canary (Sandbox(canary=...)): once confined, the child runs one job of built-in
dummy data through the very path a job takes (decode a header, map inputs, read params,
the entry, write outputs), so that the pages a job touches are already its own
(copy-on-write faults taken) when the real job comes. It runs confined, so it can leave
nothing behind that the policy would not allow the job itself; its outputs are zeroed and
its descriptors closed before the child reads its job. It runs once the child said it
is ready, when the caller sends {"type": "canary"} because no job waits for this child:
when the warm pool is drained (jobs back to back) the caller sends the job at once
instead, and the canary would only delay it (measured: a merge canary before "ready" cost
40% of the jobs/s back to back). A job sent while the canary runs waits, unread (its
descriptors still in the socket, not in this process), until the canary is done: never
seen by it.
"""
from __future__ import annotations

import faulthandler
import json
import mmap
import os
import re
import resource
import socket
import time
from typing import Callable, NoReturn

from sandbox import inputs, protocol, trailer
from sandbox.layers import confine
from sandbox.layers.base import ChildContext
from sandbox.layers.rlimits import current_vm_bytes, tighten_for_job
from sandbox.limits import Limits
from sandbox.policy import Policy

# Exit codes a child uses; anything else (or a signal) is classified from its wait status.
EXIT_REPORTED = 0          # a result message was sent before exiting
EXIT_SETUP_FAILED = 70     # confinement failed: the job was never received
EXIT_CHANNEL_LOST = 71     # the caller went away

_WRITE_WINDOW = 16 << 20   # bytes mapped at once when writing outputs (bounds RLIMIT_AS use)
_ERROR_TEXT_MAX = 300      # sandbox.reports.MAX_ERROR_CHARS: the caller refuses more
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s'\"/:]+)+/?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Exceptions whose message says the process ran out of memory though their class does not
# (pikepdf turns qpdf's std::bad_alloc into various errors).
_MEMORY_WORDS = ("bad_alloc", "Cannot allocate memory", "out of memory")


def main(control: socket.socket, chan: socket.socket, stderr_fd: int, output_fd: int,
         entry: Callable, policy: Policy, limits: Limits, available: dict[str, bool],
         library_fds: tuple[int, ...] = (), baseline_vm_bytes: int | None = None,
         canary_fds: tuple[int, ...] = ()) -> NoReturn:
    """Confine this process, announce readiness, run the canary unless a job already
    waits, run exactly one job, exit.

    control: the channel to the fork server (readiness); chan: the job line (module doc).
    output_fd: this child's own output memfd (made with it by the spawner).
    canary_fds: the canary's sealed input memfds then its params memfd, or ().
    """
    try:
        os.setpgid(0, 0)                      # its own process group, killed as one
        os.dup2(stderr_fd, 1)                 # prints go to the diagnostics pipe,
        os.dup2(stderr_fd, 2)                 # never into the job channel
        # library_fds: random-device fds a library cached in the fork server (see
        # forkserver.library_fds); closing them would leave the library reading from
        # whatever fd number comes next, e.g. a job input.
        keep = sorted({1, 2, control.fileno(), chan.fileno(), output_fd, *library_fds,
                       *canary_fds})
        _close_fds_except(keep)
        os.environ.clear()                    # the fork server's env is already empty
        faulthandler.enable(file=2, all_threads=False)  # a crash leaves a trace for classification
        # The fork server measures the baseline once: reading /proc costs each child ~2 ms.
        if baseline_vm_bytes is None:
            baseline_vm_bytes = current_vm_bytes()
        ctx = ChildContext(policy=policy, limits=limits, baseline_vm_bytes=baseline_vm_bytes,
                           keep_fds=tuple(keep), was_root=os.geteuid() == 0)
        confine(ctx, available)
        protocol.send(control, {"type": "ready", "layers": ctx.applied})
    except BaseException:
        os._exit(EXIT_SETUP_FAILED)
    try:
        job, fds = protocol.recv(chan)
        if job.get("type") == "canary" and canary_fds:          # no job waits: warm up
            _run_canary(entry, canary_fds, output_fd, limits, ctx.baseline_vm_bytes)
            job, fds = protocol.recv(chan)        # (the canary closed its own fds)
        else:
            protocol.close_all(canary_fds)        # open still: the job's fds differ
    except BaseException:
        os._exit(EXIT_CHANNEL_LOST)
    # Stamps only when the caller asked (sandbox.timings): diagnostics, never data.
    stamps = {"child_woke": time.monotonic()} if job.get("timings") is True else None
    # The job's inputs and outputs stay referenced until os._exit: freeing them before the
    # report (a 24 MB merge's buffers: 7.9 ms of munmap, measured) only delayed it, and
    # the memory is the process's until it is gone either way.
    held: list = []
    report = _run_job(entry, job, fds, output_fd, limits, ctx.baseline_vm_bytes, stamps, held)
    report["type"] = "report"
    report["usage"] = _usage()
    if stamps is not None:
        stamps["child_reported"] = time.monotonic()
        report["timings"] = stamps
    try:
        # No descriptor travels with it: the caller holds the output memfd already.
        protocol.send(chan, report)
    except BaseException:
        os._exit(EXIT_CHANNEL_LOST)
    os._exit(EXIT_REPORTED)


def _run_canary(entry: Callable, fds: tuple[int, ...], output_fd: int, limits: Limits,
                baseline_vm_bytes: int) -> None:
    """The canary job (module doc), through the job's own path; raises if it fails
    (the child then exits without announcing itself)."""
    header = protocol.decode(protocol.encode(
        {"type": "job", "inputs": len(fds) - 1, "limits": limits.to_dict(), "timings": True}))
    report = _run_job(entry, header, list(fds), output_fd, limits, baseline_vm_bytes,
                      {"child_woke": time.monotonic()})
    inputs.release()                          # the job's inputs are other files
    protocol.encode(dict(report, type="report", usage=_usage()))
    if report["status"] != "ok":
        raise RuntimeError(f"the canary job ended {report['status']}")
    _free_pages(output_fd, report["used"])


def _free_pages(fd: int, used: int) -> None:
    """Give the first `used` bytes' pages of the memfd back (MADV_REMOVE punches a
    hole): nothing of the canary stays, and the memfd the caller holds for this idle
    child holds no page at all (st_blocks 0), as before it was lent."""
    length = -(-used // mmap.PAGESIZE) * mmap.PAGESIZE
    if length:
        with mmap.mmap(fd, length) as window:
            window.madvise(mmap.MADV_REMOVE, 0, length)


def _usage() -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)   # all threads; the parent answers
    return {"cpu_s": usage.ru_utime + usage.ru_stime,   # before our exit
            "max_rss_mb": usage.ru_maxrss / 1024}


def _run_job(entry: Callable, job: dict, fds: list[int], output_fd: int, limits: Limits,
             baseline_vm_bytes: int, stamps: dict | None = None,
             held: list | None = None) -> dict:
    """Run the entry on the job's inputs and write its outputs; return the report.

    fds: the inputs, then the sealed params memfd (JSON, decoded only here): the params'
    closed here, the inputs' kept for the entry (sandbox.inputs) until the child exits.
    output_fd: the child's output memfd.
    stamps: None, or sandbox.timings' dict this adds the entry's and outputs' times to.
    held: None, or a list this appends the input views and the outputs to, so that they
    are not freed before the report (see main).
    """
    try:
        if len(fds) != job.get("inputs", -1) + 1:
            return {"status": "error", "error": "ProtocolError: wrong number of descriptors"}
        job_limits = limits.tightened(Limits.from_dict(job["limits"]))
        if job_limits != limits:              # else confinement set these limits already
            tighten_for_job(job_limits, baseline_vm_bytes)
        *input_fds, params_fd = fds
        views: list = []
        if held is not None:
            held.append(views)
        for fd in input_fds:
            views.append(inputs.map_input(fd))   # its fd stays open (sandbox.inputs)
        params = _read_params(params_fd)
        if stamps is not None:
            stamps["entry_started"] = time.monotonic()
        outputs = entry(views, params)
        if held is not None:
            held.append(outputs)
        if stamps is not None:
            stamps["entry_ended"] = time.monotonic()
        report = _write_outputs(outputs, output_fd, job_limits.output_mb << 20)
        if stamps is not None:
            stamps["outputs_written"] = time.monotonic()
        return report
    except MemoryError:
        return {"status": "memory"}
    except BaseException as exc:              # the job's fault, reported, never raised
        text = describe_exception(exc)
        if any(word in text for word in _MEMORY_WORDS):
            return {"status": "memory"}
        return {"status": "error", "error": text}


def _read_params(fd: int) -> dict:
    """The params memfd's JSON, read from offset 0 whatever the file's own offset (the
    canary's memfd is one open file shared by every child), then closed."""
    try:
        size = os.fstat(fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                raise ValueError("the params memfd shrank")
            chunks.append(chunk)
            offset += len(chunk)
    finally:
        os.close(fd)
    params = json.loads(b"".join(chunks))
    if not isinstance(params, dict):
        raise TypeError("params are not a JSON object")
    return params


def _write_outputs(outputs, output_fd: int, max_bytes: int) -> dict:
    """Copy outputs, then their length table (sandbox.trailer), into the pre-sized
    output memfd through bounded mmap windows; report only the bytes used.

    The child cannot write() a file (RLIMIT_FSIZE is 0) nor grow the memfd (sealed):
    the memfd's size, set by the spawner, is the hard output cap.
    """
    if outputs is None:
        outputs = []
    if not isinstance(outputs, (list, tuple)):
        return {"status": "error",
                "error": f"TypeError: entry returned {type(outputs).__name__}, not a list"}
    try:
        views = [memoryview(item).cast("B") for item in outputs]
    except TypeError:
        return {"status": "error", "error": "TypeError: entry returned a non-bytes output"}
    if len(views) > trailer.MAX_OUTPUTS:
        return {"status": "error",
                "error": f"ValueError: more than {trailer.MAX_OUTPUTS} outputs"}
    total = sum(v.nbytes for v in views)
    table = trailer.encode([v.nbytes for v in views])
    if total > max_bytes or total + len(table) > os.fstat(output_fd).st_size:
        return {"status": "output_too_large"}
    offset = 0
    for view in views + [memoryview(table)]:
        _write_at(output_fd, offset, view)
        offset += view.nbytes
    return {"status": "ok", "used": offset}


def _write_at(fd: int, offset: int, data: memoryview) -> None:
    done = 0
    while done < data.nbytes:
        start = offset + done
        base = start - start % mmap.ALLOCATIONGRANULARITY
        skip = start - base
        count = min(data.nbytes - done, _WRITE_WINDOW - skip)
        with mmap.mmap(fd, skip + count, offset=base) as window:
            window[skip:skip + count] = data[done:done + count]
        done += count


def describe_exception(exc: BaseException) -> str:
    """Exception class and message, truncated, with paths and control characters removed."""
    text = f"{type(exc).__name__}: {exc}"
    text = _PATH.sub("<path>", text)
    text = _CONTROL.sub(" ", text)
    return text[:_ERROR_TEXT_MAX]


def _close_fds_except(keep: list[int]) -> None:
    start = 0
    for fd in keep:
        if fd > start:
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 20)
