"""A real `notrace serve` in a subprocess, and a small HTTP client for it.

Runs in the test process. The server is the real thing (real sandbox, real children);
its stderr (JSON log lines) is captured in memory for the zero-trace checks. The client
builds multipart bodies by hand so the tests control part order, names and filenames.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]   # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def problem_type(self) -> str | None:
        if self.headers.get("content-type", "").startswith("application/problem+json"):
            return self.json()["type"]
        return None


def _is_server(cmdline: list[str]) -> bool:
    """`python -m notrace serve` (or the `notrace serve` script), not a process whose
    arguments merely mention notrace: the fork server's sys.path may (an editable
    install's path hook is named after the package, and so may the checkout's folder)."""
    for first, second in zip(cmdline, cmdline[1:]):
        if second == "serve" and (first == "notrace" or first.endswith("/notrace")):
            return True
    return False


class Server:
    """One `python -m notrace serve` process on a free loopback port."""

    def __init__(self, env: dict[str, str] | None = None, wrapper: list[str] | None = None,
                 cwd: str | None = None) -> None:
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "PYTHONDONTWRITEBYTECODE": "1", "NOTRACE_PORT": "0",
                    "NOTRACE_HOST": "127.0.0.1", **(env or {})}
        self.wrapper = wrapper or []
        self.cwd = cwd or str(ROOT)
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._drainer: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------
    def start(self) -> "Server":
        cmd = [*self.wrapper, sys.executable, "-m", "notrace", "serve"]
        self.proc = subprocess.Popen(cmd, env={**self.env, "PYTHONPATH": str(ROOT)},
                                     cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.port is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + "\n".join(self.lines[-20:]))
            time.sleep(0.05)
        return self

    def _drain(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.port is None and '"msg": "listening"' in line:
                self.port = json.loads(line)["port"]

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, wait for the exit, and for the last log lines: the server's exit does
        not mean the draining thread has read them all (tests read self.lines next)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._drainer is not None:
            self._drainer.join(5)   # EOF once every holder of the pipe has exited
        return self.proc.returncode

    @property
    def process(self) -> psutil.Process:
        """The server process itself (not a wrapper around it)."""
        proc = psutil.Process(self.proc.pid)
        if _is_server(proc.cmdline()):
            return proc
        for child in proc.children(recursive=True):
            if _is_server(child.cmdline()):
                return child
        return proc

    def log_records(self) -> list[dict]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    # --- HTTP ---------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 60) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, operation: str, files=(), params: dict | None = None,
             filenames=None, headers: dict | None = None, timeout: float = 60) -> Reply:
        body, content_type = multipart(files, params or {}, filenames)
        return self.request("POST", f"/api/v1/{operation}", body,
                            {"Content-Type": content_type, **(headers or {})}, timeout)


def multipart(files, params: dict, filenames=None) -> tuple[bytes, str]:
    """A multipart/form-data body: `file` parts in the given order, then text parts."""
    boundary = "notrace-test-" + uuid.uuid4().hex
    out = bytearray()
    names = filenames or [f"input-{i}.pdf" for i in range(len(files))]
    for data, name in zip(files, names):
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode()
        out += data + b"\r\n"
    for key, value in params.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                ).encode() + str(value).encode() + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
