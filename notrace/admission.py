"""Admission control: how many uploads the server holds at once, and how many bytes.

Runs in the server loop (one thread: plain counters, no locks). Every operation request
takes a `Ticket` BEFORE a byte of its body is read, and gives it back when its Upload is
closed (the answer is decided and the memfds are gone), on every exit path:

- requests: at most `max_requests` hold a ticket at once. It is NOTRACE_WORKERS +
  NOTRACE_QUEUE, the most jobs the sandbox accepts at once: a request beyond that could
  only end as a 503 `busy` anyway, after having cost its whole upload.
- bytes: the uploads held together stay within `max_bytes` (NOTRACE_MAX_INFLIGHT_MB).
  A declared Content-Length is reserved whole, up front; a body of unknown length
  (chunked) reserves as its bytes arrive and is refused as soon as the budget runs out.
- files: every file of an upload is a memfd, so the files held together stay within
  `max_files`: the soft RLIMIT_NOFILE at start minus FD_RESERVE descriptors kept for
  everything else (sockets, the sandbox's channels and output memfds, logs). One is
  reserved before each memfd is made; EMFILE stays possible (another process may lower
  the limit) and uploads.py answers it 503 too.

Beyond either bound the answer is 503 `busy` with Retry-After. An upload's bytes stay
reserved while its job runs (the memfds live until the answer): this counts an input
mapped in a running child twice (budget and child memory), never zero times.

Answers count too: a result streams out of its memfd for as long as its client reads
it, so `hold_answer()` keeps its bytes and a request slot reserved until it is sent. It
is never refused (the job is done and was legitimate: it must be answered) and may take
the budget past its bound. A client that stops reading must not pin that memory nor
lock others out, so an answer is dropped (its connection aborted, its memfd freed)
when its client has read nothing for NOTRACE_ANSWER_STALL_S, and AT ONCE when a new
upload needs the room and the answer has been stalled for more than STALLED_AFTER_S
(a client that keeps up never has a write waiting that long; one slower than about
one 256 KiB chunk a second may lose its answer under memory pressure only).

Also here: `raise_nofile_limit()`, called once at server start.
"""
from __future__ import annotations

import resource
import time
from typing import Callable

FD_RESERVE = 256   # descriptors never given to upload memfds (see the module docstring)
STALLED_AFTER_S = 1.0   # an answer whose write waited longer may be dropped for room

from notrace.problems import HttpProblem
from notrace.settings import Settings

__all__ = ["Admission", "Ticket", "AnswerTicket", "raise_nofile_limit"]


def _busy(detail: str) -> HttpProblem:
    return HttpProblem("busy", detail)


class Ticket:
    """One request's share of the budget: bytes reserved so far; release() once done."""

    def __init__(self, admission: "Admission") -> None:
        self._admission = admission
        self.reserved = 0
        self.files = 0
        self._released = False

    def need(self, total: int) -> None:
        """Make sure `total` bytes of this upload are covered, reserving the missing part;
        raise the 503 problem when the budget cannot cover it."""
        missing = total - self.reserved
        if missing > 0:
            self._admission._reserve(missing)
            self.reserved = total

    def add_file(self) -> None:
        """Reserve a descriptor for one more file of this upload (before its memfd is
        made), or raise the 503 problem."""
        self._admission._reserve_file()
        self.files += 1

    def release(self) -> None:
        """Give the request slot, every reserved byte and file back (idempotent)."""
        if not self._released:
            self._released = True
            self._admission._give_back(self.reserved, self.files)
            self.reserved = self.files = 0

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class AnswerTicket(Ticket):
    """An answer's share: its bytes and slot, and how to drop it if its client stalls.

    The streaming code calls writing() before each write to the client and wrote()
    once it returned; `drop` aborts the connection (the streaming then ends by itself).
    """

    def __init__(self, admission: "Admission", size: int, drop: Callable[[], None]) -> None:
        super().__init__(admission)
        self.reserved = size
        self._drop = drop
        self.waiting_since: float | None = None    # a write to the client is pending

    def writing(self) -> None:
        self.waiting_since = time.monotonic()

    def wrote(self) -> None:
        self.waiting_since = None

    def stalled_for(self, now: float) -> float:
        return 0.0 if self.waiting_since is None else now - self.waiting_since

    def drop(self) -> None:
        """Give everything back now and abort the answer's connection."""
        self.release()
        self._drop()

    def release(self) -> None:
        self._admission._answers.discard(self)
        super().release()


