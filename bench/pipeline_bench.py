"""sanitize -> compress -> encrypt on a 10 MB document: one pipeline request against three
single requests (each sending the previous answer back), over loopback to a real
`notrace serve` on its defaults.

Prints one table per document: wall time (median of the runs, and the range), bytes sent
and received by the client, the server's peak memory above its resting level (its RSS
plus the pages of every memfd it holds, uploads and answers, sampled every 2 ms), and the children's
CPU seconds and largest max RSS (from the server's access log lines). The machine may be
shared: its load average is printed before and after.

A second table compares the handoff between steps inside the job: the document handed
over OPEN (what the child does: notrace/operations/pipeline.py) against every step's
answer saved, checked and parsed again by the next step (the handoff before it: the same
code with TAKES_OPEN empty). Each job runs as a child's run() does, in a process forked
for it from the warmed-up bench (as children are from the fork server), the two
handoffs alternately; it reports the median wall time of the job and its median peak RSS
above the RSS before it (Linux: /proc/self/clear_refs resets the peak).

    .venv/bin/python -m bench.pipeline_bench [--runs 5] [--handoff-only]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import threading
import time

import pikepdf
from PIL import Image

from bench.http_bench import heavy_pdf
from tests.service.server import Server, multipart

STEPS = [{"operation": "sanitize"}, {"operation": "compress"},
         {"operation": "encrypt", "params": {"password": "bench"}}]
#: The handoff table's chains: the issue's, and one with two open handoffs in a row.
CHAINS = {"sanitize, compress, encrypt": STEPS,
          "sanitize, scale A4, compress, encrypt": [
              STEPS[0], {"operation": "scale", "params": {"size": "A4"}}, *STEPS[1:]]}


def image_pdf(target_mb: int) -> bytes:
    """About target_mb MB of JPEG images (noise: nothing for compress to gain)."""
    pdf = pikepdf.new()
    for n in range(target_mb):
        noise = Image.frombytes("RGB", (1000, 1000), os.urandom(1000 * 1000 * 3))
        out = io.BytesIO()
        noise.save(out, format="JPEG", quality=95)
        data = out.getvalue()
        image = pdf.make_stream(data, Type=pikepdf.Name.XObject, Subtype=pikepdf.Name.Image,
                                Width=1000, Height=1000, ColorSpace=pikepdf.Name.DeviceRGB,
                                BitsPerComponent=8, Filter=pikepdf.Name.DCTDecode)
        page = pdf.add_blank_page(page_size=(612, 792))
        page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
        page.Contents = pdf.make_stream(b"q 500 0 0 500 56 146 cm /Im0 Do Q")
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


class Sampler:
    """The server's RSS plus the sizes of the memfds it holds, at most every 2 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        held = 0
        fds = f"/proc/{self.pid}/fd"
        for name in os.listdir(fds):
            try:
                if os.readlink(f"{fds}/{name}").startswith("/memfd:"):
                    held += os.stat(f"{fds}/{name}").st_blocks * 512  # pages in use
            except OSError:  # closed meanwhile
                pass
        return rss + held

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(0.002)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def post(server: Server, path: str, files: list[bytes], params: dict) -> tuple[bytes, int]:
    body, content_type = multipart(files, params)
    reply = server.request("POST", path, body, {"Content-Type": content_type}, timeout=120)
    assert reply.status == 200, (path, reply.status, reply.body[:300])
    return reply.body, len(body)


def as_pipeline(server: Server, doc: bytes) -> tuple[bytes, int, int]:
    answer, sent = post(server, "/api/v1/pipeline", [doc], {"steps": json.dumps(STEPS)})
    return answer, sent, len(answer)


def as_three(server: Server, doc: bytes) -> tuple[bytes, int, int]:
    sent = received = 0
    for step in STEPS:
        doc, n = post(server, f"/api/v1/{step['operation']}", [doc], step.get("params", {}))
        sent, received = sent + n, received + len(doc)
    return doc, sent, received


def jobs_since(server: Server, before: int) -> list[dict]:
    records = [json.loads(line) for line in server.lines[before:] if line.startswith("{")]
    return [r for r in records if "job_status" in r]


def measure(server: Server, variant, doc: bytes, runs: int) -> dict:
    walls, peaks, cpus, rss = [], [], [], []
    sampler = Sampler(server.proc.pid)
    for _ in range(runs):
        time.sleep(0.3)
        rest = sampler.sample()
        before = len(server.lines)
        with Sampler(server.proc.pid) as s:
            start = time.perf_counter()
            answer, sent, received = variant(server, doc)
            walls.append(time.perf_counter() - start)
        time.sleep(0.2)  # the access lines
        jobs = jobs_since(server, before)
        peaks.append(s.peak - rest)
        cpus.append(sum(j["job_cpu_s"] for j in jobs))
        rss.append(max(j["job_rss_mb"] for j in jobs))
    with pikepdf.open(io.BytesIO(answer), password="bench") as pdf:
        assert pdf.is_encrypted
    return {"wall": statistics.median(walls), "low": min(walls), "high": max(walls),
            "sent": sent, "received": received, "peak": statistics.median(peaks),
            "cpu": statistics.median(cpus), "rss": statistics.median(rss), "jobs": len(jobs)}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


