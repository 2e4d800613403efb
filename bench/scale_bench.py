"""Scale curves: how merge, split, info, compress, text and render grow with the page
count (10, 100, 1,000 and 10,000 pages), in time and in the child's peak memory,
sandboxed against in-process; the service's throughput with 1, 2, 4 and 8 concurrent
HTTP clients; the memory of one warm child. Writes the tables (bench/results/scale.md)
and three PNG charts (bench/results/scale_time.png, scale_memory.png,
scale_throughput.png): one command regenerates everything. Needs matplotlib (the
`bench` extra: `.venv/bin/pip install -e '.[bench]'`).

Documents: bench.text_bench.book_pdf(n), n dense pages of text (about 730 bytes a page,
compressed). merge joins two documents of n/2 pages (the answer has n pages); split cuts
into 10 parts (every n/10 pages); render draws every page at 36 dpi (the lowest
resolution: the per-page cost, not the pixels); text uses PDFium. The jobs get
max_pages 30,000 and a pixel-page limit of 20,000 (the defaults, 2,000 and 500, refuse
10,000 pages); the server of the throughput part gets NOTRACE_MAX_PAGES=30000.

In-process calls notrace.operations.child.run (the child's own code, the answer and its
reopening check included) in this process; sandboxed runs the same entry through
`Sandbox` (2 workers, one job at a time, warmed like the server's). Peak memory is the
child's max RSS (Result.stats.max_rss_mb); "above idle" subtracts that of a job on a
1-page document (the warm child's own). Medians of --runs runs (1 run at 10,000 pages,
and for text and render from 1,000).

    .venv/bin/python -m bench.scale_bench [--quick] [--runs 3] [--sizes 10,100,1000,10000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import pikepdf
import psutil

from bench.text_bench import book_pdf
from notrace import jobs, settings as settings_module
from notrace.operations.registry import OPERATIONS
from sandbox import Limits, Sandbox

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"
RESULTS = Path(__file__).resolve().parent / "results"
OPS = ("merge", "split", "info", "compress", "text", "render")
LIMITS = Limits(memory_mb=4096, cpu_s=900, wall_s=900.0, output_mb=2048)
SETTINGS = settings_module.load({"NOTRACE_MAX_PAGES": "30000",
                                 "NOTRACE_MAX_PIXEL_PAGES": "20000"})
CLIENTS = (1, 2, 4, 8)


def raw_params(operation: str, pages: int) -> dict:
    return {"split": {"every": str(max(1, pages // 10))},
            "render": {"dpi": "36"}}.get(operation, {})


def job(operation: str, pages: int) -> dict:
    op = OPERATIONS[operation]
    return jobs.job_params(op, op.validate(raw_params(operation, pages)), SETTINGS)


def inputs_for(operation: str, docs: dict, pages: int) -> list[bytes]:
    if operation == "merge":
        half = docs[("half", pages)]
        return [half, half]
    return [docs[("whole", pages)]]


def make_documents(sizes: list[int]) -> dict:
    docs = {}
    for n in sorted({*sizes, 1}):
        docs[("whole", n)] = book_pdf(n)
        docs[("half", n)] = book_pdf(max(1, n // 2))
    return docs


def _check(answer: bytes, operation: str) -> None:
    if answer[:1] == b"{" and b'"problem"' in answer[:200]:
        raise RuntimeError(f"{operation}: {answer[:300]!r}")


def runs_for(operation: str, pages: int, runs: int) -> int:
    """One run where one takes seconds: 10,000 pages, and text or render from 1,000 (1 and
    3-8 ms a page); the full run stays near 10 minutes."""
    return 1 if pages >= 10000 or (pages >= 1000 and operation in ("text", "render")) else runs


def in_process(operation: str, data: list[bytes], params: dict, runs: int) -> float:
    from notrace.operations.child import run  # noqa: PLC0415  (loads every library)
    views = [memoryview(d) for d in data]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = run(views, params)
        samples.append(time.perf_counter() - start)
        _check(bytes(answer[0]), operation)
        del answer
    return statistics.median(samples) * 1000


async def sandboxed(sb: Sandbox, operation: str, data: list[bytes], params: dict,
                    runs: int) -> tuple[float, float]:
    samples, rss = [], []
    for _ in range(runs):
        start = time.perf_counter()
        result = await sb.run(data, params)
        samples.append(time.perf_counter() - start)
        try:
            if result.status != "ok":
                raise RuntimeError(f"{operation}: {result.status} {result.reason}")
            _check(bytes(result.outputs[0]), operation)
            rss.append(result.stats.max_rss_mb)
        finally:
            result.close()
    return statistics.median(samples) * 1000, statistics.median(rss)


def warm_children() -> list[dict]:
    """RSS, USS and PSS (MB) of every process under this one, named by its place: the
    fork server (our child), the spawner (its child with children), the warm children
    (the rest, waiting for a job). USS is what a process alone holds; PSS shares the
    copy-on-write pages among their users."""
    me = psutil.Process()
    rows = []
    for proc in me.children(recursive=True):
        try:
            mem = proc.memory_full_info()
            parent = proc.ppid()
            name = ("fork server" if parent == me.pid else
                    "spawner" if proc.children() else "warm child")
            rows.append({"pid": proc.pid, "rss": mem.rss / 2**20, "uss": mem.uss / 2**20,
                         "pss": mem.pss / 2**20, "name": name})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return rows


async def curves(sizes: list[int], runs: int, docs: dict) -> tuple[list[dict], list[dict]]:
    rows = []
    async with Sandbox(ENTRY, limits=LIMITS, workers=2, queue=4, warmup=WARMUP) as sb:
        idle_params = job("info", 1)
        await sandboxed(sb, "info", [docs[("whole", 1)]], idle_params, 2)   # warm the pool
        _t, idle_rss = await sandboxed(sb, "info", [docs[("whole", 1)]], idle_params, 3)
        await asyncio.sleep(1.0)  # the pool refilled, nothing running
        children = warm_children()
        for operation in OPS:
            for pages in sizes:
                n = runs_for(operation, pages, runs)
                data, params = inputs_for(operation, docs, pages), job(operation, pages)
                inproc = in_process(operation, data, params, n)
                wall, rss = await sandboxed(sb, operation, data, params, n)
                rows.append({"operation": operation, "pages": pages,
                             "input_mb": sum(map(len, data)) / 2**20, "in_process_ms": inproc,
                             "sandboxed_ms": wall, "rss_mb": rss, "above_idle_mb": rss - idle_rss,
                             "runs": n})
                print(f"  {operation} {pages}: in-process {inproc:.0f} ms, sandboxed "
                      f"{wall:.0f} ms, child {rss:.0f} MB", flush=True)
    return rows, children, idle_rss


def throughput(seconds: float) -> list[dict]:
    """Requests/s and p50 with 1, 2, 4, 8 clients: merge 2x50 pages and info on 1,000
    pages, against a real `notrace serve` (its defaults, max_pages raised)."""
    from bench.http_bench import measure  # noqa: PLC0415
    from tests.service.server import Server  # noqa: PLC0415
    workloads = {"merge 2x50 pages": ("merge", [book_pdf(50)] * 2),
                 "info 1,000 pages": ("info", [book_pdf(1000)])}
    server = Server({"NOTRACE_LOG_LEVEL": "info", "NOTRACE_MAX_PAGES": "30000"}).start()
    rows = []
    try:
        for label, (operation, files) in workloads.items():
            url = f"http://127.0.0.1:{server.port}/api/v1/{operation}"
            asyncio.run(measure(url, files, 1, 0.5))  # warm
            for clients in CLIENTS:
                m = asyncio.run(measure(url, files, clients, seconds))
                rows.append({"workload": label, "clients": clients, "rate": m["rate"],
                             "p50": m["p50"]})
                print(f"  {label}, {clients} clients: {m['rate']:.1f} req/s", flush=True)
    finally:
        server.stop()
    return rows


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GB, Linux "
            f"{platform.release()}, Python {platform.python_version()}, pikepdf "
            f"{pikepdf.__version__} (qpdf {pikepdf.__libqpdf_version__})")


def growth(rows: list[dict], operation: str, key: str) -> str:
    """Cost per page at the largest size over cost per page at the one before: 1.0 is
    linear."""
    mine = [r for r in rows if r["operation"] == operation]
    if len(mine) < 2:
        return "-"
    a, b = mine[-2], mine[-1]
    return f"{(b[key] / b['pages']) / (a[key] / a['pages']):.2f}"


def tables(rows, children, idle_rss, rates, header: str) -> str:
    out = [header, "", "| operation | pages | input MB | in-process ms | sandboxed ms | "
           "sandboxed / in-process | ms per 1,000 pages (sandboxed) | child peak MB | "
           "above idle MB | MB per input MB | runs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['operation']} | {r['pages']} | {r['input_mb']:.2f} | "
                   f"{r['in_process_ms']:.0f} | {r['sandboxed_ms']:.0f} | "
                   f"{r['sandboxed_ms'] / r['in_process_ms']:.2f}x | "
                   f"{r['sandboxed_ms'] / r['pages'] * 1000:.0f} | {r['rss_mb']:.0f} | "
                   f"{r['above_idle_mb']:.0f} | "
                   f"{r['above_idle_mb'] / max(r['input_mb'], 1e-9):.1f} | {r['runs']} |")
    out += ["", "Growth from the second largest size to the largest, per page (1.00 is "
            "linear): time sandboxed, and memory above idle.", "",
            "| operation | time | memory |", "|---|---|---|"]
    for operation in OPS:
        out.append(f"| {operation} | {growth(rows, operation, 'sandboxed_ms')} | "
                   f"{growth(rows, operation, 'above_idle_mb')} |")
    out += ["", f"Warm processes under the bench (fork server, spawner, idle children); a job "
            f"on a 1-page document peaks at {idle_rss:.0f} MB RSS in its child:", "",
            "| process | RSS MB | USS MB | PSS MB |", "|---|---|---|---|"]
    for c in children:
        out.append(f"| {c['name']} | {c['rss']:.0f} | {c['uss']:.1f} | {c['pss']:.1f} |")
    if rates:
        out += ["", "| workload | clients | requests/s | p50 ms |", "|---|---|---|---|"]
        for r in rates:
            out.append(f"| {r['workload']} | {r['clients']} | {r['rate']:.1f} | {r['p50']:.0f} |")
    return "\n".join(out) + "\n"


def charts(rows: list[dict], rates: list[dict], title: str, out: Path) -> list[Path]:
    import matplotlib  # noqa: PLC0415  (bench extra only)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    paths = []
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, operation in enumerate(OPS):
        mine = [r for r in rows if r["operation"] == operation]
        x = [r["pages"] for r in mine]
        colour = f"C{i}"
        ax.plot(x, [r["sandboxed_ms"] for r in mine], "o-", color=colour,
                label=f"{operation} sandboxed")
        ax.plot(x, [r["in_process_ms"] for r in mine], "x--", color=colour,
                label=f"{operation} in-process")
    ax.set(xscale="log", yscale="log", xlabel="pages", ylabel="wall time, ms (median)",
           title=f"Time against pages\n{title}")
    ax.title.set_fontsize(9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    paths.append(out / "scale_time.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, operation in enumerate(OPS):
        mine = [r for r in rows if r["operation"] == operation]
        ax.plot([r["pages"] for r in mine], [r["rss_mb"] for r in mine], "o-", color=f"C{i}",
                label=operation)
    inputs = sorted({(r["pages"], r["input_mb"]) for r in rows if r["operation"] == "info"})
    ax.plot([p for p, _ in inputs], [mb for _, mb in inputs], "k:", label="input size MB")
    ax.set(xscale="log", yscale="log", xlabel="pages", ylabel="child peak RSS, MB",
           title=f"Child peak memory against pages\n{title}")
    ax.title.set_fontsize(9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(out / "scale_memory.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if rates:
        fig, ax = plt.subplots(figsize=(8, 5))
        for i, workload in enumerate(dict.fromkeys(r["workload"] for r in rates)):
            mine = [r for r in rates if r["workload"] == workload]
            ax.plot([r["clients"] for r in mine], [r["rate"] for r in mine], "o-",
                    color=f"C{i}", label=workload)
        ax.set(xscale="log", xticks=list(CLIENTS), xlabel="concurrent HTTP clients",
               ylabel="requests/s", title=f"Throughput against clients (2 workers)\n{title}")
        ax.title.set_fontsize(9)
        ax.set_xticklabels([str(c) for c in CLIENTS])
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(out / "scale_throughput.png")
        fig.tight_layout()
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _title(machine_text: str, when: str) -> str:
    """The charts' second title line, split where it would run off a chart."""
    return f"{machine_text}, {when}".replace(", Python", "\nPython", 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true",
                        help="10, 100 and 1,000 pages, 1 run, 2 s per client count")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--seconds", type=float, default=5.0, help="per client count")
    parser.add_argument("--out", default=str(RESULTS), help="where tables and charts go")
    parser.add_argument("--charts-only", action="store_true",
                        help="redraw the charts from the scale.json already in --out")
    args = parser.parse_args()
    if args.charts_only:
        data = json.loads((Path(args.out) / "scale.json").read_text())
        title = _title(data["machine"], data["date"])
        print("wrote", ", ".join(map(str, charts(data["curves"], data["throughput"], title,
                                                    Path(args.out)))))
        return
    sizes = [10, 100, 1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs, seconds = (1, 2.0) if args.quick else (args.runs, args.seconds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    docs = make_documents(sizes)
    print("curves:", flush=True)
    rows, children, idle_rss = asyncio.run(curves(sizes, runs, docs))
    print("throughput:", flush=True)
    rates = throughput(seconds)
    load_after = os.getloadavg()
    when = time.strftime("%Y-%m-%d", time.gmtime())
    title = _title(machine(), when)
    header = (f"machine: {machine()}; {when}; load average {load_before[0]:.1f} before, "
              f"{load_after[0]:.1f} after; {time.monotonic() - started:.0f} s; command: "
              f"`.venv/bin/python -m bench.scale_bench{' --quick' if args.quick else ''}`")
    text = tables(rows, children, idle_rss, rates, header)
    (out / "scale.md").write_text(text)
    (out / "scale.json").write_text(json.dumps(
        {"machine": machine(), "date": when, "curves": rows, "warm": children,
         "idle_rss_mb": idle_rss, "throughput": rates}, indent=1))
    paths = charts(rows, rates, title, out)
    print(text)
    print("wrote", ", ".join(str(p) for p in [out / "scale.md", *paths]))


if __name__ == "__main__":
    main()
