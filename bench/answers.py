"""Timing one operation's answer, in this process and through a sandbox (bench only):
the medians the per-operation benchmarks (ocr_bench, safe_bench) print side by side."""
from __future__ import annotations

import json
import statistics
import time
from typing import Callable

from notrace.jobs import interpret
from notrace.operations.spec import Operation
from sandbox import Result

__all__ = ["in_process", "through_sandbox"]


def in_process(data: bytes, job: dict, runs: int) -> tuple[float, dict]:
    """(median seconds, report) of child.run on `data` with `job`: the code a child runs,
    in this process."""
    from notrace.operations.child import run  # loads every library (and Tesseract)
    samples, report = [], {}
    for _ in range(runs):
        start = time.perf_counter()
        answer = run([memoryview(data)], job)
        samples.append(time.perf_counter() - start)
        manifest = json.loads(answer[0])
        assert "problem" not in manifest, manifest
        report = manifest["report"]
    return statistics.median(samples), report


def through_sandbox(run: Callable[[], Result], op: Operation, runs: int,
                    max_pages: int) -> tuple[float, dict, float]:
    """(median seconds, report, peak child RSS MB) of `run()`, one job's Result each
    time, up to its answer checked as the server checks it (jobs.interpret)."""
    samples, report, peak_rss = [], {}, 0.0
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        with interpret(op, result, max_pages=max_pages) as answer:
            samples.append(time.perf_counter() - start)
            report = answer.report
        peak_rss = max(peak_rss, result.stats.max_rss_mb)
    return statistics.median(samples), report, peak_rss
