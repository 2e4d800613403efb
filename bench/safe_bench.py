"""Benchmark of `safe`: pages per second on a text document (text_bench's book pages, A4),
through the sandbox the way the service runs it (notrace/safe.py: phase 1 and phase 2
in their own children per batch, the stream checked between them, a merge child when
there are several batches) against the same phases' code in this one process (the
registry's function, operations/safe.py:safe). Without and with OCR (`--ocr`, when
tesserocr is installed). The children get the server's default limits (512 MB, 200 MB
of output, 20 CPU s, 30 s), so `--pages 200` also checks issue 9's promise: 200 A4
pages at 150 dpi within them, memory flat (the peak child RSS is printed).

    .venv/bin/python -m bench.safe_bench [--pages 50] [--runs 3] [--dpi 150] [--ocr]
"""
from __future__ import annotations

import argparse
import os
import platform

from bench.answers import in_process, through_sandbox
from bench.text_bench import book_pdf
from notrace import safe, settings as settings_module
from notrace.jobs import sandbox_limits
from notrace.operations import OPERATIONS
from sandbox import MemFile, Sandbox

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"
SAFE = OPERATIONS["safe"]


def sandboxed(data: bytes, params: dict, runs: int) -> tuple[float, dict, float]:
    settings = settings_module.load({})
    with Sandbox(ENTRY, limits=sandbox_limits(settings), workers=2, warmup=WARMUP) as box, \
            MemFile.from_bytes(data) as document:
        return through_sandbox(lambda: safe.run_sync(box, [document], params, settings),
                               SAFE, runs, settings.max_pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--ocr", action="store_true", help="also with ocr=true")
    args = parser.parse_args()
    data = book_pdf(args.pages)
    print(f"safe on {args.pages} A4 pages of text at {args.dpi} dpi, median of {args.runs}; "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    print("| ocr | where | seconds | pages/s | batches | peak child RSS MB |")
    print("|---|---|---|---|---|---|")
    for ocr in (False, True) if args.ocr else (False,):
        params = SAFE.validate({"dpi": str(args.dpi), "ocr": str(ocr).lower()})
        seconds, report = in_process(data, {"operation": "safe", "params": params,
                                            "max_pages": 2000}, args.runs)
        print(f"| {ocr} | in-process | {seconds:.2f} | {args.pages / seconds:.1f} | "
              f"{report['batches']} | - |")
        seconds, report, rss = sandboxed(data, params, args.runs)
        print(f"| {ocr} | sandboxed | {seconds:.2f} | {args.pages / seconds:.1f} | "
              f"{report['batches']} | {rss:.0f} |")


if __name__ == "__main__":
    main()
