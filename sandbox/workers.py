"""The caller's side of lent children: the pool of idle ones, and a report made a Result.

Runs in the caller's process, on its event loop (sandbox.runner). The fork server lends
each child, once confined and ready, as a Worker: the caller's end of the child's job
line, and the identity (device, inode, size) of the child's output memfd. The caller
sends the one job on the line and reads the one report there: a child is hostile, so the
report is size-capped (protocol), checked field by field (reports); an ok report must
carry that very memfd (any other file is refused), whose output table is read once,
here (trailer), before it is anything but bytes. Nothing of a child's is held here but
its line until it has a job: no memfd waits in the caller's process.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import socket
import stat

from sandbox import protocol, reports, trailer
from sandbox.limits import Limits
from sandbox.memfd import MemFile
from sandbox.result import Outputs, Result, Stats


@dataclasses.dataclass(eq=False)
class Worker:
    """One lent child: named by the fork server's serial for it (never its pid)."""
    id: int
    line: socket.socket
    output: tuple[int, int]        # (st_dev, st_ino) of its output memfd
    output_size: int

    def close(self) -> None:
        self.line.close()


class Pool:
    """Idle workers, and the callers waiting for one (first come, first served)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: collections.deque[Worker] = collections.deque()
        self.wanting: collections.deque[asyncio.Future] = collections.deque()
        self.failed = False            # its fork server is gone: one pool per fork server

    def offer(self, worker: Worker) -> bool:
        """A worker just lent: to the first caller waiting (True), else idle (False)."""
        while self.wanting:
            future = self.wanting.popleft()
            if not future.done():
                future.set_result(worker)
                return True
        self.idle.append(worker)
        return False

    async def take(self, timeout_s: float) -> Worker | Result:
        """An idle worker; else the Result every waiter gets if the pool is failed, or
        "busy" if none came in timeout_s (children cannot be made or handed over now)."""
        if self.idle:
            return self.idle.popleft()
        future = self.loop.create_future()
        self.wanting.append(future)
        timer = self.loop.call_later(timeout_s, _no_worker, future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and isinstance(future.result(), Worker):
                if self.failed:                           # its fork server died meanwhile
                    future.result().close()
                else:
                    self.idle.appendleft(future.result())  # handed over as we were cancelled
            raise
        finally:
            timer.cancel()

    def refuse_first(self, result: Result) -> None:
        """Answer the first caller waiting `result` (the worker meant for it is lost)."""
        while self.wanting:
            future = self.wanting.popleft()
            if not future.done():
                future.set_result(result)
                return

    def discard(self, worker_id: int) -> bool:
        """Forget an idle worker the fork server says is gone; True if it was idle."""
        for worker in self.idle:
            if worker.id == worker_id:
                self.idle.remove(worker)
                worker.close()
                return True
        return False

    def fail(self, result: Result) -> int:
        """Close every idle worker, answer every waiter `result`; return the waiters. A
        worker handed to a waiter that has not resumed yet is its to refuse (`failed`)."""
        self.failed = True
        while self.idle:
            self.idle.popleft().close()
        waiting = 0
        while self.wanting:
            future = self.wanting.popleft()
            if not future.done():
                future.set_result(result)
                waiting += 1
        return waiting


def _no_worker(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(Result("busy", reason="no child was ready in time"))


def read_report(worker: Worker, timings: bool) -> tuple[reports.Report, MemFile | None]:
    """The child's one report on its line, checked, and for ok its output memfd (ours to
    close). BlockingIOError: none yet; EOFError: the child closed its line without one;
    FdsDropped: the kernel dropped its descriptors (we are out of them, or it sent more
    than one: out_of_descriptors() tells); ProtocolError: anything else invalid."""
    try:
        message, fds = protocol.recv(worker.line, max_fds=1,
                                     max_bytes=protocol.MAX_CHILD_MESSAGE_BYTES)
    except ConnectionError:
        raise EOFError("the child's line broke") from None
    try:
        report = reports.parse_report(message, worker.output_size, timings=timings)
        if report.status != "ok" and fds:
            raise protocol.ProtocolError("a report that is not ok carried a descriptor")
        if report.status == "ok" and not fds:
            raise protocol.ProtocolError("an ok report without its output memfd")
        output = _its_output(worker, fds.pop()) if fds else None
    finally:
        protocol.close_all(fds)
    return report, output


def _its_output(worker: Worker, fd: int) -> MemFile:
    """fd as a MemFile if it is the worker's own output memfd, else ProtocolError (and
    fd closed): a child can only hand over files it holds, and this inode is that one."""
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != worker.output
                or info.st_size != worker.output_size):
            raise protocol.ProtocolError("the report carried another file")
    except BaseException:
        os.close(fd)
        raise
    return MemFile(fd=fd)


def out_of_descriptors(sock: socket.socket) -> bool:
    """Whether this process cannot open one more descriptor right now."""
    try:
        os.close(os.dup(sock.fileno()))
    except OSError as exc:
        return exc.errno in protocol.EXHAUSTED
    return False


def result_from_report(report: reports.Report, output: MemFile | None, limits: Limits,
                       wall_s: float, timings: dict | None = None) -> Result:
    """The Result of a job whose child reported `report` (with `output`, its memfd, for
    ok), which takes `output`: an ok Result's Outputs own it, else it is closed here.
    timings: the caller's stamps (sandbox.timings), the child's are added to them."""
    result = _result(report, output, limits, wall_s, timings)
    if output is not None and result.status != "ok":
        output.close()
    return result


def _result(report: reports.Report, output: MemFile | None, limits: Limits, wall_s: float,
            timings: dict | None) -> Result:
    if timings is not None and report.timings:
        timings.update(report.timings)
    stats = Stats(wall_s=round(wall_s, 6), cpu_s=report.cpu_s, max_rss_mb=report.max_rss_mb,
                  timings=timings)
    too_large = f"outputs exceed {limits.output_mb} MB"
    if report.status == "ok" and report.used > trailer.memfd_size(limits.output_mb):
        # The memfd is sized for the sandbox's cap; this job's own may be lower.
        return Result("output_too_large", reason=too_large, stats=stats)
    if report.status == "ok":
        try:
            spans = trailer.read_spans(output, report.used)
        except trailer.TrailerError:
            return Result("crashed", reason="sent an invalid output table", stats=stats)
        return Result("ok", outputs=Outputs(output, spans), stats=stats)
    if report.status == "error":
        return Result("error", reason="the entry raised an exception", error=report.error,
                      stats=stats)
    if report.status == "memory":
        return Result("memory", reason="ran out of memory (MemoryError)", stats=stats)
    return Result("output_too_large", reason=too_large, stats=stats)
