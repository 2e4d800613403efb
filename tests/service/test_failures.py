"""Every failure status, with its exact problem type, against real servers."""
from __future__ import annotations

import concurrent.futures
import select
import socket
import time

import pytest

from tests.pdfs import make_encrypted_pdf, make_pdf
from tests.service import builders as b
from tests.service.access import wait_until
from tests.service.test_restarting import _metric

PDF = make_pdf(2)


def _problem(reply, status: int, slug: str) -> dict:
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"].startswith("application/problem+json")
    doc = reply.json()
    assert doc["type"] == f"/problems/{slug}"
    assert doc["status"] == status
    assert doc["instance"] == reply.headers["x-request-id"]
    assert set(doc) >= {"type", "title", "status", "detail", "instance"}
    return doc


# --- 400 ------------------------------------------------------------------------------

def test_bad_parameter_names_the_parameter(server):
    doc = _problem(server.post("rotate", [PDF], {"angle": "45"}), 400, "bad-parameter")
    assert doc["param"] == "angle"


def test_unknown_and_missing_parameters(server):
    _problem(server.post("rotate", [PDF], {"angle": "90", "colour": "red"}), 400,
             "bad-parameter")
    _problem(server.post("rotate", [PDF]), 400, "bad-parameter")


def test_secret_parameter_value_never_echoed(server):
    secret = "hunter2-" + "x" * 200   # too long for max_length 127
    reply = server.post("decrypt", [PDF], {"password": secret})
    _problem(reply, 400, "bad-parameter")
    assert b"hunter2" not in reply.body


def test_parameter_given_twice(server):
    reply = server.request("POST", "/api/v1/rotate?angle=90", *_multipart_with(angle="90"))
    _problem(reply, 400, "bad-request")


def test_wrong_file_counts(server):
    _problem(server.post("merge", [PDF]), 400, "wrong-file-count")
    _problem(server.post("info", [PDF, PDF]), 400, "wrong-file-count")
    _problem(server.post("info", []), 400, "wrong-file-count")


def test_malformed_multipart(server):
    reply = server.request("POST", "/api/v1/info", b"--nope\r\ngarbage",
                           {"Content-Type": "multipart/form-data; boundary=xyz"})
    assert reply.status == 400


def _multipart_with(**params):
    from tests.service.server import multipart
    body, ctype = multipart([PDF], params)
    return body, {"Content-Type": ctype}


# --- 404 / 405 ------------------------------------------------------------------------

def test_unknown_operation_and_path(server):
    _problem(server.post("shred", [PDF]), 404, "unknown-operation")
    _problem(server.get("/nothing/here"), 404, "not-found")
    _problem(server.get("/problems/no-such-type"), 404, "not-found")


def test_method_not_allowed(server):
    reply = server.request("DELETE", "/health")
    _problem(reply, 405, "method-not-allowed")
    assert "GET" in reply.headers["allow"]
    _problem(server.get("/api/v1/merge"), 405, "method-not-allowed")


# --- 415 ------------------------------------------------------------------------------

def test_not_multipart(server):
    reply = server.request("POST", "/api/v1/info", b"hello", {"Content-Type": "text/plain"})
    _problem(reply, 415, "unsupported-media-type")


def test_not_a_pdf(server):
    _problem(server.post("info", [b"GIF89a not a pdf at all"]), 415, "not-a-pdf")
    _problem(server.post("info", [b"PK\x03\x04 a zip, not a pdf"]), 415, "not-a-pdf")
    _problem(server.post("info", [b""]), 415, "not-a-pdf")


def test_unsupported_image(server):
    _problem(server.post("from-images", [b.gif()]), 415, "unsupported-image")
    _problem(server.post("from-images", [PDF]), 415, "unsupported-image")


# --- 413: detected while streaming ----------------------------------------------------

def _head(port: int, path: str, content_type: str, extra: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                  f"{extra}\r\n").encode())
    return sock


def _read_reply(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


@pytest.mark.timeout(60)
def test_413_while_streaming(tight):
    """1 MiB limit; the client offers 64 MiB chunked and is answered long before the end."""
    boundary = "bnd"
    sock = _head(tight.port, "/api/v1/info", f"multipart/form-data; boundary={boundary}",
                 "Transfer-Encoding: chunked\r\n")
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"big.pdf\"\r\n\r\n%PDF-1.4\n").encode()
    sent, chunk = 0, b"0" * 65536
    answered_at = None
    try:
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        while sent < 64 << 20:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if select.select([sock], [], [], 0)[0]:
                answered_at = sent
                break
    except (BrokenPipeError, ConnectionResetError):
        answered_at = sent
    reply = _read_reply(sock)
    sock.close()
    assert answered_at is not None and answered_at < 8 << 20, answered_at
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"/problems/upload-too-large" in reply