#: The handoffs compared: the operations that take a document open, or none (before:
#: every answer saved, checked and parsed again by the next step).
HANDOFFS = {"open (now)": None, "bytes (before)": frozenset()}


def _one_job(doc: bytes, steps: list, takes_open: frozenset | None) -> dict:
    """In a forked process: the job once, as a child's run() does; its wall time and its
    peak RSS above the process's RSS before it (MB; /proc/self/clear_refs resets the
    peak, and a fresh process has no freed memory of an earlier run to reuse)."""
    from notrace.operations import child, pipeline as steps_module
    from notrace.pipeline import parse
    if takes_open is not None:
        steps_module.TAKES_OPEN = takes_open
    job = parse(json.dumps(steps), 1).job_params(1000)
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    began = time.perf_counter()
    answer = child.run([memoryview(doc)], job)
    wall = time.perf_counter() - began
    peak = (_status_kb("VmHWM") - before) / 1024
    assert "problem" not in json.loads(answer[0]), answer[0]
    with pikepdf.open(io.BytesIO(bytes(answer[1])), password="bench") as pdf:
        assert pdf.is_encrypted
    return {"wall": wall, "rss": peak}


def _forked(function, *args) -> dict:
    """function(*args) in a forked process, its JSON result through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, write, leave without running the parent's exit code
        code = 1
        try:
            os.write(write, json.dumps(function(*args)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _pid, status = os.waitpid(pid, 0)
    assert status == 0 and data, "the measuring process failed"
    return json.loads(data)


def handoff(doc: bytes, steps: list, runs: int) -> dict:
    """Each handoff `runs` times, alternately (the machine's drift meets both alike), one
    forked process per job from this warmed-up one: median and range of the wall time,
    median peak RSS."""
    from notrace.operations import child
    child.warm_up()  # imports and first-use caches, as the fork server has them
    found: dict = {name: [] for name in HANDOFFS}
    for _ in range(runs):
        for name, takes_open in HANDOFFS.items():
            found[name].append(_forked(_one_job, doc, steps, takes_open))
    return {name: {"wall": statistics.median(m["wall"] for m in ms),
                   "low": min(m["wall"] for m in ms), "high": max(m["wall"] for m in ms),
                   "rss": statistics.median(m["rss"] for m in ms)}
            for name, ms in found.items()}


def handoff_table(documents: dict, runs: int) -> None:
    mb = 1 << 20
    print("| document | steps | handoff | job wall s (median, range) | peak RSS MB above "
          "the job's start |")
    print("|---|---|---|---|---|")
    for label, doc in documents.items():
        for chain, steps in CHAINS.items():
            for name, m in handoff(doc, steps, runs).items():
                print(f"| {label}, {len(doc) / mb:.1f} MB | {chain} | {name} | {m['wall']:.3f} "
                      f"({m['low']:.3f}-{m['high']:.3f}) | {m['rss']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--handoff-only", action="store_true",
                        help="only the in-process handoff table (no server)")
    args = parser.parse_args()
    documents = {"text (compressible)": heavy_pdf(10), "JPEG images": image_pdf(10)}
    load_before = os.getloadavg()
    if args.handoff_only:
        handoff_table(documents, args.runs)
        print(f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
        return
    server = Server({"NOTRACE_LOG_LEVEL": "info"}).start()
    rows = []
    try:
        for label, doc in documents.items():
            for name, variant in (("pipeline", as_pipeline), ("three requests", as_three)):
                variant(server, doc)  # warm
                rows.append((label, len(doc), name, measure(server, variant, doc, args.runs)))
    finally:
        server.stop()
    mb = 1 << 20
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}; load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other work on the machine)")
    print("| document | variant | wall s (median, range) | client sent / received MB | "
          "server peak MB above rest | children CPU s | child max RSS MB | jobs |")
    print("|---|---|---|---|---|---|---|---|")
    for label, size, name, m in rows:
        print(f"| {label}, {size / mb:.1f} MB | {name} | {m['wall']:.2f} ({m['low']:.2f}-"
              f"{m['high']:.2f}) | {m['sent'] / mb:.1f} / {m['received'] / mb:.1f} | "
              f"{m['peak'] / mb:.1f} | {m['cpu']:.2f} | {m['rss']:.0f} | {m['jobs']} |")
    print()
    handoff_table(documents, args.runs)


if __name__ == "__main__":
    main()
