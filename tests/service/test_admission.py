"""Admission control against real servers: bounded uploads in progress, 503 before reading.

Runs in the test process. Stalled uploads are raw sockets that send a request head and
part of a body, then nothing: beyond NOTRACE_MAX_INFLIGHT_MB (or workers + queue
requests) the next request is answered 503 `busy` while its body is still unsent, and
every ticket comes back when a request ends (answer, timeout, client gone). Out of
descriptors while reading an upload is a 503 too, never a 500.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import select
import socket
import time

import psutil
import pytest

from notrace import settings as settings_mod
from notrace.admission import Admission
from notrace.problems import HttpProblem
from tests.pdfs import make_image_png, make_pdf

MIB = 1 << 20
PDF = make_pdf(2)
RAW = {"Content-Type": "application/pdf"}
STALL_S = 6          # the budget server's upload deadline: stalled sockets end by then


def _padded_pdf(size: int) -> bytes:
    """A real PDF of exactly `size` bytes (a comment after %%EOF: readers ignore it)."""
    return PDF + b"\n%" + b"x" * (size - len(PDF) - 2)


@pytest.fixture(scope="module")
def budget(start_server):
    """4 MiB for uploads in progress, at most 1 + 2 = 3 requests at once."""
    return start_server(max_inflight_mb=4, max_upload_mb=4, workers=1, queue=2,
                        upload_timeout_s=STALL_S)


@contextlib.contextmanager
def stalled(server, *, length: int | None, sent: int = 1024, path: str = "/api/v1/info"):
    """A raw POST whose head declares `length` (None: chunked) and that sends only `sent`
    body bytes, then stalls; yields the socket, closes it at the end."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    framing = (f"Content-Length: {length}" if length is not None
               else "Transfer-Encoding: chunked")
    head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/pdf\r\n"
            f"{framing}\r\n\r\n").encode()
    body = b"%PDF-1.7\n" + bytes(max(0, sent - 9)) if sent else b""
    if length is None and body:
        body = b"%x\r\n%s\r\n" % (len(body), body)
    try:
        sock.sendall(head + body)
        yield sock
    finally:
        sock.close()


def answer(sock: socket.socket, within_s: float) -> tuple[int, dict, dict]:
    """The status, headers and problem document the server sends on `sock`, which must
    arrive within `within_s` seconds."""
    readable, _, _ = select.select([sock], [], [], within_s)
    assert readable, f"no answer within {within_s} s"
    reply = http.client.HTTPResponse(sock)
    reply.begin()
    headers = {k.lower(): v for k, v in reply.getheaders()}
    return reply.status, headers, json.loads(reply.read())


def assert_busy(sock: socket.socket, within_s: float = 3) -> dict:
    status, headers, doc = answer(sock, within_s)
    assert (status, doc["type"]) == (503, "/problems/busy"), doc
    assert headers["retry-after"] == "2"
    return doc


def wait_until_admitted(server, size: int, deadline_s: float = 10) -> None:
    """Retry a real `size`-byte upload until it is answered 200 (tickets are released as
    the server notices the closed sockets)."""
    data = _padded_pdf(size)
    end = time.monotonic() + deadline_s
    while True:
        reply = server.request("POST", "/api/v1/info", data, RAW)
        if reply.status == 200:
            return
        assert reply.status == 503 and time.monotonic() < end, reply.body[:300]
        time.sleep(0.2)


# --- the byte budget --------------------------------------------------------------------

def test_a_declared_length_beyond_the_budget_is_refused_before_its_body(budget):
    with stalled(budget, length=3 * MIB):
        time.sleep(0.3)   # admitted: 3 of 4 MiB reserved
        with stalled(budget, length=2 * MIB, sent=0) as second:
            doc = assert_busy(second)      # not a byte of its body was sent
            assert "upload memory" in doc["detail"]
        # smaller requests still fit beside the stalled one
        assert budget.request("POST", "/api/v1/info", PDF, RAW).status == 200
    wait_until_admitted(budget, 3 * MIB)


def test_a_chunked_upload_is_refused_as_soon_as_the_budget_runs_out(budget):
    with stalled(budget, length=3 * MIB), stalled(budget, length=None, sent=0) as chunked:
        time.sleep(0.3)
        chunk = b"%" * (256 << 10)
        sent = 0
        while sent < 3 * MIB:
            chunked.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if select.select([chunked], [], [], 0.5)[0]:
                break
        assert_busy(chunked)
        # refused once the free 1 MiB was used, well before the whole body was sent
        assert 1 * MIB <= sent < 3 * MIB, sent
    wait_until_admitted(budget, 3 * MIB)


def test_the_budget_comes_back_after_a_timeout(budget):
    with stalled(budget, length=4 * MIB) as hog:
        time.sleep(0.3)
        with stalled(budget, length=1 * MIB, sent=0) as refused:
            assert_busy(refused)
        status, _, doc = answer(hog, STALL_S + 5)
        assert (status, doc["type"]) == (408, "/problems/upload-timeout")
    # (the default 10 s: the claim is that the budget comes back, not how fast the
    # server notices the closed socket on a loaded machine)
    wait_until_admitted(budget, 4 * MIB - 1024)


