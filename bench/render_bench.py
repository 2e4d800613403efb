"""Benchmark of `render`: pages per second drawing text_bench's book pages (A4, 45 lines
of 10-point text) to PNG at 150 dpi (or --dpi / --format), through the sandbox the way
the service runs it (one job, the server's default limits) against the same code in
this one process (child.run).

    .venv/bin/python -m bench.render_bench [--pages 50] [--runs 3] [--dpi 150] [--format png]
"""
from __future__ import annotations

import argparse
import os
import platform

from bench.answers import in_process, through_sandbox
from bench.text_bench import book_pdf
from notrace import settings as settings_module
from notrace.jobs import ENTRY, job_params, sandbox_limits
from notrace.operations import OPERATIONS
from sandbox import Sandbox

RENDER = OPERATIONS["render"]
WARMUP = "notrace.operations.child:warm_up"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--format", default="png", choices=("png", "jpeg", "webp"))
    args = parser.parse_args()
    data = book_pdf(args.pages)
    settings = settings_module.load({})
    job = job_params(RENDER, RENDER.validate({"dpi": str(args.dpi), "format": args.format}),
                     settings)
    print(f"render of {args.pages} A4 pages of text to {args.format} at {args.dpi} dpi, "
          f"median of {args.runs}; {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs")
    print("| where | seconds | pages/s | peak child RSS MB |")
    print("|---|---|---|---|")
    seconds, report = in_process(data, job, args.runs)
    assert report["pages"] == args.pages, report
    print(f"| in-process | {seconds:.2f} | {args.pages / seconds:.1f} | - |")
    with Sandbox(ENTRY, limits=sandbox_limits(settings), workers=1, warmup=WARMUP) as box:
        seconds, report, rss = through_sandbox(lambda: box.run_sync([data], job), RENDER,
                                               args.runs, settings.max_pages)
    print(f"| sandboxed | {seconds:.2f} | {args.pages / seconds:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
