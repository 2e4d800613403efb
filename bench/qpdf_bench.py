"""Operations at qpdf's pace: each of merge, split, select, rotate, info, compress,
linearize, decrypt and encrypt through a real `notrace serve` over loopback HTTP, against
Debian's `qpdf` command line doing the same on the same file, in one run.

Documents (generated here): a 500-page text PDF (bench.text_bench.book_pdf: 45 lines of
10 pt Helvetica a page, streams compressed), a 10 MB image PDF (bench.pipeline_bench.
image_pdf: ten 1000x1000 JPEG noise images) and, for compress only, the 10 MB
compressible text PDF of bench.http_bench (uncompressed content streams). The encrypted
inputs of decrypt are made once by `qpdf --encrypt` (AES-256) and sent to both.

notrace: one keep-alive HTTP connection, the multipart body built beforehand, timed from
sending the request to the last byte of the answer (the server, the fork server, a fresh
confined child, and the reopening check of every PDF answered); the server's access log
gives the job's own part (job_wall_s: the child's work, from the sandbox's start of the job
to its result), the rest is HTTP, the upload into memfds and the answer's streaming. qpdf:
one `qpdf` process
per run (spawn to exit), input and output files in /dev/shm, with the options notrace
uses (`--deterministic-id`: notrace's /ID is derived from the content too). The two are
interleaved run by run so that load on the machine hits both alike; the table gives the
median (p50) of the runs. Needs Debian's qpdf: `apt-get install -y qpdf`.

"qpdf behind HTTP" is the same qpdf command served the ordinary way: a plain aiohttp
server (bench.baselines' /qpdf-args: no sandbox, no checks) that reads the same multipart
upload, writes it to /dev/shm, runs the CLI and answers its output, over the same kind
of keep-alive connection, interleaved with the other two. It is what carrying the
document over HTTP costs any service, and the fair floor for notrace's own column: the
CLI column reads its input from a local file.

    .venv/bin/python -m bench.qpdf_bench [--runs 15] [--quick] [--out bench/results/qpdf.md]
        [--only images] [--only merge] ...

`--only WORD` (repeatable) keeps the rows whose operation or document contains one of
the words (e.g. `--only images --out ''` for the image document alone, without
rewriting the table).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pikepdf

from bench import baselines
from bench.http_bench import heavy_pdf
from bench.pipeline_bench import image_pdf
from bench.text_bench import book_pdf
from tests.service.server import Server, multipart

PASSWORD = "bench"
RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "qpdf.md")
DET = "--deterministic-id"


def qpdf_version() -> str:
    return subprocess.run(["qpdf", "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def workloads(docs: dict[str, str], work: str, pages: dict[str, int]) -> list[tuple]:
    """(operation, document label, notrace files, notrace params, qpdf arguments)."""
    out = os.path.join(work, "out.pdf")
    rows = []
    for label in ("text, 500 pages", "images, 10 MB"):
        src, enc = docs[label], docs[label + " (encrypted)"]
        every = max(1, pages[label] // 10)
        rows += [
            ("merge", label, [src, src], {}, ["--empty", DET, "--pages", src, src, "--", out]),
            ("split", label, [src], {"every": every},
             [DET, f"--split-pages={every}", src, os.path.join(work, "part.pdf")]),
            ("select", label, [src], {"pages": "odd"},
             ["--empty", DET, "--pages", src, "1-z:odd", "--", out]),
            ("rotate", label, [src], {"angle": 90}, [DET, "--rotate=+90", src, out]),
            ("info", label, [src], {}, ["--show-npages", src]),
            ("info (qpdf --json)", label, [src], {},
             ["--json=2", "--json-key=pages", "--json-key=encrypt", "--json-key=acroform",
              "--json-key=attachments", src]),
            ("compress", label, [src], {},
             [DET, "--object-streams=generate", "--recompress-flate",
              "--compression-level=9", src, out]),
            ("linearize", label, [src], {}, [DET, "--linearize", src, out]),
            ("decrypt", label, [enc], {"password": PASSWORD},
             [DET, f"--password={PASSWORD}", "--decrypt", enc, out]),
            ("encrypt", label, [src], {"password": PASSWORD},
             ["--encrypt", PASSWORD, PASSWORD, "256", "--", src, out]),
        ]
    heavy = docs["compressible text, 10 MB"]
    rows.append(("compress", "compressible text, 10 MB", [heavy], {},
                 [DET, "--object-streams=generate", "--recompress-flate",
                  "--compression-level=9", heavy, out]))
    return rows


def make_documents(work: str) -> tuple[dict[str, str], dict[str, int]]:
    made = {"text, 500 pages": book_pdf(500), "images, 10 MB": image_pdf(10),
            "compressible text, 10 MB": heavy_pdf(10)}
    paths, pages = {}, {}
    for n, (label, data) in enumerate(made.items()):
        paths[label] = os.path.join(work, f"doc{n}.pdf")
        with open(paths[label], "wb") as f:
            f.write(data)
        with pikepdf.open(paths[label]) as pdf:
            pages[label] = len(pdf.pages)
        encrypted = paths[label] + ".enc.pdf"
        subprocess.run(["qpdf", "--encrypt", PASSWORD, PASSWORD, "256", "--", paths[label],
                        encrypted], check=True)
        paths[label + " (encrypted)"] = encrypted
    return paths, pages


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def post(self, operation: str, body: bytes, content_type: str,
             prefix: str = "/api/v1/") -> tuple[float, int]:
        start = time.perf_counter()
        self.conn.request("POST", f"{prefix}{operation}", body=body,
                          headers={"Content-Type": content_type})
        response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{operation}: {response.status} {data[:300]!r}")
        return elapsed, len(data)


def run_qpdf(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(["qpdf", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 3):  # 3: succeeded with warnings
        raise RuntimeError(f"qpdf {' '.join(args)}: {done.stderr[:300]!r}")
    return elapsed


def job_walls(server: Server, since: int) -> list[float]:
    """job_wall_s of the access lines the server logged since line `since` (the child's
    part of each answer: from the job's start in the sandbox to its result)."""
    time.sleep(0.2)  # the lines are read from the server's stderr by a thread
    records = [json.loads(line) for line in server.lines[since:] if line.startswith("{")]
    return [r["job_wall_s"] for r in records if "job_wall_s" in r]


def served_args(qpdf_args: list[str], files: list[str], work: str) -> list[str]:
    """qpdf_args for bench.baselines' /qpdf-args: the k-th input path named INk (merge
    names the same file twice: two uploads), our output paths OUT and OUT-PREFIX."""
    served, uploads = [], iter(range(len(files)))
    for arg in qpdf_args:
        if arg in files:
            served.append(f"IN{next(uploads)}")
        elif arg.startswith(work):
            served.append(_shown(arg, work))
        else:
            served.append(arg)
    return served


def measure(server: Server, client: Client, behind: Client, rows: list[tuple], runs: int,
            work: str) -> list[dict]:
    results = []
    for operation, label, files, params, qpdf_args in rows:
        endpoint = operation.split(" ")[0]
        datas = []
        for path in files:
            with open(path, "rb") as f:
                datas.append(f.read())
        body, content_type = multipart(datas, params)
        served, served_type = multipart(datas, {"args": json.dumps(
            served_args(qpdf_args, files, work))})
        client.post(endpoint, body, content_type)  # warm: the first of a kind
        run_qpdf(qpdf_args)
        behind.post("qpdf-args", served, served_type, prefix="/")
        ours, theirs, served_times, size = [], [], [], 0
        since = len(server.lines)
        for _ in range(runs):
            elapsed, size = client.post(endpoint, body, content_type)
            ours.append(elapsed)
            theirs.append(run_qpdf(qpdf_args))
            served_times.append(behind.post("qpdf-args", served, served_type, prefix="/")[0])
        walls = job_walls(server, since)
        results.append({"operation": operation, "document": label,
                        "notrace": statistics.median(ours) * 1000,
                        "child": statistics.median(walls) * 1000 if walls else float("nan"),
                        "qpdf": statistics.median(theirs) * 1000,
                        "served": statistics.median(served_times) * 1000,
                        "answer_kb": size / 1000, "qpdf_args": qpdf_args})
    return results


def _shown(arg: str, work: str) -> str:
    """A qpdf argument as the table shows it: IN, OUT or OUT-PREFIX for our files."""
    if not arg.startswith(work):
        return arg
    return {"out.pdf": "OUT", "part.pdf": "OUT-PREFIX"}.get(os.path.basename(arg), "IN")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 runs each")
    parser.add_argument("--out", default=RESULT, help="where the table goes too ('' for nowhere)")
    parser.add_argument("--only", action="append", default=[], metavar="WORD",
                        help="keep rows whose operation or document contains WORD (repeatable)")
    args = parser.parse_args()
    if not shutil.which("qpdf"):
        sys.exit("Debian's qpdf is needed: apt-get install -y qpdf")
    runs = 3 if args.quick else args.runs
    work = tempfile.mkdtemp(prefix="notrace-qpdf-bench-", dir="/dev/shm")
    load_before = os.getloadavg()
    server = baseline = None
    try:
        docs, pages = make_documents(work)
        server = Server({"NOTRACE_LOG_LEVEL": "info"}).start()
        baseline, baseline_port = baselines.start()
        rows = [row for row in workloads(docs, work, pages)
                if not args.only or any(w in row[0] or w in row[1] for w in args.only)]
        results = measure(server, Client(server.port), Client(baseline_port), rows, runs,
                          work)
    finally:
        if server is not None:
            server.stop()
        if baseline is not None:
            baseline.terminate()
            baseline.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux "
             f"{platform.release()}, Python {platform.python_version()}, pikepdf "
             f"{pikepdf.__version__} (qpdf {pikepdf.__libqpdf_version__}), CLI {qpdf_version()}; "
             f"{time.strftime('%Y-%m-%d', time.gmtime())}; {runs} runs each; load average "
             f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; command: "
             f"`.venv/bin/python -m bench.qpdf_bench{' --quick' if args.quick else ''}`", "",
             "| operation | document | notrace HTTP p50 ms | of which the job in its child | "
             "qpdf CLI p50 ms | ratio | qpdf behind HTTP p50 ms | ratio to it | qpdf command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        command = " ".join(_shown(a, work) for a in r["qpdf_args"])
        lines.append(f"| {r['operation']} | {r['document']} | {r['notrace']:.1f} | "
                     f"{r['child']:.1f} | {r['qpdf']:.1f} | {r['notrace'] / r['qpdf']:.2f}x | "
                     f"{r['served']:.1f} | {r['notrace'] / r['served']:.2f}x | "
                     f"`qpdf {command}` |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