# --- the bound on requests --------------------------------------------------------------

def test_more_requests_than_workers_plus_queue_are_refused_before_their_bodies(budget):
    with contextlib.ExitStack() as stack:
        for _ in range(3):   # workers 1 + queue 2
            stack.enter_context(stalled(budget, length=100_000))
        time.sleep(0.3)
        fourth = stack.enter_context(stalled(budget, length=100, sent=0))
        assert "Too many uploads" in assert_busy(fourth)["detail"]
    wait_until_admitted(budget, 100_000)


# --- out of descriptors -----------------------------------------------------------------

def test_out_of_descriptors_while_reading_an_upload_is_503(budget):
    proc = psutil.Process(budget.proc.pid)
    soft, hard = proc.rlimit(psutil.RLIMIT_NOFILE)
    images = [make_image_png(8, 8)] * 64
    lines_before = len(budget.lines)
    proc.rlimit(psutil.RLIMIT_NOFILE, (proc.num_fds() + 10, hard))  # memfd #10 fails
    try:
        reply = budget.post("from-images", images)
    finally:
        proc.rlimit(psutil.RLIMIT_NOFILE, (soft, hard))
    assert reply.status == 503, reply.body[:300]
    assert reply.json()["type"] == "/problems/busy"
    assert "file descriptors" in reply.json()["detail"]
    assert reply.headers["retry-after"] == "2"
    assert budget.post("from-images", images).status == 200
    # nothing outside the JSON log (a half-made MemFile's __del__ used to complain)
    assert all(line.startswith("{") for line in budget.lines[lines_before:]), \
        budget.lines[lines_before:]


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(start_server):
    server = start_server(wrapper=["prlimit", "--nofile=256:4096", "--"])
    try:
        assert psutil.Process(server.proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (4096, 4096)
    finally:
        server.stop()


@pytest.mark.timeout(240)
def test_40_concurrent_64_image_uploads_under_1024_descriptors(start_server):
    """ulimit -n 1024 (soft and hard): 40 uploads of 64 files want 2560 memfds at once."""
    server = start_server(wrapper=["prlimit", "--nofile=1024:1024", "--"],
                          workers=2, queue=16)
    images = [make_image_png(8, 8)] * 64
    try:
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            replies = list(pool.map(lambda _: server.post("from-images", images, timeout=120),
                                    range(40)))
        statuses = sorted(r.status for r in replies)
        assert all(200 <= s < 300 or s == 503 for s in statuses), \
            [(r.status, r.body[:200]) for r in replies if r.status != 503 and r.status >= 300]
        assert 200 in statuses, statuses
        refused = [r for r in replies if r.status == 503]
        assert all(r.headers.get("retry-after") == "2" for r in refused)
        # refused by the descriptor budget (and the request bound) before any memfd_create
        # could fail: the EMFILE fallback was not needed
        assert not [r for r in refused if "file descriptors" in r.json()["detail"]]
        assert server.post("from-images", images).status == 200   # and it recovers
    finally:
        server.stop()


# --- the accounting itself (no server) -----------------------------------------------------

def test_tickets_reserve_and_release():
    admission = Admission(max_requests=2, max_bytes=100, max_files=3)
    first = admission.admit(60)
    with pytest.raises(HttpProblem) as caught:
        admission.admit(50)               # 60 + 50 > 100
    assert caught.value.type.slug == "busy"
    assert (admission.requests, admission.bytes) == (1, 60)   # the refused one left nothing
    second = admission.admit(None)        # chunked: reserves as bytes arrive
    second.need(30)
    second.need(20)                       # already covered
    with pytest.raises(HttpProblem):
        second.need(41)
    with pytest.raises(HttpProblem):
        admission.admit(None)             # two requests already
    first.release()
    first.release()                       # idempotent
    second.need(41)
    assert (admission.requests, admission.bytes) == (1, 41)
    second.release()
    assert (admission.requests, admission.bytes) == (0, 0)


def test_tickets_reserve_files():
    admission = Admission(max_requests=2, max_bytes=100, max_files=3)
    first, second = admission.admit(None), admission.admit(None)
    first.add_file()
    first.add_file()
    second.add_file()
    with pytest.raises(HttpProblem) as caught:
        second.add_file()
    assert "files" in caught.value.detail
    first.release()
    second.add_file()
    second.release()
    assert (admission.requests, admission.files) == (0, 0)


def test_the_budget_must_hold_the_largest_upload():
    with pytest.raises(settings_mod.SettingsError, match="NOTRACE_MAX_INFLIGHT_MB"):
        settings_mod.load({"NOTRACE_MAX_INFLIGHT_MB": "50", "NOTRACE_MAX_UPLOAD_MB": "100"})
    settings = settings_mod.load({})
    assert settings.max_inflight_mb >= settings.max_upload_mb
    admission = Admission.for_settings(settings)
    assert admission.max_requests == settings.workers + settings.queue
