"""Honest ends: "memory" only on evidence, "crashed" for deaths nobody can explain,
"restarting" (logged, counted) when the fork server itself dies."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import psutil
import pytest

from sandbox import Limits, Sandbox
from tests.sandbox.conftest import ENTRY, TEST_LIMITS, run, wait_ready

pytestmark = pytest.mark.timeout(60)

JOB = {"do": "concat", "suffix": "!"}


def busy_child(sb: Sandbox, min_rss_mb: float, timeout_s: float = 10.0) -> psutil.Process:
    """The job child whose resident set grew past min_rss_mb (the warm ones stay small)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for spawner in psutil.Process(sb.fork_server_pid).children():
            for child in spawner.children():
                try:
                    if child.memory_info().rss > min_rss_mb * (1 << 20):
                        return child
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.05)
    raise AssertionError("no busy child found")


def test_memory_words_on_stderr_then_a_segfault_is_crashed(sb):
    result = run(sb, "memory_words_then_segfault")
    assert result.status == "crashed" and result.signal == signal.SIGSEGV, result


def test_a_death_at_the_memory_limit_is_memory(sb):
    result = run(sb, "hog_then_segfault")
    assert result.status == "memory" and result.signal == signal.SIGSEGV, result
    assert result.stats.max_rss_mb >= 0.9 * TEST_LIMITS.memory_mb


def test_python_memory_error_is_memory(sb):
    assert run(sb, "allocate", mb=400).status == "memory"


async def test_an_external_sigkill_below_the_memory_limit_is_crashed():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
        job = asyncio.create_task(sb.run([], {"do": "kill_me_at", "mb": 60}))
        child = await asyncio.to_thread(busy_child, sb, 60)
        child.send_signal(signal.SIGKILL)
        result = await job
        assert result.status == "crashed" and result.signal == signal.SIGKILL, result
        assert "SIGKILL" in result.reason
        assert result.stats.max_rss_mb < 0.9 * TEST_LIMITS.memory_mb


async def test_fork_server_death_answers_restarting_and_logs_one_line(caplog):
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=4) as sb:
        first_pid = sb.fork_server_pid
        in_flight = asyncio.create_task(sb.run([], {"do": "sleep", "s": 5}))
        queued = asyncio.create_task(sb.run([], {"do": "sleep", "s": 5}))
        await asyncio.sleep(0.3)
        with caplog.at_level(logging.WARNING, logger="sandbox"):
            os.kill(first_pid, signal.SIGKILL)
            results = await asyncio.gather(in_flight, queued)
            arriving = await sb.run([], JOB)
        assert [r.status for r in results] == ["restarting", "restarting"], results
        assert arriving.status == "restarting", arriving
        lines = [r for r in caplog.records if r.name == "sandbox"]
        assert len(lines) == 1 and lines[0].getMessage() == "fork server died"
        assert lines[0].fields == {"exit": "killed by SIGKILL", "jobs_failed": 1,
                                   "restarts": 0}
        await wait_ready(sb)
        assert sb.restarts == 1 and sb.fork_server_pid != first_pid
        assert (await sb.run([b"x"], JOB)).outputs == [b"x!"]


async def wait_lent(sb: Sandbox, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not sb._pool.idle:
        assert time.monotonic() < deadline, "no child was lent"
        await asyncio.sleep(0.01)


async def test_a_lent_child_answers_while_the_fork_server_is_stopped():
    async with Sandbox(ENTRY, workers=1, queue=2) as sb:
        assert (await sb.run([b"x"], JOB)).ok
        await wait_lent(sb)
        os.kill(sb.fork_server_pid, signal.SIGSTOP)
        try:
            assert (await sb.run([b"z"], JOB)).outputs == [b"z!"]
        finally:
            os.kill(sb.fork_server_pid, signal.SIGCONT)


@pytest.mark.timeout(90)
async def test_a_fork_server_that_stops_answering_is_replaced(caplog):
    limits = Limits(memory_mb=256, cpu_s=1, wall_s=1, output_mb=8)
    async with Sandbox(ENTRY, limits=limits, workers=1, queue=2) as sb:
        first_pid = sb.fork_server_pid
        assert (await sb.run([b"x"], JOB)).ok
        await wait_lent(sb)
        os.kill(first_pid, signal.SIGSTOP)
        # The lent child takes the job and hangs; nobody enforces its deadline now, and
        # nobody says how it ended: past its wall limit and the grace, the caller gives up.
        with caplog.at_level(logging.WARNING, logger="sandbox"):
            result = await sb.run([], {"do": "sleep", "s": 60})
        assert result.status == "restarting" and "stopped answering" in result.reason
        [line] = [r for r in caplog.records if r.name == "sandbox"]
        assert line.fields["exit"].startswith("it stopped answering")
        await wait_ready(sb)
        assert sb.fork_server_pid != first_pid
        assert (await sb.run([b"y"], JOB)).outputs == [b"y!"]
