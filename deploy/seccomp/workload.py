#!/usr/bin/env python3
"""A bounded HTTP workload for a running notrace: every endpoint, every operation, and the
files of a corpus. Standard library only, so it runs with any Python 3.11+.

Used by deploy/seccomp/trace.py (to make the traced service do everything it can do) and
by tests/container/ (a merge and the corpus through the real container). It talks only to
the base URL it is given, which is always a loopback address: the container's own one,
reached with `nsenter -t PID -n` (the container has no network).

    python3 workload.py --base http://127.0.0.1:8000 trace --corpus DIR --limit 40
    python3 workload.py --base http://127.0.0.1:8000 corpus --corpus DIR --concurrency 2
    python3 workload.py --base http://127.0.0.1:8000 merge

Prints one JSON object on stdout: the statuses seen, and the requests that got a 5xx or
failed at the transport level. Exits 0 when it ran; judging the counts is the caller's job.
"""
from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import http.client
import json
import pathlib
import struct
import sys
import time
import urllib.parse
import uuid
import zlib

REQUEST_TIMEOUT_S = 60.0
DEADLINE_S = 240.0            # the whole workload stops sending after this


# ---- tiny documents made here, so the workload needs no file of its own ----

def make_pdf(pages: int = 2, text: str = "notrace") -> bytes:
    """A valid PDF with `pages` pages of Helvetica text and a correct xref table."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    font = 3 + 2 * pages
    for i in range(pages):
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> "
                       f"/Contents {4 + 2 * i} 0 R >>".encode())
        stream = f"BT /F1 24 Tf 72 700 Td ({text} page {i + 1}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def make_png(width: int = 32, height: int = 24) -> bytes:
    """An RGB PNG (a gradient), written by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\0" + b"".join(bytes((x * 8 % 256, y * 10 % 256, 128))
                                      for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# ---- HTTP ----