class Admission:
    """The server's bounds on uploads in progress (one instance per application)."""

    def __init__(self, *, max_requests: int, max_bytes: int, max_files: int) -> None:
        if min(max_requests, max_bytes, max_files) < 1:
            raise ValueError("max_requests, max_bytes and max_files must be positive")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.requests = 0       # tickets held
        self.bytes = 0          # bytes reserved by them
        self.files = 0          # files (memfds) reserved by them
        self._answers: set[AnswerTicket] = set()   # answers being sent

    @classmethod
    def for_settings(cls, settings: Settings) -> "Admission":
        """The bounds for these settings and this process's descriptor limit (read once:
        call it after raise_nofile_limit)."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return cls(max_requests=settings.workers + settings.queue,
                   max_bytes=settings.max_inflight_mb << 20,
                   max_files=max(1, soft - FD_RESERVE))

    def admit(self, declared: int | None) -> Ticket:
        """A ticket for a new request whose body declares `declared` bytes (None: not
        known in advance), or the 503 problem. Nothing has been read yet."""
        if self.requests >= self.max_requests:
            self._drop_stalled(lambda: self.requests < self.max_requests)
        if self.requests >= self.max_requests:
            raise _busy("Too many uploads are in progress; retry after Retry-After seconds.")
        self.requests += 1
        ticket = Ticket(self)
        if declared:
            try:
                ticket.need(declared)
            except HttpProblem:
                ticket.release()
                raise
        return ticket

    def hold_answer(self, size: int, drop: Callable[[], None]) -> AnswerTicket:
        """A ticket for an answer of `size` bytes being sent: never refused (see the
        module docstring); release() it once the answer is sent or abandoned. `drop()`
        aborts its connection, should its client stall while others need the room."""
        self.requests += 1
        self.bytes += size
        ticket = AnswerTicket(self, size, drop)
        self._answers.add(ticket)
        return ticket

    def _drop_stalled(self, enough: Callable[[], bool]) -> None:
        """Drop answers stalled past STALLED_AFTER_S, longest stalled first, until
        `enough()` says there is room."""
        now = time.monotonic()
        stalled = sorted((t for t in self._answers if t.stalled_for(now) > STALLED_AFTER_S),
                         key=lambda t: t.stalled_for(now), reverse=True)
        for ticket in stalled:
            if enough():
                return
            ticket.drop()

    def _reserve(self, n: int) -> None:
        if self.bytes + n > self.max_bytes:
            self._drop_stalled(lambda: self.bytes + n <= self.max_bytes)
        if self.bytes + n > self.max_bytes:
            raise _busy("The uploads in progress use the server's upload memory; "
                        "retry after Retry-After seconds.")
        self.bytes += n

    def _reserve_file(self) -> None:
        if self.files >= self.max_files:
            raise _busy("The uploads in progress hold as many files as the server can "
                        "open; retry after Retry-After seconds.")
        self.files += 1

    def _give_back(self, n: int, files: int) -> None:
        self.bytes -= n
        self.files -= files
        self.requests -= 1


def raise_nofile_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (server start, before
    the sandbox starts: its processes inherit it). Returns the (soft, hard) in force.

    Every upload holds one memfd per file (up to 64), so the usual soft limit of 1024
    is reached by a few dozen uploads; the hard limit is what the operator allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)
