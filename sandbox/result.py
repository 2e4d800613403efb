"""Result: how one job ended, and its Outputs. One function turns a child's end into a Result.

Runs in the fork server (classify) and in the server (Result and Outputs objects).
"""
from __future__ import annotations

import dataclasses
import os
import signal
from typing import Iterable, Iterator

from sandbox.memfd import MemFile

#: The contract's closed set of final statuses.
STATUSES = ("ok", "error", "timeout", "cpu", "memory", "output_too_large",
            "violation", "crashed", "busy")

# Words a dying process leaves on stderr when it ran out of memory: CPython's fatal
# "Cannot allocate memory"/MemoryError, libstdc++'s std::bad_alloc, glibc's malloc aborts.
_MEMORY_MARKERS = (b"MemoryError", b"bad_alloc", b"Cannot allocate memory",
                   b"out of memory", b"malloc(): ", b"mmap failed")


@dataclasses.dataclass(frozen=True)
class Stats:
    """Resource usage of the child that ran the job."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Outputs:
    """The outputs of one job: spans of one memfd, read only when asked. Server side.

    `outputs[i]` reads output i as bytes; `span(i)` is its (offset, length) within
    `fileno()`, for streaming it with os.pread/sendfile without reading it whole. Compares
    equal to a list of the same bytes. Owns its memfd: close() (idempotent) or garbage
    collection releases it. An empty Outputs() has no memfd (fileno() raises ValueError).
    """

    __slots__ = ("_mem", "_spans")

    def __init__(self, memfile: MemFile | None = None,
                 spans: Iterable[tuple[int, int]] = ()) -> None:
        self._spans = tuple((int(offset), int(length)) for offset, length in spans)
        if self._spans and memfile is None:
            raise ValueError("Outputs with spans need their memfd")
        size = memfile.size if memfile is not None else 0
        for offset, length in self._spans:
            if offset < 0 or length < 0 or offset + length > size:
                raise ValueError("an output span lies outside its memfd")
        self._mem = memfile

    @classmethod
    def from_bytes(cls, items: Iterable[bytes | bytearray | memoryview]) -> "Outputs":
        """Outputs holding copies of `items` in a fresh memfd (for callers and tests)."""
        mem, spans = MemFile("sandbox-output"), []
        try:
            for item in items:
                start = mem.size
                mem.write(item)
                spans.append((start, mem.size - start))
        except BaseException:
            mem.close()
            raise
        return cls(mem, spans)

    def __len__(self) -> int:
        return len(self._spans)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        offset, length = self._spans[index]
        if length == 0:
            return b""
        return self._mem.read(offset, length)

    def __iter__(self) -> Iterator[bytes]:
        for index in range(len(self)):
            yield self[index]

    def __eq__(self, other) -> bool:
        if isinstance(other, (Outputs, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of output `index` within fileno()."""
        return self._spans[index]

    def fileno(self) -> int:
        if self._mem is None:
            raise ValueError("these Outputs have no memfd")
        return self._mem.fileno()

    @property
    def closed(self) -> bool:
        return self._mem is None or self._mem.closed

    def close(self) -> None:
        if self._mem is not None:
            self._mem.close()

    def __repr__(self) -> str:
        return f"Outputs(lengths={[length for _, length in self._spans]})"


@dataclasses.dataclass(frozen=True)
class Result:
    """The final status of one job, why, what it produced and what it cost.

    status: one of STATUSES; the first cause wins.
    reason: short human text explaining the status (never user data).
    error: for "error", the exception class and message, truncated, paths removed.
    outputs: an Outputs (empty unless ok); a list of bytes given here becomes one.
    exit_code / signal: how the child process ended (None when it did not run).
    close() releases the outputs' memfd (idempotent; garbage collection does it too).
    """

    status: str
    reason: str = ""
    outputs: Outputs = dataclasses.field(default_factory=Outputs)
    error: str | None = None
    stats: Stats = Stats()
    exit_code: int | None = None
    signal: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown Result.status {self.status!r}")
        if not isinstance(self.outputs, Outputs):
            object.__setattr__(self, "outputs", Outputs.from_bytes(self.outputs))

    def close(self) -> None:
        self.outputs.close()

    def __enter__(self) -> "Result":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def classify_exit(wait_status: int, *, killed_for_deadline: bool, cpu_s: float,
                  cpu_limit_s: float, stderr_tail: bytes) -> tuple[str, str]:
    """(status, reason) for a child that died without reporting a result.

    The first cause wins: a deadline kill is "timeout" whatever the signal says.
    """
    if killed_for_deadline:
        return "timeout", "killed at its wall-clock deadline"
    if os.WIFEXITED(wait_status):
        code = os.WEXITSTATUS(wait_status)
        if _mentions_memory(stderr_tail):
            return "memory", f"exited with status {code} out of memory"
        return "crashed", f"exited with status {code} without a result"
    sig = os.WTERMSIG(wait_status)
    name = _signal_name(sig)
    if sig == signal.SIGSYS:
        return "violation", "made a system call its policy forbids (SIGSYS)"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= cpu_limit_s):
        return "cpu", "exceeded its CPU time limit"
    if sig == signal.SIGXFSZ:
        return "output_too_large", "wrote past its file size limit (SIGXFSZ)"
    if sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) and _mentions_memory(stderr_tail):
        return "memory", f"died of {name} after running out of memory"
    if sig == signal.SIGKILL:
        # Not our deadline kill, not the CPU hard limit: the one other sender of SIGKILL
        # to a confined child is the kernel's OOM killer (a cgroup memory limit).
        return "memory", "killed by SIGKILL below its CPU limit (the kernel's OOM killer)"
    return "crashed", f"killed by {name}"


def _mentions_memory(stderr_tail: bytes) -> bool:
    return any(marker in stderr_tail for marker in _MEMORY_MARKERS)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