def test_413_declared_length(tight):
    sock = _head(tight.port, "/api/v1/info", "application/pdf",
                 f"Content-Length: {50 << 20}\r\n")
    reply = _read_reply(sock)   # answered without a byte of the body sent
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"/problems/upload-too-large" in reply


# --- 408: a trickling client ----------------------------------------------------------

@pytest.mark.timeout(30)
def test_408_slow_upload(tight):
    """2 s deadline for the whole body; one byte every 0.1 s never finishes in time."""
    sock = _head(tight.port, "/api/v1/info", "application/pdf", "Content-Length: 100000\r\n")
    started = time.monotonic()
    sock.sendall(b"%PDF-1.4\n")
    reply = b""
    while time.monotonic() - started < 10:
        try:
            sock.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            break
        if select.select([sock], [], [], 0.1)[0]:
            break
    reply = _read_reply(sock)
    elapsed = time.monotonic() - started
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"/problems/upload-timeout" in reply
    assert 1.5 < elapsed < 6


# --- 422: the document cannot be processed -----------------------------------------------

def test_malformed_pdf(server):
    _problem(server.post("info", [b"%PDF-1.7\n1 0 obj <</Type /Catalog>>\ngarbage"]), 422,
             "malformed-pdf")
    _problem(server.post("compress", [b"%PDF-1.4\n" + bytes(range(256)) * 40]), 422,
             "malformed-pdf")


def test_password_required_and_wrong(server):
    locked = make_encrypted_pdf(1, user="right")
    _problem(server.post("info", [locked]), 422, "password-required")
    _problem(server.post("info", [locked], {"password": "wrong"}), 422, "password-wrong")
    assert server.post("info", [locked], {"password": "right"}).status == 200


def test_too_many_pages(tight):
    _problem(tight.post("info", [make_pdf(6)]), 422, "too-many-pages")
    assert tight.post("info", [make_pdf(5)]).status == 200


@pytest.mark.timeout(60)
def test_memory_limit(small_memory):
    # The operations cap decompression bombs themselves (qpdf limits, pixel caps): the
    # memory limit is reached here by an honest but large image decode.
    _problem(small_memory.post("from-images", [b.big_png()]), 422, "memory-limit")
    assert small_memory.post("info", [PDF]).status == 200


@pytest.mark.timeout(60)
def test_cpu_limit(tight):
    _problem(tight.post("text", [b.slow_text_pdf()], b.SLOW_TEXT), 422, "cpu-limit")


@pytest.mark.timeout(60)
def test_time_limit(single):
    started = time.monotonic()
    _problem(single.post("text", [b.slow_text_pdf()], b.SLOW_TEXT), 422, "time-limit")
    # Ended by the 1 s wall limit, not the 20 s CPU limit; the rest is the upload, the
    # fork and the answer, which a loaded 2-core machine may stretch to seconds.
    assert time.monotonic() - started < 10


# --- 503: every child busy, queue full ----------------------------------------------------

@pytest.mark.timeout(60)
def test_503_when_saturated(single):
    """workers=1, queue=0: while one slow job runs (1 s), every other request is refused."""
    slow = b.slow_text_pdf()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = pool.submit(single.post, "text", [slow], b.SLOW_TEXT)
        # The others are sent once the first job runs in the only child (a fixed sleep
        # let a slow upload lose the slot to one of them: then the first was the 503).
        wait_until(lambda: _metric(single, "notrace_jobs_in_flight") == 1,
                   what="the slow job running in the only child")
        others = [pool.submit(single.post, "info", [PDF]) for _ in range(6)]
        replies = [f.result() for f in others]
        _problem(first.result(), 422, "time-limit")
    busy = [r for r in replies if r.status == 503]
    assert busy, [r.status for r in replies]
    for reply in busy:
        _problem(reply, 503, "busy")
        assert int(reply.headers["retry-after"]) > 0
    assert all(r.status in (200, 503) for r in replies)
    assert single.post("info", [PDF]).status == 200   # and it recovers
