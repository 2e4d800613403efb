"""Big legitimate results over real HTTP (issue 8, items 3 and 7).

The child builds the final body (the zip included) and the server streams it from the
job's output memfd: `split every=1` of 1500 pages and `images` of 1500 images answer
complete zips (their manifests were over the old fixed 64 KiB cap: 500), and a 150 MB
answer going out to a slow reader neither stalls the server loop (/health stays fast)
nor grows the server by anything like its size; a client that leaves mid-answer leaves
no descriptor behind; `notrace run` writes such an answer without holding it.
"""
from __future__ import annotations

import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import zipfile

import pikepdf
import psutil
import pytest

from tests.held import memfds
from tests.pdfs import make_image_jpeg
from tests.service.server import ROOT, multipart
from tests.steady import steady

PAGES = IMAGES = 1500
_CLI_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}


def _save(pdf: pikepdf.Pdf) -> bytes:
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _many_pages(count: int) -> bytes:
    pdf = pikepdf.new()
    for _ in range(count):
        pdf.add_blank_page(page_size=(200, 200))
    return _save(pdf)


def _many_images(count: int, jpeg: bytes, per_page: int = 100) -> bytes:
    """`count` distinct image XObjects (the same small JPEG each), `per_page` a page."""
    pdf = pikepdf.new()
    for start in range(0, count, per_page):
        page = pdf.add_blank_page(page_size=(200, 200))
        xobjects = pikepdf.Dictionary()
        for k in range(min(per_page, count - start)):
            image = pdf.make_stream(jpeg, Type=pikepdf.Name.XObject,
                                    Subtype=pikepdf.Name.Image, Width=4, Height=4,
                                    ColorSpace=pikepdf.Name.DeviceRGB, BitsPerComponent=8,
                                    Filter=pikepdf.Name.DCTDecode)
            xobjects[f"/Im{k}"] = image
        page.obj.Resources = pikepdf.Dictionary(XObject=xobjects)
    return _save(pdf)


