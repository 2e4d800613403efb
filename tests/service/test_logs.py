"""Logs stay JSON and clean; fork-server deaths are one log line and a metric.

Real servers (tests/service/server.py): a multipart part whose Content-Disposition is
malformed makes aiohttp warn with the raw header (client filename included); the server's
whole stderr must stay JSON lines without it. A SIGKILLed fork server must show as one
JSON line of the "sandbox" logger and as `notrace_sandbox_restarts_total` once it is back.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import uuid

import psutil
import pytest

from notrace.logs import FIELDS, JsonFormatter
from tests.pdfs import make_pdf
from tests.service.access import wait_until as _wait_for

MARKER = "LOGMARK" + uuid.uuid4().hex[:12]


def _bad_disposition_body(boundary: str) -> bytes:
    """One file part whose Content-Disposition has an empty parameter (";;"), which
    aiohttp reports with BadContentDispositionHeader(<the raw header>)."""
    pdf = make_pdf(1)
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{MARKER}.pdf\";;\r\nContent-Type: application/pdf\r\n\r\n"
            ).encode() + pdf + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.timeout(60)
def test_a_malformed_content_disposition_stays_out_of_stderr(server):
    boundary = "b" + uuid.uuid4().hex
    warned = []
    for _ in range(2):   # a warning shown "once per distinct value" must not hide a second
        request_id = "logs-" + uuid.uuid4().hex
        before = len(server.lines)
        reply = server.request("POST", "/api/v1/info", _bad_disposition_body(boundary),
                               {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                "X-Request-ID": request_id})
        assert reply.status < 500, reply.body
        _wait_for(lambda: any(request_id in line for line in server.lines[before:]),
                  what="the access line")
        lines = server.lines[before:]
        assert MARKER not in "\n".join(lines)
        records = [json.loads(line) for line in lines]      # every line is one JSON object
        warned.append([r for r in records if r["logger"] == "notrace.warnings"])
    assert warned[0] and len(warned[0]) == len(warned[1]), warned
    for record in warned[0] + warned[1]:
        assert record["category"] == "BadContentDispositionHeader"
        assert record["where"].startswith("multipart.py:")
        assert set(record) == {"ts", "level", "logger", "msg", "category", "where"}


def test_sandbox_log_fields_are_kept_and_others_dropped():
    assert {"exit", "jobs_failed", "restarts"} <= FIELDS
    record = logging.LogRecord("sandbox", logging.WARNING, "f", 1, "fork server died", (),
                               None)
    record.fields = {"exit": "signal 9", "jobs_failed": 2, "restarts": 1, "password": "x"}
    line = json.loads(JsonFormatter().format(record))
    assert (line["exit"], line["jobs_failed"], line["restarts"]) == ("signal 9", 2, 1)
    assert "password" not in line
    other = logging.LogRecord("aiohttp.web", logging.WARNING, "f", 1, "x %s", ("y",), None)
    other.fields = {"restarts": 5}
    assert "restarts" not in json.loads(JsonFormatter().format(other))


def _fork_server(server) -> psutil.Process:
    (fork_server,) = [p for p in server.process.children()
                      if "sandbox.forkserver" in " ".join(p.cmdline())]
    return fork_server


def _restarts(server) -> float | None:
    for line in server.get("/metrics").body.decode().splitlines():
        if line.startswith("notrace_sandbox_restarts_total "):
            return float(line.split()[1])
    return None


@pytest.mark.timeout(90)
def test_a_fork_server_death_is_one_log_line_and_a_restart_metric(start_server):
    server = start_server(workers=1)
    assert _restarts(server) == 0
    victim = _fork_server(server)
    os.kill(victim.pid, signal.SIGKILL)
    _wait_for(lambda: _restarts(server) == 1, what="the restart counter at 1")
    _wait_for(lambda: server.get("/ready").status == 200, what="the sandbox ready again")
    assert _fork_server(server).pid != victim.pid
    def death_lines() -> list[dict]:
        return [r for r in server.log_records()
                if r["logger"] == "sandbox" and r["msg"] == "fork server died"]

    # (the line reaches server.lines through the stderr-draining thread: wait for it)
    _wait_for(death_lines, what="the 'fork server died' line")
    deaths = death_lines()
    assert len(deaths) == 1, server.lines[-10:]
    assert deaths[0]["level"] == "warning"
    assert isinstance(deaths[0]["exit"], str) and deaths[0]["exit"]
    assert deaths[0]["jobs_failed"] == 0
    assert deaths[0]["restarts"] in (0, 1)
    assert server.post("info", [make_pdf(1)]).status == 200
