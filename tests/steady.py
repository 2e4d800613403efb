"""Counts of what processes hold (descriptors, children, memfds), taken only when they mean
something. A count read at an arbitrary moment may catch the fork server mid-step: a
child reaped by the spawner whose four descriptors the fork server has not closed yet, or
a warm child forked but not yet adopted. A 'before' read in such a gap makes the leak
checks fail on a slow machine (CI's 18 -> 14), so 'before' is the value once it holds
still, and 'after' is waited for (bounded) to come back to it.

Both poll from the calling thread with time.sleep: a test whose Sandbox lives on an event
loop runs them in a thread (asyncio.to_thread) so that the loop goes on serving it."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def steady(sample: Callable[[], T], *, samples: int = 5, interval_s: float = 0.1,
           timeout_s: float = 15.0) -> T:
    """sample()'s value once it is the same `samples` times in a row, interval_s apart."""
    deadline = time.monotonic() + timeout_s
    seen: list[T] = []
    while True:
        seen.append(sample())
        last = seen[-samples:]
        if len(last) == samples and all(value == last[0] for value in last):
            return last[0]
        assert time.monotonic() < deadline, f"the counts never held still: {seen[-20:]}"
        time.sleep(interval_s)


def back_to(sample: Callable[[], tuple[int, ...]], before: tuple[int, ...], *,
            timeout_s: float = 15.0, interval_s: float = 0.05) -> tuple[int, ...]:
    """Wait until every count of sample() is at most its value in `before` (what was
    released is released by then; a real leak never comes back and fails here)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = sample()
        if all(n <= b for n, b in zip(now, before, strict=True)):
            return now
        assert time.monotonic() < deadline, f"leaked: before {before}, now {now}"
        time.sleep(interval_s)


def reached(sample: Callable[[], T], wanted: T, *, timeout_s: float = 15.0,
            interval_s: float = 0.05) -> T:
    """sample()'s value as soon as it is `wanted`, else its last value at the deadline
    (the caller asserts on it, saying what it expected)."""
    deadline = time.monotonic() + timeout_s
    while (value := sample()) != wanted and time.monotonic() < deadline:
        time.sleep(interval_s)
    return value
