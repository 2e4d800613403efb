"""Benchmark of sandbox/: what confinement costs per job.

Prints one table: a trivial entry and a pikepdf merge of two 50-page PDFs, each
(a) called in-process, (b) through Sandbox, (c) through a fresh `python` exec per job,
with 1 and 2 concurrent callers: p50/p99 latency and jobs/s.

    .venv/bin/python -m bench.sandbox_bench [--seconds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time

from bench.entries import make_pdf, merge, trivial
from sandbox import Limits, Sandbox

SPACING_S = 0.02

EXEC_SNIPPET = (
    "import sys, pikepdf\n"
    "sys.path[:0] = {path!r}\n"
    "from bench.entries import {name} as job\n"
    "data = sys.stdin.buffer.read()\n"
    "n = int.from_bytes(data[:4], 'little')\n"
    "inputs = [memoryview(data[4:4 + n]), memoryview(data[4 + n:])] if n else []\n"
    "sys.stdout.buffer.write(b''.join(job(inputs, {{}})))\n")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(call, callers: int, seconds: float, max_jobs: int, gap_s: float = 0.0) -> dict:
    """Run `call` from `callers` concurrent loops for `seconds` (each loop pausing gap_s
    between calls); latency in ms, jobs/s."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < stop_at and len(latencies) < max_jobs:
            if gap_s:
                await asyncio.sleep(gap_s)
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1000)

    begin = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.monotonic() - begin
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99),
            "rate": len(latencies) / elapsed, "n": len(latencies)}


async def main_async(seconds: float) -> list[tuple]:
    pdf = make_pdf(50)
    jobs = {"trivial": (trivial, []), "merge 2x50 pages": (merge, [pdf, pdf])}
    rows = []
    sandboxes = {}
    for name in ("trivial", "merge"):
        sb = Sandbox(f"bench.entries:{name}", limits=Limits(memory_mb=512, cpu_s=20, wall_s=30),
                     workers=2, queue=4, warmup="bench.entries:warm_up")
        await sb.start()
        sandboxes[name] = sb
    loop = asyncio.get_running_loop()
    try:
        for label, (function, inputs) in jobs.items():
            sb = sandboxes[function.__name__]
            views = [memoryview(i) for i in inputs]
            payload = (len(inputs[0]).to_bytes(4, "little") + inputs[0] + inputs[1]
                       if inputs else b"\0\0\0\0")
            snippet = EXEC_SNIPPET.format(path=sys.path, name=function.__name__)

            async def in_process():
                function(views, {})

            async def sandboxed():
                result = await sb.run(inputs, {})
                assert result.ok, result

            async def fresh_exec():
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", snippet, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE)
                out, _ = await proc.communicate(payload)
                assert proc.returncode == 0 and out

            async def in_process_threaded():
                await loop.run_in_executor(None, function, views, {})

            variants = [("(a) in-process", in_process, in_process_threaded),
                        ("(b) Sandbox", sandboxed, sandboxed),
                        ("(c) fresh exec", fresh_exec, fresh_exec)]
            for variant, one, two in variants:
                for callers, call in ((1, one), (2, two)):
                    stats = await measure(call, callers, seconds, max_jobs=20_000)
                    rows.append((label, variant, callers, stats))
                if variant.startswith(("(a)", "(b)")):
                    # One request at a time with pauses: the latency a lightly loaded
                    # server shows, with the warm children ready (jobs/s not meaningful).
                    stats = await measure(one, 1, seconds, max_jobs=20_000, gap_s=SPACING_S)
                    rows.append((label, variant, f"1, {SPACING_S * 1000:.0f} ms apart", stats))
    finally:
        for sb in sandboxes.values():
            await sb.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args.seconds))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}")
    print("| job | variant | callers | p50 ms | p99 ms | jobs/s |")
    print("|---|---|---|---|---|---|")
    for label, variant, callers, s in rows:
        rate = f"{s['rate']:.0f}" if isinstance(callers, int) else "-"
        print(f"| {label} | {variant} | {callers} | {s['p50']:.2f} | {s['p99']:.2f} | {rate} |")


if __name__ == "__main__":
    main()
