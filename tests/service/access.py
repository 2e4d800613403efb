"""Helpers of the access-control tests: a keys file, requests from a chosen source address,
the app's own route list.

Runs in the test process. Requests go over loopback to a real `notrace serve`; a client
may bind any 127.0.0.0/8 source address, so one server sees several peers (a trusted
proxy and an untrusted one).
"""
from __future__ import annotations

import http.client
import re
import socket
import time
from pathlib import Path

from notrace import auth
from notrace.app import make_app
from notrace.settings import load
from tests.service.server import Reply

# A sample value for each route parameter, so every route can be requested.
_SAMPLES = {"operation": "info", "slug": "busy"}


def write_keys(directory: Path, *names: str) -> tuple[Path, dict[str, str]]:
    """A keys file accepting one fresh key per name; returns it and {name: key}."""
    keys, lines = {}, ["# made by the tests", ""]
    for name in names:
        keys[name], line = auth.new_key(name)
        lines.append(line)
    path = directory / "keys"
    path.write_text("\n".join(lines) + "\n")
    return path, keys


def routes() -> list[tuple[str, str, str]]:
    """(method, route template, a concrete path) for every route the app registers (HEAD
    routes aiohttp adds for GET ones excepted), so a new route cannot escape a test."""
    out = []
    for route in make_app(load(environ={})).router.routes():
        if route.method == "HEAD":
            continue
        template = route.resource.canonical
        path = re.sub(r"\{(\w+)[^}]*\}", lambda m: _SAMPLES.get(m[1], "x"), template)
        out.append((route.method, template, path))
    assert len(out) >= 8, out
    return out


def request_from(server, source: str, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, timeout: float = 30) -> Reply:
    """One request to `server` whose socket comes from `source` (a loopback address)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def open_upload(server, source: str = "127.0.0.1",
                headers: dict | None = None) -> socket.socket:
    """An operation request whose body is still arriving (a third of it sent): its
    handler runs, and holds its job slot, until the socket is closed."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                    source_address=(source, 0))
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"POST /api/v1/info HTTP/1.1\r\nHost: t\r\nContent-Type: application/pdf"
                 f"\r\nContent-Length: 3000\r\n{head}\r\n".encode() + b"%PDF-1.7\n" * 100)
    return sock


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