def _members(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.mark.timeout(120)
def test_split_every_page_of_1500_answers_every_part(server):
    reply = server.post("split", [_many_pages(PAGES)], {"every": "1"}, timeout=110)
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/zip"
    assert reply.headers["content-disposition"] == 'attachment; filename="split.zip"'
    members = _members(reply.body)
    assert list(members) == [f"part-{n}.pdf" for n in range(1, PAGES + 1)]
    for name in list(members)[::149]:
        with pikepdf.open(io.BytesIO(members[name])) as part:
            assert len(part.pages) == 1


@pytest.mark.timeout(120)
def test_images_of_1500_answers_every_image(server):
    jpeg = make_image_jpeg(4, 4)
    reply = server.post("images", [_many_images(IMAGES, jpeg)], timeout=110)
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/zip"
    members = _members(reply.body)
    assert len(members) == IMAGES
    assert set(members.values()) == {jpeg}   # JPEG data copied as it is
    assert "page-15-image-100.jpg" in members


def _big_answer_pdf(parts: int = 10, image_mb: int = 15) -> bytes:
    """`parts` pages sharing one incompressible `image_mb` MB image: split every=1 answers
    a zip of `parts` PDFs holding the image each (about parts * image_mb MB)."""
    pdf = pikepdf.new()
    image = pdf.make_stream(os.urandom(image_mb << 20), Type=pikepdf.Name.XObject,
                            Subtype=pikepdf.Name.Image, Width=4, Height=4,
                            ColorSpace=pikepdf.Name.DeviceRGB, BitsPerComponent=8,
                            Filter=pikepdf.Name.DCTDecode)
    for _ in range(parts):
        page = pdf.add_blank_page(page_size=(200, 200))
        page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
    return _save(pdf)


class _SlowReader:
    """Sends one request on a raw socket; then read_head(), and read_body() reads the body
    `chunk` bytes at a time with a pause after each (a client slower than the server)."""

    def __init__(self, server, operation: str, files, params: dict) -> None:
        body, content_type = multipart(files, params)
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.sendall((f"POST /api/v1/{operation} HTTP/1.1\r\nHost: x\r\n"
                           f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                           "Connection: close\r\n\r\n").encode() + body)
        self.status, self.headers, self.rest = 0, {}, b""

    def read_head(self) -> "_SlowReader":
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(65536)
            assert data, "connection closed before the answer's head"
            head += data
        raw_head, self.rest = head.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        return self

    def read_body(self, pause_s: float, chunk: int = 256 * 1024,
                  limit: int | None = None) -> bytearray:
        """The body (or its first `limit` bytes), read into one buffer allocated up front:
        growing a 150 MB bytearray would hold this process's GIL for tens of ms at a time,
        delaying the /health probes of the other thread (the test's stall, not the
        server's)."""
        total = int(self.headers["content-length"])
        want = min(total, limit or total)
        body = bytearray(max(want, len(self.rest)))
        view = memoryview(body)
        got = len(self.rest)
        view[:got] = self.rest
        while got < want:
            count = self.sock.recv_into(view[got:got + chunk])
            if not count:
                break
            got += count
            time.sleep(pause_s)
        view.release()
        return body if got == len(body) else body[:got]

    def close(self) -> None:
        self.sock.close()


def _memfds(pid: int) -> int:
    return len(memfds(pid))


def _probe(server, latencies: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        reply = server.get("/health", timeout=10)
        latencies.append(time.monotonic() - started)
        assert reply.status == 200
        stop.wait(0.1)


@pytest.mark.timeout(120)
def test_a_150_mb_answer_streams_without_stalling_the_server(server):
    document = _big_answer_pdf()
    process = server.process
    server.post("split", [document], {"every": "1"}, timeout=60)  # warm: allocator, pools
    rss_before = process.memory_info().rss
    latencies: list[float] = []
    rss_peak = [0]
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.is_set():
            rss_peak[0] = max(rss_peak[0], process.memory_info().rss)
            stop.wait(0.05)
    threads = [threading.Thread(target=_probe, args=(server, latencies, stop)),
               threading.Thread(target=sample_rss)]
    client = _SlowReader(server, "split", [document], {"every": "1"})
    for thread in threads:  # once the upload is sent: the job, the answer, its streaming
        thread.start()
    try:
        client.read_head()
        assert client.status == 200
        size = int(client.headers["content-length"])
        assert size > 150_000_000
        started = time.monotonic()
        body = client.read_body(pause_s=0.002)
        streamed_s = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        client.close()
    assert len(body) == size
    assert list(_members(body)) == [f"part-{n}.pdf" for n in range(1, 11)]
    assert streamed_s > 1 and len(latencies) >= 8, (streamed_s, latencies)
    # Before: the zip was built in the handler (on main: /health stalled 4 s here; the
    # issue measured 3.2 s and the server growing from 47 to 458 MB).
    # Nine probes in ten within 50 ms, and every one within 500 ms: on a shared 2-core
    # host the kernel deschedules the server now and then for 50-100 ms whatever its loop
    # does (measured mid-stream once in three runs on a quiet machine; twice in one run
    # with two CPU burners beside it, which 'one slow probe at most' failed). A stall of
    # the loop (the zip built in the handler) is seconds long, or slows every probe.
    slow = [latency for latency in latencies if latency >= 0.050]
    assert len(slow) <= max(1, len(latencies) // 10) and max(latencies) < 0.5, \
        sorted(latencies)
    assert rss_peak[0] - rss_before < 40 << 20, (rss_before >> 20, rss_peak[0] >> 20)
    print(f"\n150 MB answer: streamed in {streamed_s:.1f} s; /health p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
          f"({len(latencies)} probes); server RSS {rss_before >> 20} -> peak "
          f"{rss_peak[0] >> 20} MiB")


@pytest.mark.timeout(60)
def test_a_client_leaving_mid_answer_leaves_no_memfd(server):
    document = _big_answer_pdf(parts=4, image_mb=8)
    pid = server.process.pid
    # Once it holds still: an earlier answer's memfd (this session's server is shared) is
    # released when the server notices its client's end, and 'after' is compared equal.
    before = steady(lambda: _memfds(pid))
    client = _SlowReader(server, "split", [document], {"every": "1"}).read_head()
    try:
        assert client.status == 200
        assert int(client.headers["content-length"]) > 30_000_000
        client.read_body(pause_s=0.01, limit=2 << 20)
        assert _memfds(pid) > before   # the answer's memfd, held while it streams
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while _memfds(pid) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _memfds(pid) == before
    assert server.get("/health").status == 200
    deadline = time.monotonic() + 5   # the access line follows the memfd's close
    while not (gone := [r for r in server.log_records() if r.get("client_gone")]):
        assert time.monotonic() < deadline, "no access line says the client went away"
        time.sleep(0.05)
    assert (gone[-1]["operation"], gone[-1]["status"]) == ("split", 200)


@pytest.mark.timeout(90)
def test_notrace_run_writes_a_big_answer_in_chunks(tmp_path):
    """`notrace run` writes the body from the job's memfd to -o in chunks: the command
    never holds the 150 MB answer (its RSS stays far below it)."""
    source, target = tmp_path / "big.pdf", tmp_path / "parts.zip"
    source.write_bytes(_big_answer_pdf())
    command = subprocess.Popen([sys.executable, "-m", "notrace", "run", "split", "--every",
                                "1", str(source), "-o", str(target)], cwd=ROOT, env=_CLI_ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    process, peak = psutil.Process(command.pid), 0
    while command.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    stderr = command.stderr.read().decode()
    assert command.wait(60) == 0, stderr
    assert target.stat().st_size > 150_000_000
    with zipfile.ZipFile(target) as zf:
        assert zf.namelist() == [f"part-{n}.pdf" for n in range(1, 11)]
    assert peak < 100 << 20, peak >> 20
    print(f"\nnotrace run: 150 MB answer written with a peak RSS of {peak >> 20} MiB")


@pytest.mark.timeout(60)
def test_notrace_run_writes_to_standard_output(tmp_path):
    source = tmp_path / "three.pdf"
    source.write_bytes(_many_pages(3))
    done = subprocess.run([sys.executable, "-m", "notrace", "run", "split", "--every", "1",
                           str(source), "-o", "-"], cwd=ROOT, capture_output=True, timeout=50,
                          env=_CLI_ENV)
    assert done.returncode == 0, done.stderr
    assert list(_members(done.stdout)) == ["part-1.pdf", "part-2.pdf", "part-3.pdf"]
