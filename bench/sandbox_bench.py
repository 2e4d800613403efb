"""Benchmark of sandbox/: what confinement costs per job, and where the time goes.

Prints, in one command:
1. latency and jobs/s of a trivial entry and a pikepdf merge of two 50-page PDFs, each
   (a) called in-process, (b) through Sandbox, (c) through a fresh `python` exec per job,
   with 1 and 2 concurrent callers, and one at a time with pauses;
2. the hop-by-hop breakdown of (b) from the jobs' own monotonic stamps
   (Sandbox(timings=True), sandbox.timings), one at a time and back to back;
3. the CPU each process spends per job (caller, fork server, spawner, children),
   which bounds jobs/s: every job consumes one warm child.
With --baseline DIR, tables 1 and 3 are measured for the checkout in DIR too (e.g. a
`git worktree` of an older commit), alternating with this one round by round.

    .venv/bin/python -m bench.sandbox_bench [--seconds 5] [--quick] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from bench.entries import make_pdf, merge, trivial
from sandbox import Limits, Sandbox

SPACING_S = 0.02
LIMITS = Limits(memory_mb=512, cpu_s=20, wall_s=30)

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


def summary(latencies: list[float], elapsed: float) -> dict:
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99),
            "min": min(latencies), "rate": len(latencies) / elapsed, "n": len(latencies)}


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
    return summary(latencies, time.monotonic() - begin)


def new_sandbox(name: str, **options) -> Sandbox:
    options.setdefault("canary", f"bench.entries:{name}_canary")
    accepted = inspect.signature(Sandbox).parameters     # a baseline may lack some options
    return Sandbox(f"bench.entries:{name}", limits=LIMITS, workers=2, queue=4,
                   warmup="bench.entries:warm_up",
                   **{key: value for key, value in options.items() if key in accepted})


def jobs() -> dict:
    pdf = make_pdf(50)
    return {"trivial": (trivial, []), "merge 2x50 pages": (merge, [pdf, pdf])}


async def latency_rows(seconds: float, fresh_exec: bool) -> list[dict]:
    """Table 1."""
    rows = []
    loop = asyncio.get_running_loop()
    for label, (function, inputs) in jobs().items():
        sb = new_sandbox(function.__name__)
        await sb.start()
        try:
            views = [memoryview(i) for i in inputs]
            payload = (len(inputs[0]).to_bytes(4, "little") + inputs[0] + inputs[1]
                       if inputs else b"\0\0\0\0")
            snippet = EXEC_SNIPPET.format(path=sys.path, name=function.__name__)

            async def in_process():
                function(views, {})

            async def sandboxed():
                result = await sb.run(inputs, {})
                assert result.ok, result
                result.close()

            async def exec_per_job():
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", snippet, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE)
                out, _ = await proc.communicate(payload)
                assert proc.returncode == 0 and out

            async def in_process_threaded():
                await loop.run_in_executor(None, function, views, {})

            variants = [("(a) in-process", in_process, in_process_threaded),
                        ("(b) Sandbox", sandboxed, sandboxed)]
            if fresh_exec:
                variants.append(("(c) fresh exec", exec_per_job, exec_per_job))
            for variant, one, two in variants:
                for callers, call in ((1, one), (2, two)):
                    stats = await measure(call, callers, seconds, max_jobs=20_000)
                    rows.append({"job": label, "variant": variant, "callers": str(callers),
                                 **stats})
                if variant.startswith(("(a)", "(b)")):
                    # One request at a time with pauses: the latency a lightly loaded
                    # server shows, with the warm children ready (jobs/s not meaningful).
                    stats = await measure(one, 1, seconds, max_jobs=20_000, gap_s=SPACING_S)
                    rows.append({"job": label, "variant": variant,
                                 "callers": f"1, {SPACING_S * 1000:.0f} ms apart", **stats})
        finally:
            await sb.close()
    return rows


async def hop_rows(jobs_each: int) -> list[dict]:
    """Table 2: median and minimum of each hop, from the stamps of `jobs_each` jobs."""
    from sandbox.timings import hops
    rows = []
    for label, (function, inputs) in jobs().items():
        sb = new_sandbox(function.__name__, timings=True)
        await sb.start()
        try:
            for mode, gap_s in (("1 at a time", SPACING_S), ("back to back", 0.0)):
                per_hop: dict[str, list[float]] = {}
                totals = []
                for _ in range(jobs_each):
                    if gap_s:
                        await asyncio.sleep(gap_s)
                    start = time.monotonic()
                    result = await sb.run(inputs, {})
                    end = time.monotonic()
                    assert result.ok, result
                    stamps = result.stats.timings
                    result.close()
                    for hop, ms in hops(stamps):
                        per_hop.setdefault(hop, []).append(ms)
                    # the awaiting coroutine resumed: stamped here, not by the sandbox
                    per_hop.setdefault("caller_returned", []).append(
                        (end - stamps["caller_done"]) * 1000)
                    totals.append((end - start) * 1000)
                rows.append({"job": label, "mode": mode, "total": totals,
                             "hops": per_hop})
        finally:
            await sb.close()
    return rows


def _cpu_ms(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU ms of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    return ((int(fields[11]) + int(fields[12])) * tick,
            (int(fields[13]) + int(fields[14])) * tick)


async def cpu_rows(jobs_each: int) -> list[dict]:
    """Table 3: CPU per job of each process, back to back (children: the spawner reaps
    them, so their CPU is the spawner's children's time)."""
    rows = []
    for label, (function, inputs) in jobs().items():
        sb = new_sandbox(function.__name__)
        await sb.start()
        try:
            for _ in range(10):
                (await sb.run(inputs, {})).close()
            fork_server = sb.fork_server_pid
            with open(f"/proc/{fork_server}/task/{fork_server}/children") as f:
                spawner = int(f.read().split()[0])
            await asyncio.sleep(0.3)
            pids = (os.getpid(), fork_server, spawner)
            before = [_cpu_ms(pid) for pid in pids]
            begin = time.monotonic()
            for _ in range(jobs_each):
                (await sb.run(inputs, {})).close()
            elapsed = time.monotonic() - begin
            await asyncio.sleep(0.3)                  # the last children exit and are reaped
            after = [_cpu_ms(pid) for pid in pids]
            own = [(a[0] - b[0]) / jobs_each for a, b in zip(after, before)]
            children = (after[2][1] - before[2][1]) / jobs_each
            rows.append({"job": label, "caller": own[0], "fork server": own[1],
                         "spawner": own[2], "children": children,
                         "rate": jobs_each / elapsed})
        finally:
            await sb.close()
    return rows


async def measure_all(args) -> dict:
    seconds = 1.0 if args.quick and args.seconds is None else (args.seconds or 5.0)
    jobs_each = 150 if args.quick else 500
    out = {"latency": await latency_rows(seconds, fresh_exec=not args.baseline_child),
           "cpu": await cpu_rows(jobs_each)}
    if "timings" in inspect.signature(Sandbox).parameters:     # not in older checkouts
        out["hops"] = await hop_rows(jobs_each)
    return out


def baseline(args, directory: str) -> dict:
    """Tables 1 and 3 measured by this script on the checkout in `directory`."""
    command = [sys.executable, os.path.abspath(__file__), "--baseline-child"]
    if args.quick:
        command.append("--quick")
    if args.seconds:
        command += ["--seconds", str(args.seconds)]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(directory))
    done = subprocess.run(command, env=env, cwd=directory, capture_output=True, check=True)
    return json.loads(done.stdout)


def median_rows(rounds: list[list[dict]], keys: list[str]) -> list[dict]:
    """Rows of several rounds merged: the median of each number, the min of `min`."""
    merged = []
    for rows in zip(*rounds):
        row = dict(rows[0])
        for key in keys:
            values = [r[key] for r in rows]
            row[key] = min(values) if key == "min" else statistics.median(values)
        merged.append(row)
    return merged


def print_latency(title: str, rows: list[dict], base: list[dict] | None) -> None:
    print(f"\n{title}")
    if base:
        print("| job | variant | callers | p50 ms | min ms | jobs/s | before: p50 ms | "
              "min ms | jobs/s |")
        print("|---|---|---|---|---|---|---|---|---|")
    else:
        print("| job | variant | callers | p50 ms | p99 ms | min ms | jobs/s |")
        print("|---|---|---|---|---|---|---|")
    old = {(r["job"], r["variant"], r["callers"]): r for r in base or []}
    for r in rows:
        rate = f"{r['rate']:.0f}" if "apart" not in r["callers"] else "-"
        line = f"| {r['job']} | {r['variant']} | {r['callers']} | {r['p50']:.2f} | "
        if base:
            b = old.get((r["job"], r["variant"], r["callers"]))
            if b:
                brate = f"{b['rate']:.0f}" if "apart" not in b["callers"] else "-"
                before = f"{b['p50']:.2f} | {b['min']:.2f} | {brate}"
            else:
                before = "- | - | -"
            print(line + f"{r['min']:.2f} | {rate} | {before} |")
        else:
            print(line + f"{r['p99']:.2f} | {r['min']:.2f} | {rate} |")


def print_targets(rows: list[dict]) -> None:
    by = {(r["job"], r["variant"], r["callers"]): r for r in rows}
    gap = f"1, {SPACING_S * 1000:.0f} ms apart"
    print("\nAgainst issue 12's targets (p50s of the table above):")
    print("| target | measured |")
    print("|---|---|")
    for callers in ("1", gap):
        added = by["trivial", "(b) Sandbox", callers]["p50"] - by["trivial", "(a) in-process",
                                                                   callers]["p50"]
        print(f"| trivial: Sandbox adds <= 1.0 ms (stretch 0.5) at p50, callers {callers} "
              f"| +{added:.2f} ms |")
    for callers in ("1", gap):
        ratio = (by["merge 2x50 pages", "(b) Sandbox", callers]["p50"]
                 / by["merge 2x50 pages", "(a) in-process", callers]["p50"])
        print(f"| merge 2x50: Sandbox <= 1.3x in-process, callers {callers} | {ratio:.2f}x |")
    for job in ("trivial", "merge 2x50 pages"):
        ratio = by[job, "(b) Sandbox", "2"]["rate"] / by[job, "(b) Sandbox", "1"]["rate"]
        print(f"| {job}: 2 callers >= 1.6x the jobs/s of 1 | {ratio:.2f}x |")


#: Every hop name any checkout stamps, in a job's order: before the fork server lent its
#: children (167425a and earlier) a job passed through it (the forkserver_* stamps).
KNOWN_HOPS = ("worker_found", "caller_sent", "forkserver_received", "forkserver_dispatched",
              "child_woke", "entry_started", "entry_ended", "outputs_written",
              "child_reported", "forkserver_got_report", "forkserver_answered",
              "caller_received", "caller_done", "caller_returned")


def print_hops(rows: list[dict], base: list[dict] | None) -> None:
    print("\nWhere a Sandbox job's time goes (ms; each hop ends at the named stamp, "
          "sandbox.timings; p50 / min):")
    if base:
        rows = [dict(r, mode=f"{r['mode']}, {code}") for pair in zip(rows, base)
                for r, code in zip(pair, ("now", "before"))]
    header = [f"{r['job']}, {r['mode']}" for r in rows]
    print("| hop | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(rows))
    names = {hop for r in rows for hop in r["hops"]}
    for hop in [h for h in KNOWN_HOPS if h in names] + sorted(names - set(KNOWN_HOPS)):
        cells = []
        for r in rows:
            values = r["hops"].get(hop)
            cells.append(f"{statistics.median(values):.3f} / {min(values):.3f}"
                         if values else "-")
        print(f"| {hop} | " + " | ".join(cells) + " |")
    print("| **whole job** | " + " | ".join(
        f"{statistics.median(r['total']):.3f} / {min(r['total']):.3f}" for r in rows) + " |")


def print_cpu(rows: list[dict], base: list[dict] | None) -> None:
    print("\nCPU per job, back to back (ms; children: fork to exit, confinement included):")
    print("| job | code | caller | fork server | spawner | children | total | jobs/s |")
    print("|---|---|---|---|---|---|---|---|")
    for code, table in (("now", rows), ("before", base or [])):
        for r in table:
            total = r["caller"] + r["fork server"] + r["spawner"] + r["children"]
            print(f"| {r['job']} | {code} | {r['caller']:.2f} | {r['fork server']:.2f} | "
                  f"{r['spawner']:.2f} | {r['children']:.2f} | {total:.2f} | "
                  f"{r['rate']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=None,
                        help="per latency measurement (default 5, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short runs, no rounds")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds alternating with the baseline (default 3, 1 quick)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also measure the checkout in DIR (e.g. a git worktree)")
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        print(json.dumps(asyncio.run(measure_all(args))))
        return
    rounds = args.rounds or (1 if args.quick or not args.baseline else 3)
    now, before = [], []
    for _ in range(rounds):
        now.append(asyncio.run(measure_all(args)))
        if args.baseline:
            before.append(baseline(args, args.baseline))
    keys = ["p50", "p99", "min", "rate"]
    latency = median_rows([r["latency"] for r in now], keys)
    base_latency = median_rows([r["latency"] for r in before], keys) if before else None
    cpu_keys = ["caller", "fork server", "spawner", "children", "rate"]
    cpu = median_rows([r["cpu"] for r in now], cpu_keys)
    base_cpu = median_rows([r["cpu"] for r in before], cpu_keys) if before else None
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} "
          f"at the end; {rounds} round(s)"
          + (f", baseline {args.baseline}" if args.baseline else ""))
    print_latency("Latency and throughput (p50 and jobs/s: medians over rounds; min: the "
                  "lowest):", latency, base_latency)
    print_targets(latency)
    base_hops = before[-1].get("hops") if before else None
    print_hops(now[-1]["hops"], base_hops)
    print_cpu(cpu, base_cpu)


if __name__ == "__main__":
    main()
