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
#: "restarting": the fork server died or is restarting, so the job did not run to its
#: end; nobody can tell it was the job's fault: retry later.
STATUSES = ("ok", "error", "timeout", "cpu", "memory", "output_too_large",
            "violation", "crashed", "busy", "restarting")

#: A child that died without reporting ran out of memory only if its peak resident set
#: reached this fraction of its memory limit. Its RLIMIT_AS is the warm baseline's
#: address space plus memory_mb, and resident memory never exceeds the address space; a
#: job that hit the limit has touched nearly all of memory_mb (a failed allocation leaves
#: no pages behind, but the ones before it do) on top of a baseline resident set of tens
#: of MB, so its peak is at or above ~90% of memory_mb (measured: a warm test child idles
#: at 17 MB and peaks at memory_mb + 13 MB when it fills its limit, for 64, 256 and 512 MB;
#: a single malloc too big to fit fails with no pages touched, so it stays at 17 MB and
#: is "crashed" unless it reports MemoryError). Below that, nothing we can
#: measure says memory: a SIGKILL from outside, or the kernel's OOM killer acting on a
#: container-wide shortage, is "crashed". What the child printed is never evidence: its
#: stderr is the job's own, attacker-chosen text.
MEMORY_EVIDENCE_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class Stats:
    """Resource usage of the child that ran the job.

    timings: None unless the Sandbox was made with timings=True: then when each hop of
    the job happened, {stamp: time.monotonic() seconds} (sandbox.timings; the child's
    stamps are its own numbers, checked for range only: statistics, never evidence).
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    timings: dict[str, float] | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.timings is None:
            del d["timings"]
        return d


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
                  cpu_limit_s: float, max_rss_mb: float,
                  memory_limit_mb: float) -> tuple[str, str]:
    """(status, reason) for a child that died without reporting a result.

    The first cause wins: a deadline kill is "timeout" whatever the signal says. Only
    measurements taken from outside (wait status, CPU time, peak RSS) count.
    """
    if killed_for_deadline:
        return "timeout", "killed at its wall-clock deadline"
    near_memory_limit = max_rss_mb >= MEMORY_EVIDENCE_FRACTION * memory_limit_mb
    if os.WIFEXITED(wait_status):
        code = os.WEXITSTATUS(wait_status)
        if near_memory_limit:
            return "memory", f"exited with status {code} at its memory limit"
        return "crashed", f"exited with status {code} without a result"
    sig = os.WTERMSIG(wait_status)
    name = _signal_name(sig)
    if sig == signal.SIGSYS:
        return "violation", "made a system call its policy forbids (SIGSYS)"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= cpu_limit_s):
        return "cpu", "exceeded its CPU time limit"
    if sig == signal.SIGXFSZ:
        return "output_too_large", "wrote past its file size limit (SIGXFSZ)"
    if near_memory_limit:
        return "memory", f"died of {name} at its memory limit"
    return "crashed", f"killed by {name}"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
