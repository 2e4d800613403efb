"""The servers notrace is measured against, in one aiohttp app (bench only, never shipped).

  /inproc/{op}  (a) pikepdf called in the server process: the unsafe ceiling
  /qpdf/{op}    (b) Debian's `qpdf` CLI spawned per request (files in a private tmpfs dir)
  /exec/{op}    (c) a fresh `python` process per request that imports pikepdf
  /health       200 once the server is up (start() waits for it)
  /qpdf-args    the `qpdf` CLI with the arguments of the request's `args` part (a JSON
                list; IN0, IN1, ... name the uploaded files, OUT the output file, OUT-PREFIX
                split's): bench.qpdf_bench's "qpdf behind HTTP". It answers qpdf's stdout
                when there is no output file, else the output files one after the other.

Each route takes the same multipart upload as notrace (parts named `file`) and answers
the same kind of body. Ops: merge, info, compress.

    python -m bench.baselines --port 8100
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pikepdf
from aiohttp import web

_EXEC = """
import io, json, sys, pikepdf
from bench.baselines import run_inproc
data = sys.stdin.buffer.read()
count = int.from_bytes(data[:4], "little")
sizes = [int.from_bytes(data[4 + 8 * i:12 + 8 * i], "little") for i in range(count)]
offset, inputs = 4 + 8 * count, []
for size in sizes:
    inputs.append(data[offset:offset + size]); offset += size
sys.stdout.buffer.write(run_inproc(sys.argv[1], inputs))
"""


def run_inproc(op: str, inputs: list[bytes]) -> bytes:
    if op == "merge":
        out = pikepdf.new()
        sources = [pikepdf.open(io.BytesIO(data)) for data in inputs]
        for src in sources:
            out.pages.extend(src.pages)
        buffer = io.BytesIO()
        out.save(buffer)
        return buffer.getvalue()
    if op == "info":
        with pikepdf.open(io.BytesIO(inputs[0])) as pdf:
            return json.dumps({"pages": len(pdf.pages), "version": pdf.pdf_version,
                               "sizes": [list(map(float, p.mediabox))[2:] for p in pdf.pages]}
                              ).encode()
    if op == "compress":
        with pikepdf.open(io.BytesIO(inputs[0])) as pdf:
            buffer = io.BytesIO()
            pdf.remove_unreferenced_resources()
            pdf.save(buffer, object_stream_mode=pikepdf.ObjectStreamMode.generate,
                     recompress_flate=True, compress_streams=True)
            return buffer.getvalue()
    raise web.HTTPNotFound()


async def _parts(request: web.Request) -> tuple[list[bytes], dict[str, str]]:
    """The upload's `file` parts in order, and its text parts by name."""
    inputs, texts = [], {}
    async for part in await request.multipart():
        if part.name == "file":
            inputs.append(bytes(await part.read()))
        elif part.name:
            texts[part.name] = await part.text()
    return inputs, texts


async def _inputs(request: web.Request) -> list[bytes]:
    return (await _parts(request))[0]


async def inproc(request: web.Request) -> web.Response:
    op = request.match_info["op"]
    body = run_inproc(op, await _inputs(request))
    return web.Response(body=body)


#: Each /qpdf/{op} route's command, in /qpdf-args' placeholders.
_QPDF_ARGS = {"merge": lambda n: ["--empty", "--pages", *(f"IN{i}" for i in range(n)), "--",
                                  "OUT"],
              "info": lambda n: ["--show-npages", "IN0"],
              "compress": lambda n: ["--object-streams=generate", "--recompress-flate",
                                     "--compression-level=9", "IN0", "OUT"]}


async def _run_qpdf(inputs: list[bytes], args: list[str]) -> tuple[int, bytes, bytes | None]:
    """qpdf on `inputs` written to a private tmpfs dir, `args` naming them IN0, IN1, ...,
    the output OUT (split's prefix OUT-PREFIX): (exit status, stdout, the output files one
    after the other, or None when it wrote none)."""
    workdir = tempfile.mkdtemp(dir="/dev/shm")
    try:
        names = {"OUT": os.path.join(workdir, "out.pdf"),
                 "OUT-PREFIX": os.path.join(workdir, "part.pdf")}
        for i, data in enumerate(inputs):
            names[f"IN{i}"] = os.path.join(workdir, f"in{i}.pdf")
            with open(names[f"IN{i}"], "wb") as f:
                f.write(data)
        proc = await asyncio.create_subprocess_exec(
            "qpdf", *(names.get(arg, arg) for arg in args), stdout=asyncio.subprocess.PIPE)
        stdout, _ = await proc.communicate()
        outputs = sorted(name for name in os.listdir(workdir) if not name.startswith("in"))
        if not outputs:
            return proc.returncode, stdout, None
        body = bytearray()
        for name in outputs:
            with open(os.path.join(workdir, name), "rb") as f:
                body += f.read()
        return proc.returncode, stdout, bytes(body)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def qpdf(request: web.Request) -> web.Response:
    op = request.match_info["op"]
    if op not in _QPDF_ARGS:
        raise web.HTTPNotFound()
    inputs = await _inputs(request)
    _, stdout, body = await _run_qpdf(inputs, _QPDF_ARGS[op](len(inputs)))
    if op == "info":
        return web.Response(body=json.dumps({"pages": int(stdout)}).encode())
    return web.Response(body=body or b"")


async def qpdf_args(request: web.Request) -> web.Response:
    inputs, texts = await _parts(request)
    args = json.loads(texts["args"]) if "args" in texts else None
    if not isinstance(args, list):
        raise web.HTTPBadRequest(text="an `args` part (a JSON list) is needed")
    status, stdout, body = await _run_qpdf(inputs, args)
    if status not in (0, 3):          # 3: succeeded with warnings
        raise web.HTTPUnprocessableEntity(text=f"qpdf exited {status}")
    return web.Response(body=stdout if body is None else body)


async def fresh_exec(request: web.Request) -> web.Response:
    op = request.match_info["op"]
    inputs = await _inputs(request)
    payload = len(inputs).to_bytes(4, "little") + b"".join(
        len(i).to_bytes(8, "little") for i in inputs) + b"".join(inputs)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _EXEC, op, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env={"PYTHONPATH": os.pathsep.join(sys.path)})
    body, _ = await proc.communicate(payload)
    return web.Response(body=body)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="up")


def make_app() -> web.Application:
    app = web.Application(client_max_size=200 << 20)
    app.router.add_get("/health", health)
    app.router.add_post("/inproc/{op}", inproc)
    app.router.add_post("/qpdf/{op}", qpdf)
    app.router.add_post("/exec/{op}", fresh_exec)
    app.router.add_post("/qpdf-args", qpdf_args)
    return app


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(timeout_s: float = 60) -> tuple[subprocess.Popen, int]:
    """This server in a process of its own on a free loopback port, once /health answers:
    (the process, its port). The caller terminates it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.baselines", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("bench.baselines did not come up")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8100)
    web.run_app(make_app(), host="127.0.0.1", port=parser.parse_args().port, print=None)
