"""End-to-end HTTP benchmark: notrace against three baselines, in one run.

Prints one table: merge of two 50-page PDFs, info on a 500-page PDF, compress of a 10 MB
PDF; p50/p99 latency with one client and requests/s with four, for notrace (its defaults),
(a) aiohttp + pikepdf in-process, (b) Debian's qpdf CLI per request, (c) a fresh Python
exec per request. Needs Debian's qpdf (`apt-get install -y qpdf`). Loopback only.

    .venv/bin/python -m bench.http_bench [--seconds 8]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import aiohttp
import pikepdf

from bench import baselines
from bench.entries import make_pdf


def heavy_pdf(target_mb: int) -> bytes:
    """A PDF of about target_mb MB: pages with large, uncompressed, compressible content."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                                                BaseFont=pikepdf.Name.Helvetica))
    line = b"BT /F1 10 Tf 72 %d Td (the quick brown fox jumps over the lazy dog %d) Tj ET\n"
    pages = 40
    per_page = (target_mb << 20) // pages // len(line % (700, 0))
    for n in range(pages):
        page = pdf.add_blank_page(page_size=(612, 792))
        page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
        page.Contents = pdf.make_stream(b"".join(line % (700 - i % 600, i) for i in range(per_page)))
    buffer = io.BytesIO()
    pdf.save(buffer, compress_streams=False)
    return buffer.getvalue()


async def wait_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def measure(url: str, files: list[bytes], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop_at:
            form = aiohttp.FormData()
            for i, data in enumerate(files):
                form.add_field("file", data, filename=f"in{i}.pdf", content_type="application/pdf")
            start = time.perf_counter()
            async with session.post(url, data=form) as response:
                await response.read()
                assert response.status == 200, (url, response.status)
            latencies.append((time.perf_counter() - start) * 1000)

    begin = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    elapsed = time.monotonic() - begin
    ordered = sorted(latencies)
    return {"p50": statistics.median(ordered), "p99": ordered[int(0.99 * (len(ordered) - 1))],
            "rate": len(ordered) / elapsed}


async def main_async(seconds: float) -> list:
    workloads = {"merge 2x50 pages": ("merge", [make_pdf(50)] * 2),
                 "info 500 pages": ("info", [make_pdf(500)]),
                 "compress 10 MB": ("compress", [heavy_pdf(10)])}
    notrace_port = baselines.free_port()
    env = dict(os.environ, NOTRACE_LOG_LEVEL="warning")
    servers = [
        subprocess.Popen([sys.executable, "-m", "notrace", "serve", "--port", str(notrace_port)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    rows = []
    try:
        baseline, base_port = baselines.start()   # waits for its /health
        servers.append(baseline)
        await wait_up(f"http://127.0.0.1:{notrace_port}/ready")
        variants = {"notrace": f"http://127.0.0.1:{notrace_port}/api/v1/{{op}}",
                    "(a) aiohttp + pikepdf in-process": f"http://127.0.0.1:{base_port}/inproc/{{op}}",
                    "(b) qpdf CLI per request": f"http://127.0.0.1:{base_port}/qpdf/{{op}}",
                    "(c) fresh python exec": f"http://127.0.0.1:{base_port}/exec/{{op}}"}
        for label, (op, files) in workloads.items():
            for variant, pattern in variants.items():
                url = pattern.format(op=op)
                await measure(url, files, 1, 0.5)                    # warm
                one = await measure(url, files, 1, seconds)
                four = await measure(url, files, 4, seconds)
                rows.append((label, variant, one["p50"], one["p99"], four["rate"]))
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if not shutil.which("qpdf"):
        sys.exit("Debian's qpdf is needed for baseline (b): apt-get install -y qpdf")
    rows = asyncio.run(main_async(args.seconds))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}")
    print("| workload | server | p50 ms (1 client) | p99 ms (1 client) | req/s (4 clients) |")
    print("|---|---|---|---|---|")
    for label, variant, p50, p99, rate in rows:
        print(f"| {label} | {variant} | {p50:.1f} | {p99:.1f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
