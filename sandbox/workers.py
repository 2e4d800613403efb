"""The caller's side of lent children: the pool of idle ones, and a report made a Result.

Runs in the caller's process, on its event loop (sandbox.runner). The fork server lends
each child, as soon as it is forked, as a Worker: the caller's end of the child's job
line and the child's output memfd. The caller sends the one job on the line and reads
the one report there: a child is hostile, so the report is size-capped (protocol) and
checked field by field (reports), and it may carry no descriptor at all. The output
memfd is the one the caller already holds, whose output table is read once, here
(trailer), before it is anything but bytes. A child never sends a descriptor because
every child is the same user, and Linux refuses a descriptor-carrying send while its
user has more in flight than the sender's RLIMIT_NOFILE (ETOOMANYREFS): a hostile child
queueing hundreds on its line would make an innocent neighbour's report fail. The
memfds held for idle workers are empty: no user's data is in one before its job.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import socket

from sandbox import protocol, reports, trailer
from sandbox.limits import Limits
from sandbox.memfd import MemFile
from sandbox.result import Outputs, Result, Stats


@dataclasses.dataclass(eq=False)
class Worker:
    """One lent child: named by the fork server's serial for it (never its pid)."""
    id: int
    line: socket.socket
    output: MemFile | None         # its output memfd, until an ok report hands it on

    def close(self) -> None:
        self.line.close()
        if self.output is not None:
            self.output.close()
            self.output = None


class Pool:
    """Idle workers, and the callers waiting for one (first come, first served)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: collections.deque[Worker] = collections.deque()
        self.wanting: collections.deque[asyncio.Future] = collections.deque()
        self.failed = False            # its fork server is gone: one pool per fork server

    def offer(self, worker: Worker) -> bool:
        """A worker just lent: to the first caller waiting (True), else idle (False)."""
        future = self._next_waiting()
        if future is None:
            self.idle.append(worker)
            return False
        future.set_result(worker)
        return True

    def _next_waiting(self) -> asyncio.Future | None:
        """The first caller still waiting (those cancelled or timed out are dropped)."""
        while self.wanting:
            future = self.wanting.popleft()
            if not future.done():
                return future
        return None

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
        future = self._next_waiting()
        if future is not None:
            future.set_result(result)

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
        while (future := self._next_waiting()) is not None:
            future.set_result(result)
            waiting += 1
        return waiting


def _no_worker(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(Result("busy", reason="no child was ready in time"))


def read_report(worker: Worker, timings: bool) -> tuple[reports.Report, MemFile | None]:
    """The child's one report on its line, checked, and for ok the worker's output
    memfd (then ours to close, no longer the worker's). BlockingIOError: none yet;
    EOFError: the child closed its line without one; ProtocolError: anything invalid,
    a descriptor with it included."""
    try:
        message, _ = protocol.recv(worker.line, max_fds=0,
                                   max_bytes=protocol.MAX_CHILD_MESSAGE_BYTES)
    except ConnectionError:
        raise EOFError("the child's line broke") from None
    report = reports.parse_report(message, worker.output.size, timings=timings)
    output = None
    if report.status == "ok":
        output, worker.output = worker.output, None
    return report, output


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
        if sum(length for _, length in spans) > limits.output_mb << 20:
            # The memfd has room for the largest table besides: only the table says
            # how much of it is outputs, and an honest child checks that itself.
            return Result("output_too_large", reason=too_large, stats=stats)
        return Result("ok", outputs=Outputs(output, spans), stats=stats)
    if report.status == "error":
        return Result("error", reason="the entry raised an exception", error=report.error,
                      stats=stats)
    if report.status == "memory":
        return Result("memory", reason="ran out of memory (MemoryError)", stats=stats)
    return Result("output_too_large", reason=too_large, stats=stats)
