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

Answers count too: a result streams out of its memfd for as long as the client takes to
read it (bounded by NOTRACE_ANSWER_TIMEOUT_S), so `hold_answer()` keeps its bytes and a
request slot reserved until it is sent. It is never refused (the job is done and was
legitimate: it must be answered), it may take the budget past its bound, and new
uploads then get 503 until the answers drain. Without it, clients that stop reading
their answers could pin workers + queue answers of NOTRACE_CHILD_OUTPUT_MB each.

Also here: `raise_nofile_limit()`, called once at server start.
"""
from __future__ import annotations

import resource

FD_RESERVE = 256   # descriptors never given to upload memfds (see the module docstring)

from notrace.problems import HttpProblem
from notrace.settings import Settings

__all__ = ["Admission", "Ticket", "raise_nofile_limit"]


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

    def hold_answer(self, size: int) -> Ticket:
        """A ticket for an answer of `size` bytes being sent: never refused (see the
        module docstring); release() it once the answer is sent or abandoned."""
        self.requests += 1
        ticket = Ticket(self)
        self.bytes += size
        ticket.reserved = size
        return ticket

    def _reserve(self, n: int) -> None:
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
