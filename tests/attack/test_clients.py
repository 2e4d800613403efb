"""Hostile clients over real HTTP: lying or endless bodies, odd secret headers, secrets
in every position, crowds of slow uploads, requests racing a fork-server restart. Each
gets a 4xx or 503 problem (never a 5xx, never a hang), /health keeps answering, and the
server's descriptors and memfds come back to what they were."""
from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import socket
import time

import pytest

from tests.attack.conftest import fd_count, order, server_pids
from tests.attack.test_answers import _request_head, manifest
from tests.held import memfds
from tests.pdfs import make_encrypted_pdf, make_pdf
from tests.service.server import multipart
from tests.steady import steady

pytestmark = pytest.mark.timeout(60)

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def exchange(server, raw: bytes, *, trickle: bytes = b"", every_s: float = 0.2,
             timeout_s: float = 10.0, first: bool = False) -> list[int]:
    """Send `raw`, then `trickle` one byte every `every_s` until an answer comes; read
    until the server closes, `timeout_s` passes or (`first`) an answer has come; the
    status of every answer."""
    received, pending = b"", [trickle[i:i + 1] for i in range(len(trickle))]
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s) as s:
        s.sendall(raw)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pending and not _STATUS.search(received):
                try:
                    s.sendall(pending.pop(0))
                except (BrokenPipeError, ConnectionResetError):
                    pending = []
            s.settimeout(every_s if pending else max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if first and _STATUS.search(received):
                break
    return [int(code) for code in _STATUS.findall(received)]


def head(path: str = "/api/v1/compress", **headers) -> bytes:
    """A request head; Connection: close, so that the server ends after its answer."""
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.fixture
def unchanged(hostile_server):
    """The server's descriptors and memfds come back; the fork server is the same."""
    server_pid, fork_server_pid = server_pids(hostile_server)
    assert hostile_server.get("/health").status == 200
    before = steady(lambda: fd_count(server_pid))   # /health's socket closed on both sides
    yield
    deadline = time.monotonic() + 10
    while fd_count(server_pid) > before or memfds(server_pid):
        assert time.monotonic() < deadline, ("leaked", fd_count(server_pid), before,
                                             memfds(server_pid))
        time.sleep(0.1)
    assert server_pids(hostile_server) == (server_pid, fork_server_pid)


PDF = make_pdf(2)


@pytest.mark.parametrize("raw, statuses", [
    # Declares more than it sends, then stalls: the upload deadline (2 s) answers 408.
    (head(Content_Type="application/pdf", Content_Length=len(PDF) + 100) + PDF, {408}),
    # Declares less than it sends: the rest is a garbage next request (400).
    (head(Content_Type="application/pdf", Content_Length=10) + PDF, {400, 415, 422}),
    (head(Content_Type="application/pdf", Content_Length=10 ** 20) + PDF, {400, 413}),
    (head(Content_Type="application/pdf", Content_Length=-1) + PDF, {400}),
    (head(Content_Type="application/pdf", Content_Length="1, 2") + PDF, {400}),
    (head(Content_Type="application/pdf", Content_Length=5)[:-2]
     + b"Content-Length: 6\r\n\r\n%PDF-1", {400}),
    (head(Content_Type="application/pdf", Transfer_Encoding="chunked") + b"zz\r\n", {400}),
    (head(Content_Type="application/pdf", Transfer_Encoding="chunked",
          Content_Length=5) + b"5\r\n%PDF-\r\n0\r\n\r\n", {400}),
    (head(Content_Type="multipart/form-data; boundary=" + "b" * 200,
          Content_Length=10) + b"0123456789", {400}),
    (head(Content_Type="multipart/form-data", Content_Length=10) + b"0123456789", {400}),
    # A body that is not in the Content-Encoding it declares (aiohttp inflates bodies).
    *[(head(Content_Type=content_type, Content_Encoding=encoding, Content_Length=len(PDF))
       + PDF, {400})
      for content_type in ("application/pdf", "multipart/form-data; boundary=b")
      for encoding in ("gzip", "deflate", "br")],
], ids=["short-body", "long-body", "huge-length", "negative-length", "list-length",
        "two-lengths", "bad-chunk", "chunked-and-length", "long-boundary", "no-boundary",
        *[f"{form}-not-{encoding}" for form in ("raw", "multipart")
          for encoding in ("gzip", "deflate", "br")]])
def test_a_lying_body_is_a_4xx(hostile_server, unchanged, raw, statuses):
    got = exchange(hostile_server, raw, timeout_s=6, first=True)
    assert got and set(got) <= statuses | {200}, got
    assert got[0] in statuses or got[0] == 200 and len(got) > 1, got


def test_a_chunked_body_that_never_ends_is_408_at_its_deadline(hostile_server, unchanged):
    """One byte every 0.1 s, forever: refused at NOTRACE_UPLOAD_TIMEOUT_S (2 s)."""
    started = time.monotonic()
    raw = head(Content_Type="application/pdf", Transfer_Encoding="chunked")
    raw += b"5\r\n%PDF-\r\n"
    got = exchange(hostile_server, raw, trickle=b"1\r\nx\r\n" * 60, every_s=0.1,
                   timeout_s=8, first=True)
    assert got[:1] == [408], got
    assert time.monotonic() - started < 6


@pytest.mark.parametrize("password", [
    b"\xff\xfe", b"caf\xc3\xa9", b"caf\xe9", b"\xed\xa0\x80", b"a\tb", b" ", b"x" * 8000,
    b"secret\x7f", b"\xe2\x80\xa8", b"a\r\n b", b"a\rb", b"a\nX-Notrace-Password: b",
    b"\x00",
], ids=lambda p: p[:12].hex())
def test_any_password_header_is_answered_without_a_5xx(hostile_server, unchanged, password):
    body = make_encrypted_pdf(user="secret")
    raw = (b"POST /api/v1/compress HTTP/1.1\r\nHost: x\r\nContent-Type: application/pdf\r\n"
           b"X-Notrace-Password: " + password + b"\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    got = exchange(hostile_server, raw)
    assert len(got) == 1 and 400 <= got[0] < 500, got


@pytest.mark.parametrize("where", ["query", "query-encoded", "query-twice", "query-empty",
                                   "header-and-part", "part-twice"])
def test_a_secret_anywhere_but_its_places_is_a_400(hostile_server, unchanged, where):
    pdf = make_encrypted_pdf(user="secret")
    path, headers, params = "/api/v1/compress", {}, {"password": "secret"}
    if where == "query":
        path += "?password=secret"
    elif where == "query-encoded":
        path += "?pass%77ord=secre%74"
    elif where == "query-twice":
        path += "?password=a&password=b"
    elif where == "query-empty":
        path += "?password"
    elif where == "header-and-part":
        headers["X-Notrace-Password"] = "secret"   # and the part below: twice
    body, content_type = multipart([pdf], params)
    if where == "part-twice":
        body, content_type = multipart([pdf], {})
        boundary = content_type.split("boundary=")[1].encode()
        extra = b"".join(b"--" + boundary + b'\r\nContent-Disposition: form-data; '
                         b'name="password"\r\n\r\nsecret\r\n' for _ in range(2))
        body = body.replace(b"--" + boundary + b"--", extra + b"--" + boundary + b"--")
    reply = hostile_server.request("POST", path, body,
                                   {"Content-Type": content_type, **headers})
    assert reply.status == 400, (reply.status, reply.body[:200])
    assert b"secret\"" not in reply.body and b"=secret" not in reply.body


def test_a_crowd_of_slow_uploads_gets_503_or_408_and_health_answers(hostile_server,
                                                                   unchanged):
    """30 clients declare 1 MiB and trickle it: beyond workers + queue (6 tickets) they
    are refused at once; the others time out (2 s). /health stays fast meanwhile."""
    raw = head(Content_Type="application/pdf", Content_Length=1 << 20) + b"%PDF-1.7\n"
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        crowd = [pool.submit(exchange, hostile_server, raw, trickle=b"x" * 40,
                             every_s=0.1, timeout_s=8, first=True) for _ in range(30)]
        time.sleep(0.5)
        for _ in range(10):
            started = time.monotonic()
            assert hostile_server.get("/health", timeout=5).status == 200
            assert time.monotonic() - started < 0.5
            time.sleep(0.1)
        statuses = [f.result() for f in crowd]
    flat = [s for got in statuses for s in got]
    assert set(flat) <= {408, 503} and len(flat) == 30, statuses
    assert flat.count(503) >= 30 - 6, statuses


def test_requests_racing_a_fork_server_restart_get_200_or_503(hostile_server):
    """Three clients post in a loop while the fork server is SIGKILLed under them: each
    answer is 200 or a 503 with Retry-After; then the service works again, with a new
    fork server, and the server process never changed."""
    server_pid, fork_server_pid = server_pids(hostile_server)
    pdf, stop = make_pdf(60), time.monotonic() + 2.5

    def client():
        replies = []
        while time.monotonic() < stop:
            replies.append(hostile_server.post("compress", [pdf]))
        return replies

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        clients = [pool.submit(client) for _ in range(3)]
        time.sleep(0.8)
        os.kill(fork_server_pid, signal.SIGKILL)
        replies = [reply for c in clients for reply in c.result()]
    assert {r.status for r in replies} <= {200, 503}, [(r.status, r.body[:100])
                                                        for r in replies if r.status != 200]
    assert all("retry-after" in r.headers for r in replies if r.status == 503)
    deadline = time.monotonic() + 20
    while (server_pids(hostile_server)[1] == fork_server_pid
           or hostile_server.get("/ready").status != 200):
        assert time.monotonic() < deadline, "no new fork server"
        time.sleep(0.1)
    assert hostile_server.post("compress", [PDF]).status == 200
    assert server_pids(hostile_server)[0] == server_pid


def test_slow_request_heads_are_dropped_and_health_answers(hostile_server, unchanged):
    """40 connections trickle a request head one byte every 0.2 s: each is closed by
    the head deadline (NOTRACE_UPLOAD_TIMEOUT_S, 2 s) at the latest; /health answers."""
    trickle = b"POST /api/v1/compress HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        started = time.monotonic()
        crowd = [pool.submit(exchange, hostile_server, b"P", trickle=trickle[1:],
                             every_s=0.2, timeout_s=12) for _ in range(40)]
        time.sleep(0.5)
        assert hostile_server.get("/health", timeout=2).status == 200
        for future in crowd:
            assert set(future.result()) <= {400, 408}
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("when", ["mid-upload", "during-the-job"])
def test_a_client_that_hangs_up_leaves_nothing_behind(hostile_server, unchanged, when):
    """Hang up after half the declared body, or right after sending all of it while the
    job runs (its 8 MiB answer then has nobody to go to): memfds and budget come back."""
    if when == "mid-upload":
        raw = head(Content_Type="application/pdf", Content_Length=1 << 20) + PDF
    else:
        raw = _request_head(hostile_server, order(
            {"do": "answer", "outputs": [manifest()], "body_mb": 8}))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", hostile_server.port), timeout=5) as s:
            s.sendall(raw)
            time.sleep(0.2)
    # The budget is whole again: a 7 MiB upload (of the 16 MiB budget) goes through.
    reply = hostile_server.request("POST", "/api/v1/compress", PDF + b"\n" * (7 << 20),
                                   {"Content-Type": "application/pdf"})
    assert reply.status == 200, (reply.status, reply.body[:200])
