"""Benchmark of `text`: PDFium against pypdf, in-process and through the sandbox, on
documents of 50, 500 and 5,000 pages of body text; PyMuPDF in-process as the baseline
when it is installed (AGPL: never a runtime dependency of notrace, only the optional
`bench` extra: `.venv/bin/pip install -e '.[bench]'`; without it the column says so).

In-process calls notrace.operations.child.run (the child's own code, JSON built and all);
sandboxed runs the same entry through `Sandbox` (2 workers, one job at a time, warmed up
in the fork server like the server's), so the difference is what isolation costs:
copying the input into a sealed memfd, a fresh confined child, the output memfd. The
PyMuPDF baseline extracts every page with page.get_text() and builds the same JSON.

    .venv/bin/python -m bench.text_bench [--sizes 50,500,5000] [--runs 5]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import time

import pikepdf

from notrace.operations import OPERATIONS
from sandbox import Limits, Sandbox

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"
ENGINES = ("pdfium", "pypdf")
LIMITS = Limits(memory_mb=1024, cpu_s=300, wall_s=300.0, output_mb=200)
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud "
         "exercitation ullamco laboris nisi aliquip ex ea commodo consequat").split()
LINES_PER_PAGE = 45


def book_pdf(pages: int) -> bytes:
    """`pages` A4-ish pages of 45 lines of 10-point Helvetica (about 3,000 characters a
    page, like a dense book), streams compressed."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font,
                                                Subtype=pikepdf.Name.Type1,
                                                BaseFont=pikepdf.Name.Helvetica))
    resources = pdf.make_indirect(pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)))
    for n in range(pages):
        lines = []
        for line in range(LINES_PER_PAGE):
            start = (n * 7 + line * 3) % len(WORDS)
            words = " ".join((WORDS * 2)[start:start + 12])
            lines.append(f"({n + 1}.{line + 1} {words}) Tj 0 -15 Td")
        content = "BT /F1 10 Tf 50 760 Td " + " ".join(lines) + " ET"
        page = pdf.add_blank_page(page_size=(595, 842))
        page.obj.Resources = resources
        page.obj.Contents = pdf.make_stream(content.encode())
    out = io.BytesIO()
    pdf.save(out, compress_streams=True)
    return out.getvalue()


def _params(engine: str, pages: int) -> dict:
    return {"operation": "text", "params": OPERATIONS["text"].validate({"engine": engine}),
            "max_pages": pages}


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def in_process(data: bytes, engine: str, runs: int) -> float:
    from notrace.operations.child import run
    view, params = memoryview(data), _params(engine, len_pages(data))
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = run([view], params)
        samples.append(time.perf_counter() - start)
        assert "problem" not in json.loads(answer[0]), answer[0]
    return _median_ms(samples)


def mupdf_in_process(data: bytes, runs: int) -> float | None:
    try:
        import pymupdf
    except ImportError:
        return None
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        with pymupdf.open(stream=data, filetype="pdf") as doc:
            pages = [{"page": i + 1, "text": page.get_text()} for i, page in enumerate(doc)]
        json.dumps({"pages": pages}, ensure_ascii=True).encode()
        samples.append(time.perf_counter() - start)
    return _median_ms(samples)


async def sandboxed(sb: Sandbox, data: bytes, engine: str, runs: int) -> float:
    params = _params(engine, len_pages(data))
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await sb.run([data], params)
        samples.append(time.perf_counter() - start)
        try:
            assert result.status == "ok", (result.status, result.reason)
            assert "problem" not in json.loads(result.outputs[0]), result.outputs[0]
        finally:
            result.close()
    return _median_ms(samples)


_PAGES: dict[int, int] = {}


def len_pages(data: bytes) -> int:
    key = id(data)
    if key not in _PAGES:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            _PAGES[key] = len(pdf.pages)
    return _PAGES[key]


def _runs(base: int, pages: int, engine: str) -> int:
    """Fewer runs where one takes seconds (pypdf on thousands of pages)."""
    if pages >= 5000:
        return 1 if engine == "pypdf" else max(2, base // 2)
    if pages >= 500 and engine == "pypdf":
        return max(2, base // 2)
    return base


async def main_async(sizes: list[int], runs: int) -> list[dict]:
    rows = []
    docs = {pages: book_pdf(pages) for pages in sizes}
    async with Sandbox(ENTRY, limits=LIMITS, workers=2, queue=4, warmup=WARMUP) as sb:
        await sb.run([docs[sizes[0]]], _params("pdfium", sizes[0]))   # warm the pool
        for pages, data in docs.items():
            mupdf = mupdf_in_process(data, _runs(runs, pages, "pdfium"))
            for engine in ENGINES:
                n = _runs(runs, pages, engine)
                rows.append({"pages": pages, "engine": engine, "kb": len(data) / 1e3,
                             "in_process": in_process(data, engine, n),
                             "sandboxed": await sandboxed(sb, data, engine, n),
                             "mupdf": mupdf, "runs": n})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50,500,5000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    rows = asyncio.run(main_async(sizes, args.runs))
    load_after = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    print("| pages | engine | in-process ms | sandboxed ms | sandboxed pages/s "
          "| PyMuPDF in-process ms | sandboxed / PyMuPDF | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mupdf = "not installed" if r["mupdf"] is None else f"{r['mupdf']:.0f}"
        ratio = "-" if r["mupdf"] is None else f"{r['sandboxed'] / r['mupdf']:.2f}x"
        print(f"| {r['pages']} ({r['kb']:.0f} kB) | {r['engine']} | {r['in_process']:.0f} "
              f"| {r['sandboxed']:.0f} | {r['pages'] / r['sandboxed'] * 1000:.0f} "
              f"| {mupdf} | {ratio} | {r['runs']} |")


if __name__ == "__main__":
    main()