class Client:
    """One HTTP/1.1 connection per request to a loopback base URL."""

    def __init__(self, base: str) -> None:
        url = urllib.parse.urlsplit(base)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"workload: refusing a non-loopback base URL {base!r}")
        self.host, self.port = url.hostname, url.port or 80

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def operation(self, name: str, files: list[tuple[str, bytes, str]],
                  params: dict | None = None) -> tuple[int, bytes]:
        body, content_type = multipart(files, params or {})
        return self.request("POST", f"/api/v1/{name}", body, {"Content-Type": content_type})

    def abandoned_upload(self, name: str) -> None:
        """Send half a request body and hang up: the server must let go of it."""
        body, content_type = multipart([("a.pdf", make_pdf(3), "application/pdf")], {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.putrequest("POST", f"/api/v1/{name}")
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body[: len(body) // 2])
        finally:
            conn.close()


def multipart(files: list[tuple[str, bytes, str]], params: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for key, value in params.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for filename, data, ctype in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                     f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
                     + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# ---- workloads ----

class Tally:
    def __init__(self) -> None:
        self.statuses: collections.Counter = collections.Counter()
        self.bad: list[str] = []          # 5xx or transport failures, by label

    def record(self, label: str, call) -> tuple[int, bytes]:
        try:
            status, body = call()
        except (OSError, http.client.HTTPException) as exc:
            self.statuses["error"] += 1
            self.bad.append(f"{label}: {type(exc).__name__}: {exc}")
            return 0, b""
        self.statuses[str(status)] += 1
        if status >= 500:
            self.bad.append(f"{label}: {status} {body[:200]!r}")
        return status, body

    def summary(self, **extra) -> dict:
        return {"statuses": dict(self.statuses), "bad": self.bad, **extra}


PDF = "application/pdf"


def operations_workload(client: Client, tally: Tally) -> None:
    """Every endpoint, and every operation with plausible parameters (4xx is fine)."""
    for path in ("/health", "/ready", "/metrics", "/api/v1/operations", "/openapi.json",
                 "/docs", "/problems/memory-limit", "/no-such-path"):
        tally.record(f"GET {path}", lambda p=path: client.request("GET", p))
    one = [("a.pdf", make_pdf(4), PDF)]
    plans = {
        "merge": ([("a.pdf", make_pdf(2), PDF), ("b.pdf", make_pdf(3), PDF)], {}),
        "split": (one, {"every": "1"}),
        "select": (one, {"pages": "3,1,1"}),
        "delete": (one, {"pages": "2"}),
        "rotate": (one, {"angle": "90"}),
        "compress": (one, {}),
        "linearize": (one, {}),
        "repair": (one, {}),
        "info": (one, {}),
        "text": (one, {}),
        "metadata": (one, {"title": "t", "xmp": "drop"}),
        "sanitize": (one, {"remove_links": "true"}),
        "encrypt": (one, {"password": "secret"}),
        "watermark": (one, {"text": "draft"}),
        "number": (one, {"format": "{n} / {total}"}),
        "flatten": (one, {}),
        "images": (one, {}),
        "from-images": ([("a.png", make_png(), "image/png"), ("b.png", make_png(8, 8),
                                                             "image/png")], {}),
    }
    status, body = tally.record("GET catalogue", lambda: client.request("GET", "/api/v1/operations"))
    names = list(plans)
    if status == 200:
        try:
            catalogue = json.loads(body)
            items = catalogue.get("operations", catalogue) if isinstance(catalogue, dict) else catalogue
            names += [i["name"] if isinstance(i, dict) else str(i) for i in items
                      if (i["name"] if isinstance(i, dict) else str(i)) not in plans]
        except (ValueError, KeyError, TypeError):
            pass
    for name in names:
        if name == "decrypt":           # needs an encrypted input: runs after encrypt
            continue
        files, params = plans.get(name, (one, {}))
        status, body = tally.record(f"POST {name}", lambda n=name, f=files, p=params:
                                    client.operation(n, f, p))
        if name == "encrypt" and status == 200:
            tally.record("POST decrypt", lambda b=body: client.operation(
                "decrypt", [("e.pdf", b, PDF)], {"password": "secret"}))
    # Refusals: a missing file, a bad parameter, garbage, an abandoned upload.
    tally.record("POST merge (one file)", lambda: client.operation("merge", one))
    tally.record("POST rotate (bad angle)", lambda: client.operation("rotate", one, {"angle": "7"}))
    tally.record("POST info (garbage)", lambda: client.operation(
        "info", [("x.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 64, PDF)]))
    tally.record("POST info (not multipart)", lambda: client.request(
        "POST", "/api/v1/info", b"{}", {"Content-Type": "application/json"}))
    try:
        client.abandoned_upload("info")
    except OSError:
        pass


def corpus_files(corpus: pathlib.Path, limit: int | None) -> list[pathlib.Path]:
    files = sorted(p for p in corpus.iterdir()
                   if p.is_file() and p.suffix.lower() == ".pdf")
    return files[:limit] if limit else files


def corpus_workload(client: Client, tally: Tally, corpus: pathlib.Path, *, limit: int | None,
                    concurrency: int, operations: tuple[str, ...] = ("info",)) -> int:
    """Each corpus file through each operation, `concurrency` at a time. Retries a 503
    (every child busy) after its Retry-After, a few times."""
    files = corpus_files(corpus, limit)
    deadline = time.monotonic() + DEADLINE_S

    def one(path: pathlib.Path, op: str) -> tuple[int, bytes]:
        data = path.read_bytes()
        for _ in range(5):
            status, body = client.operation(op, [(path.name, data, PDF)])
            if status != 503 or time.monotonic() > deadline:
                return status, body
            time.sleep(1.0)
        return status, body

    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(tally.record, f"POST {op} {p.name}", lambda p=p, op=op: one(p, op))
                   for p in files for op in operations]
        concurrent.futures.wait(futures)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    sub = parser.add_subparsers(dest="mode", required=True)
    trace = sub.add_parser("trace", help="every endpoint and operation, then a corpus slice")
    trace.add_argument("--corpus", type=pathlib.Path)
    trace.add_argument("--limit", type=int, default=0, help="0: every file")
    corpus = sub.add_parser("corpus", help="each corpus file through `info`")
    corpus.add_argument("--corpus", type=pathlib.Path, required=True)
    corpus.add_argument("--limit", type=int, default=None)
    corpus.add_argument("--concurrency", type=int, default=2)
    sub.add_parser("merge", help="one merge of a 2-page and a 3-page PDF; prints the result")
    sub.add_parser("wait", help="wait until /health answers 200 (at most 60 s)")
    args = parser.parse_args(argv)
    client = Client(args.base)
    tally = Tally()
    extra: dict = {}
    if args.mode == "wait":
        until = time.monotonic() + 60
        while time.monotonic() < until:
            try:
                if client.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        tally.record("GET /health", lambda: client.request("GET", "/health"))
    elif args.mode == "trace":
        operations_workload(client, tally)
        if args.corpus:
            extra["files"] = corpus_workload(client, tally, args.corpus, limit=args.limit,
                                             concurrency=3, operations=("info", "text", "repair"))
    elif args.mode == "corpus":
        extra["files"] = corpus_workload(client, tally, args.corpus, limit=args.limit,
                                         concurrency=args.concurrency)
    elif args.mode == "merge":
        a, b = make_pdf(2, "first"), make_pdf(3, "second")
        status, body = tally.record("POST merge", lambda: client.operation(
            "merge", [("a.pdf", a, PDF), ("b.pdf", b, PDF)]))
        extra.update(status=status, size=len(body),
                     pdf_b64=base64.b64encode(body).decode() if status == 200 else "")
    json.dump(tally.summary(**extra), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
