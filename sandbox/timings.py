"""Timings: when each hop of one job happened, for benchmarks and diagnostics only.

Opt-in (Sandbox(timings=True)); off, no stamp is taken or sent. Every stamp is
time.monotonic() (CLOCK_MONOTONIC, one clock for every process on the host: the
children's namespaces include no time namespace), in seconds. The caller and the child
each stamp their own hops (a job never passes through the fork server); the result's
Stats.timings holds them all, and hops() turns them into the breakdown
bench/sandbox_bench.py prints.

A child's stamps are numbers it chose: parse_child (run by the caller) accepts only
the known names with finite values in range, else the report is invalid and that job
"crashed". They are never used for any decision (deadlines, limits, statuses): only
copied into the Result, where they are statistics like cpu_s.
"""
from __future__ import annotations

import math

from sandbox.protocol import ProtocolError

#: Stamped by the child: its job received, entry called, entry returned, outputs
#: written into the output memfd, report about to be sent.
CHILD = ("child_woke", "entry_started", "entry_ended", "outputs_written", "child_reported")
#: Every stamp, in the order a job passes them.
ORDER = ("caller_started", "worker_found", "caller_sent",   # Sandbox.run: memfds made, an
         *CHILD,                                             # idle child taken, job sent
         "caller_received", "caller_done")                   # report read, Result made
_MAX = 1e12


def parse_child(value) -> dict[str, float]:
    """A child's stamps, checked: a dict of CHILD names to finite numbers in [0, 1e12).
    Anything else is a ProtocolError (the child's job ends "crashed")."""
    if type(value) is not dict or not set(value) <= set(CHILD):
        raise ProtocolError("invalid timings")
    for stamp in value.values():
        if type(stamp) not in (int, float) or not 0 <= stamp < _MAX or math.isnan(stamp):
            raise ProtocolError("invalid timing")
    return {name: float(stamp) for name, stamp in value.items()}


def hops(timings: dict[str, float]) -> list[tuple[str, float]]:
    """(hop name, milliseconds) between consecutive stamps present, in ORDER; a hop is
    named by the stamp that ends it."""
    present = [name for name in ORDER if name in timings]
    return [(later, (timings[later] - timings[earlier]) * 1000)
            for earlier, later in zip(present, present[1:])]
