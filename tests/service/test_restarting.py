"""A fork-server death mid-job is the service's trouble, not the document's: 503, retry.

Runs in the test process against a real server: a slow job runs in a child, the fork
server is SIGKILLed under it, and that request is answered 503 `sandbox-restarting` with
Retry-After (it used to be 422 `processing-crashed`, blaming the document).
"""
from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import pytest

from notrace.problems import for_sandbox_status
from tests.service import builders as b
from tests.service.test_logs import _fork_server, _wait_for


def _metric(server, name: str) -> float | None:
    for line in server.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.mark.timeout(90)
def test_a_job_whose_fork_server_dies_is_answered_503_sandbox_restarting(start_server):
    server = start_server(workers=1, child_wall_s=30, child_cpu_s=30)
    slow = b.slow_text_pdf(400_000)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.post, "text", [slow], b.SLOW_TEXT, timeout=60)
        _wait_for(lambda: _metric(server, "notrace_jobs_in_flight") == 1,
                  what="the slow job running in a child")
        os.kill(_fork_server(server).pid, signal.SIGKILL)
        started = time.monotonic()
        reply = pending.result(timeout=30)
    assert reply.status == 503, reply.body[:300]
    assert reply.json()["type"] == "/problems/sandbox-restarting"
    assert reply.headers["retry-after"] == "2"
    assert time.monotonic() - started < 10      # answered at the death, not at a deadline
    _wait_for(lambda: server.get("/ready").status == 200, what="the sandbox ready again")


def test_restarting_maps_to_a_retryable_503():
    problem = for_sandbox_status("restarting")
    assert (problem.type.slug, problem.status) == ("sandbox-restarting", 503)
    assert for_sandbox_status("busy").type.slug == "busy"
