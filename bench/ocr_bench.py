"""Benchmark of `ocr`: pages per second on a small scanned text document (text_bench's
book pages, 45 lines of 10-point text, drawn by PDFium at 150 dpi and saved as an
image-only PDF), at the recognition dpi (default 300), through the sandbox the way the
service runs it (one job, the server's default limits) against the same code in this
one process (child.run). Tesseract runs single-threaded (OMP_THREAD_LIMIT=1), so one
job uses one core; the sandbox runs `workers` jobs at once on as many cores.

    .venv/bin/python -m bench.ocr_bench [--pages 3] [--runs 3] [--dpi 300]
"""
from __future__ import annotations

import argparse
import io
import os
import platform

import pypdfium2

from bench.answers import in_process, through_sandbox
from bench.text_bench import book_pdf
from notrace import settings as settings_module
from notrace.jobs import job_params, sandbox_limits
from notrace.operations import OPERATIONS
from notrace.operations.render import draw_page
from sandbox import Sandbox

ENTRY = "notrace.operations.child:run"
OCR = OPERATIONS["ocr"]
SCAN_DPI = 150


def scanned(pages: int) -> bytes:
    """book_pdf(pages) as an image-only PDF: what a scanner gives, no text at all."""
    document = pypdfium2.PdfDocument(book_pdf(pages))
    images = []
    for page in document:
        width, height = page.get_size()
        images.append(draw_page(page, round(width * SCAN_DPI / 72), round(height * SCAN_DPI / 72)))
        page.close()
    document.close()
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=SCAN_DPI, save_all=True,
                   append_images=images[1:])
    return out.getvalue()


def sandboxed(data: bytes, job: dict, runs: int, settings) -> tuple[float, dict, float]:
    with Sandbox(ENTRY, limits=sandbox_limits(settings), workers=1) as box:
        return through_sandbox(lambda: box.run_sync([data], job), OCR, runs,
                               settings.max_pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dpi", type=int, default=300)
    args = parser.parse_args()
    data = scanned(args.pages)
    settings = settings_module.load({})
    job = job_params(OCR, OCR.validate({"dpi": str(args.dpi)}), settings)
    print(f"ocr on {args.pages} scanned A4 pages of 10-point text at {args.dpi} dpi, median "
          f"of {args.runs}; {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    print("| where | seconds | pages/s | words | peak child RSS MB |")
    print("|---|---|---|---|---|")
    seconds, report = in_process(data, job, args.runs)
    print(f"| in-process | {seconds:.2f} | {args.pages / seconds:.2f} | {report['words']} | - |")
    seconds, report, rss = sandboxed(data, job, args.runs, settings)
    print(f"| sandboxed | {seconds:.2f} | {args.pages / seconds:.2f} | {report['words']} | "
          f"{rss:.0f} |")


if __name__ == "__main__":
    main()
